package version_test

import (
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

func TestParseAcceptsOnlyStrictSemanticVersions(t *testing.T) {
	cases := []struct {
		in   string
		want string // the parsed version, "" when not one
	}{
		{"0.30.1", "0.30.1"},
		{"v0.30.1", "0.30.1"},
		{"1.2.3-rc.1", "1.2.3-rc.1"},
		{"1.2.3+build.7", "1.2.3+build.7"},
		{"v1.2.3-rc.1+sha.3f2c9ab", "1.2.3-rc.1+sha.3f2c9ab"},
		{"3f2c9ab", ""},                  // a git SHA
		{"1234567", ""},                  // an all-digit short SHA is not major 1234567
		{"1.2", ""},                      // not MAJOR.MINOR.PATCH
		{"1", ""},                        // a chart build id
		{"01.2.3", ""},                   // a leading zero
		{"1.2.3-", ""},                   // an empty pre-release
		{"vv1.2.3", ""},                  // one leading v only
		{"V1.2.3", ""},                   // lower-case v only
		{" 1.2.3", ""},                   // no spaces
		{"1.2.3.4", ""},                  // four parts
		{"", ""},                         // nothing
		{"99999999999999999999.0.0", ""}, // overflows
		{"1.2.3-01", ""},                 // a numeric pre-release with a leading zero
		{"2026.01.15", ""},               // a date is not semver (leading zero)
		{"2026.1.15", "2026.1.15"},       // but a calendar version is
		{"1.0.0-alpha.beta.1+exp.sha.5114f85", "1.0.0-alpha.beta.1+exp.sha.5114f85"}, // semver.org's example
	}
	for _, c := range cases {
		v, ok := version.Parse(c.in)
		got := ""
		if ok {
			got = v.String()
		}
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Parse(%q) = %q, %t; want %q", c.in, got, ok, c.want)
		}
	}
}

func TestOlderOrdersSemanticVersionsOnly(t *testing.T) {
	cases := []struct {
		name              string
		current, recorded string
		want              bool
	}{
		{"an old replica during a rolling update", "0.30.0", "0.31.0", true},
		{"an upgrade", "0.31.0", "0.30.0", false},
		{"the same version", "0.30.0", "0.30.0", false},
		{"a leading v changes nothing", "v0.30.0", "0.30.0", false},
		{"a release candidate is older than its release", "0.31.0-rc.1", "0.31.0", true},
		{"a release is newer than its candidate", "0.31.0", "0.31.0-rc.1", false},
		{"pre-releases order by their identifiers", "1.0.0-rc.2", "1.0.0-rc.10", true},
		{"build metadata does not order", "1.0.0+build.2", "1.0.0+build.1", false},
		{"build metadata does not order, either way", "1.0.0+build.1", "1.0.0+build.2", false},
		{"minor compares as a number, not text", "0.9.0", "0.10.0", true},
		{"git SHAs are compared for equality only", "3f2c9ab", "9e1d2c0", false},
		{"a SHA recorded, a version deployed", "1.0.0", "3f2c9ab", false},
		{"a version recorded, a SHA deployed", "3f2c9ab", "1.0.0", false},
		{"a fresh install records nothing", "1.0.0", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := version.Older(c.current, c.recorded); got != c.want {
				t.Errorf("Older(%q, %q) = %t, want %t", c.current, c.recorded, got, c.want)
			}
		})
	}
}

func TestEqualIgnoresTheLeadingVAndBuildMetadata(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"v1.2.3", "1.2.3", true},
		{"1.2.3+build.1", "1.2.3+build.2", true},
		{"v0.36.7", "0.36.7+sha.3f2c9ab", true},
		{"1.2.3", "1.2.4", false},
		{"1.2.3-rc.1", "1.2.3", false},
		{"1.2.3-rc.1", "v1.2.3-rc.1+b", true},
		{"sha-abc", "sha-abc", true},
		{"sha-abc", "sha-abd", false},
		{"1.2.3", "", false},
	}
	for _, c := range cases {
		if got := version.Equal(c.a, c.b); got != c.want {
			t.Errorf("Equal(%q, %q) = %t, want %t", c.a, c.b, got, c.want)
		}
	}
}

func TestOlderByHistoryFindsAnOldReplicasVersion(t *testing.T) {
	cases := []struct {
		name              string
		current, recorded string
		succeeded         []string // newest first
		want              bool
	}{
		{"an old SHA that succeeded before the recorded one", "sha-old", "sha-new", []string{"sha-new", "sha-old"}, true},
		{"a new SHA never seen", "sha-next", "sha-new", []string{"sha-new", "sha-old"}, false},
		{"a SHA that succeeded after the recorded one (rolled back by hand)", "sha-new", "sha-old", []string{"sha-new", "sha-old"}, false},
		{"a SHA again after a newer one ran and then it ran again", "sha-old", "sha-new", []string{"sha-new", "sha-old", "sha-new", "sha-old"}, true},
		{"the recorded version itself", "sha-new", "sha-new", []string{"sha-new"}, false},
		{"no history", "sha-old", "sha-new", nil, false},
		{"build metadata does not make another version", "1.0.0+b.2", "sha-new", []string{"sha-new", "1.0.0+b.1"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := version.OlderByHistory(c.current, c.recorded, c.succeeded); got != c.want {
				t.Errorf("OlderByHistory(%q, %q, %q) = %t, want %t", c.current, c.recorded, c.succeeded, got, c.want)
			}
		})
	}
}
