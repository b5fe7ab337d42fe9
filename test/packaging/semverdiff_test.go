package packaging_test

import (
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

// The product parses versions and when.from/when.to constraints itself (internal/version), without the
// library the syntax comes from, whose package initialisation compiles six regular expressions on every
// start. These tests hold the two to the same answers; the library lives in this module only, so the
// shipped binary never links it.

// diffConstraint fails when the product and the library disagree on constraint c or on version v under it.
func diffConstraint(t *testing.T, c, v string) {
	t.Helper()
	mine, errMine := version.ParseConstraint(c)
	theirs, errTheirs := semver.NewConstraint(c)
	if (errMine == nil) != (errTheirs == nil) {
		t.Fatalf("constraint %q: product error %v, library error %v", c, errMine, errTheirs)
	}
	mv, okMine := version.Parse(v)
	tv, errV := semver.StrictNewVersion(strings.TrimPrefix(v, "v"))
	if okMine != (errV == nil) {
		t.Fatalf("version %q: product parses %t, library error %v", v, okMine, errV)
	}
	if !okMine {
		return
	}
	if mv.String() != tv.String() {
		t.Fatalf("version %q: product prints %q, library %q", v, mv, tv)
	}
	if errMine != nil {
		return
	}
	theirs.IncludePrerelease = true
	if got, want := mine.Check(mv), theirs.Check(tv); got != want {
		t.Fatalf("constraint %q, version %q: product %t, library %t", c, v, got, want)
	}
}

// diffOrder fails when the product and the library order two versions differently.
func diffOrder(t *testing.T, a, b string) {
	t.Helper()
	ma, okA := version.Parse(a)
	mb, okB := version.Parse(b)
	ta, errA := semver.StrictNewVersion(strings.TrimPrefix(a, "v"))
	tb, errB := semver.StrictNewVersion(strings.TrimPrefix(b, "v"))
	if okA != (errA == nil) || okB != (errB == nil) {
		t.Fatalf("Parse(%q) %t, Parse(%q) %t; library errors %v, %v", a, okA, b, okB, errA, errB)
	}
	if okA && okB {
		if got, want := ma.Compare(mb), ta.Compare(tb); got != want {
			t.Fatalf("Compare(%q, %q): product %d, library %d", a, b, got, want)
		}
	}
}

// gridVersions are constraint and candidate versions around every boundary the operators have: zero
// majors and minors, partial versions, wildcards, pre-releases, build metadata, leading zeros.
var gridVersions = []string{
	"*", "x", "X", "x.1.2", "0", "0.0", "0.0.0", "0.0.3", "0.0.x", "0.2", "0.2.3", "0.x", "1", "1.x", "1.x.x",
	"1.2", "1.2.x", "1.2.*", "1.2.3", "v1.2.3", "1.2.3-rc.1", "1.2.3-rc.10", "1.2.x-rc.1", "1.2-beta",
	"1.2.3+b.7", "01.2.3", "1.02", "2", "1|2", "1x", "1.2.3-01",
}

var gridCandidates = []string{
	"0.0.0", "0.0.3", "0.0.3-rc.1", "0.0.4", "0.1.0", "0.2.3", "0.2.4", "0.3.0", "1.0.0", "1.0.0-rc.1",
	"1.1.9", "1.2.0", "1.2.2", "1.2.3-rc.1", "1.2.3-rc.2", "1.2.3-rc.10", "1.2.3-alpha", "1.2.3", "v1.2.3",
	"1.2.3+b.1", "1.2.4", "1.3.0", "1.3.0-rc.1", "2.0.0", "2.0.0-rc.1", "3.0.0", "1.2", "3f2c9ab",
}

var gridOps = []string{"", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^"}

func TestConstraintsMatchTheLibraryOnAGrid(t *testing.T) {
	for _, op := range gridOps {
		for _, cv := range gridVersions {
			for _, c := range []string{op + cv, op + " " + cv, " " + op + cv + " "} {
				for _, v := range gridCandidates {
					diffConstraint(t, c, v)
				}
			}
		}
	}
	joined := []string{
		">=1.2.0 <2.0.0", ">=1.2.0, <2.0.0", ">=1.2.0,<2.0.0", "<0.30.0 || >=1.0.0", "1.2 - 1.4.5", "1.2.3 - 2",
		"1 - 2||3", "1.2.x || ^0.2.3", ">1.x <=2.0", "~1.2 !=1.2.2", "1.2.3 1.2.4", "<1.2.3-rc.2 >1.0.0-rc.1",
		"", " ", "||", "1.2.3 ||", ">= 1.2", ">== 1.2", "<<0.30", "newer please", "v1.2.3 - v1.2.5", "1.2.3,",
		"1.2.3 - 1.2.4 - 1.2.5", ">=1.2.3-rc.1 - 2", "1,2", "=1.2.3-x.y+z", "*.*.*",
	}
	for _, c := range joined {
		for _, v := range gridCandidates {
			diffConstraint(t, c, v)
		}
	}
	for _, a := range gridCandidates {
		for _, b := range gridCandidates {
			diffOrder(t, a, b)
		}
	}
}

func TestConstraintLimitsMatchTheLibrary(t *testing.T) {
	long := "1.2.3-" + strings.Repeat("a", 300)
	for _, c := range []string{
		strings.Repeat("1", 512), strings.Repeat("1", 513), strings.Repeat("1.2.3||", 31) + "1.2.3",
		strings.Repeat("1.2.3||", 32) + "1.2.3", ">" + long, ">" + long[:250], "9" + strings.Repeat("9", 20),
		">1.2.3-" + strings.Repeat("9", 25), ">18446744073709551615.0.0", ">18446744073709551616",
	} {
		diffConstraint(t, c, "1.2.3")
	}
	for _, v := range []string{long, long[:250], "1.0.0-" + strings.Repeat("9", 25), "1.0.0-" + strings.Repeat("9", 21) + ".a"} {
		diffOrder(t, v, "1.0.0-100000000000000000000")
		diffOrder(t, v, "1.0.0-a")
	}
}

// FuzzConstraintMatchesTheLibrary: for any constraint and version, the product accepts the constraint
// exactly when the library does, parses the version exactly when the library's strict parser does, and
// answers the check as the library does with pre-releases included. Seeds: testdata/fuzz.
func FuzzConstraintMatchesTheLibrary(f *testing.F) {
	f.Add("<0.30.0", "0.30.0-rc.1")
	f.Add(">=1.2.0 <2.0.0 || ~0.9", "v1.2.3+b")
	f.Add("1.2 - 1.4.5", "1.4.5")
	f.Add("^0.0.x", "0.0.9")
	f.Add("!=1.2.x-rc.1", "1.2.7-rc.2")
	f.Fuzz(func(t *testing.T, c, v string) {
		diffConstraint(t, c, v)
		diffOrder(t, v, c)
	})
}
