package tasks

import (
	"strings"
	"testing"
)

func TestWhenMatchesUpgradesByVersionConstraints(t *testing.T) {
	const skip, run = false, true
	cases := []struct {
		name     string
		when     string // the task's when mapping
		from, to string
		want     bool
		err      string // part of the expected error, when the versions cannot be compared
	}{
		{"no constraints run on every upgrade", `{}`, "0.29.1", "0.30.0", run, ""},
		{"upgrade from below the bound runs", `{from: "<0.30.0"}`, "0.29.1", "0.30.0", run, ""},
		{"upgrade from the bound itself is skipped", `{from: "<0.30.0"}`, "0.30.0", "0.31.0", skip, ""},
		{"upgrade from above the bound is skipped", `{from: "<0.30.0"}`, "0.31.2", "0.32.0", skip, ""},
		{"recorded version with a leading v is compared as semver", `{from: "<0.30.0"}`, "v0.29.0", "v0.30.0", run, ""},
		{"pre-release below the bound runs", `{from: "<0.30.0"}`, "0.30.0-rc.1", "0.30.0", run, ""},
		{"fresh install matches from", `{from: "<0.30.0"}`, "", "0.30.0", run, ""},
		{"fresh install is skipped with install false", `{from: "<0.30.0", install: false}`, "", "0.30.0", skip, ""},
		{"install false alone skips only fresh installs", `{install: false}`, "0.29.0", "0.30.0", run, ""},
		{"install false alone skips a fresh install", `{install: false}`, "", "0.30.0", skip, ""},
		{"new version inside a range runs", `{to: ">=1.2.0 <2.0.0"}`, "1.1.0", "1.2.0", run, ""},
		{"new version at the top of a range runs", `{to: ">=1.2.0 <2.0.0"}`, "1.1.0", "1.99.9", run, ""},
		{"new version past a range is skipped", `{to: ">=1.2.0 <2.0.0"}`, "1.9.0", "2.0.0", skip, ""},
		{"new version below a range is skipped", `{to: ">=1.2.0 <2.0.0"}`, "1.0.0", "1.1.0", skip, ""},
		{"comma also joins constraints", `{to: ">=1.2.0, <2.0.0"}`, "1.0.0", "1.5.0", run, ""},
		{"pre-release of a version in range runs", `{to: ">=0.30.0"}`, "0.29.0", "0.31.0-rc.1", run, ""},
		{"from and to must both match", `{from: "<0.30.0", to: ">=0.30.0"}`, "0.29.0", "0.30.1", run, ""},
		{"from matches but to does not", `{from: "<0.30.0", to: ">=0.31.0"}`, "0.29.0", "0.30.1", skip, ""},
		{"fresh install still obeys to", `{from: "<0.30.0", to: ">=0.31.0"}`, "", "0.30.1", skip, ""},
		{"git SHA as recorded version with a from constraint is an error", `{from: "<0.30.0"}`, "4f2a9c1", "0.30.0", skip, "recorded version \"4f2a9c1\" is not a semantic version"},
		{"all-digit short SHA is not taken for a major version", `{from: "<2000000.0.0"}`, "1234567", "0.30.0", skip, "not a semantic version"},
		{"two-part version is not semver", `{to: ">=0.30.0"}`, "0.29.0", "0.30", skip, "version \"0.30\" is not a semantic version"},
		{"git SHA without constraints on it is fine", `{to: ">=0.30.0"}`, "4f2a9c1", "0.30.0", run, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := loadWhen(t, c.when)
			got, why, err := w.Match(c.from, c.to)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Match(%q, %q) error %v, want one containing %q", c.from, c.to, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Match(%q, %q): %v", c.from, c.to, err)
			}
			if got != c.want {
				t.Fatalf("Match(%q, %q) = %t (%s), want %t", c.from, c.to, got, why, c.want)
			}
			if !got && why == "" {
				t.Error("a skipped task must say why")
			}
		})
	}
}

func TestWhenConstraintErrorsAreFoundAtLoad(t *testing.T) {
	_, err := Parse([]byte(`
tasks:
  - name: t
    exec: {command: [/bin/true]}
    when: {from: "<<0.30", to: "not a version", since: "1.0.0"}
`), "test", LoadContext{})
	got := fieldProblems(t, err)
	want := []string{"t when.from", "t when.since", "t when.to"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("problems %q, want %q (%v)", got, want, err)
	}
}

func loadWhen(t *testing.T, when string) When {
	t.Helper()
	specs, err := Parse([]byte("tasks:\n  - name: t\n    exec: {command: [/bin/true]}\n    when: "+when+"\n"), "test", LoadContext{})
	if err != nil {
		t.Fatal(err)
	}
	return specs[0].When
}
