package version_test

import (
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

// FuzzVersionParse: Parse never panics, a parsed version prints as one that parses to the same
// version, and Older is a strict order: never both ways, never a version older than itself, and only
// between semantic versions. Its seed corpus is in testdata/fuzz/FuzzVersionParse.
func FuzzVersionParse(f *testing.F) {
	f.Add("0.30.0", "v0.31.0-rc.1")
	f.Fuzz(func(t *testing.T, a, b string) {
		va, okA := version.Parse(a)
		_, okB := version.Parse(b)
		if okA {
			again, ok := version.Parse(va.String())
			if !ok || again != va || again.String() != va.String() {
				t.Fatalf("Parse(%q) = %s, which does not parse back to itself", a, va)
			}
		}
		ab, ba := version.Older(a, b), version.Older(b, a)
		if ab && ba {
			t.Fatalf("Older(%q, %q) and Older(%q, %q) are both true", a, b, b, a)
		}
		if (ab || ba) && !(okA && okB) {
			t.Fatalf("Older(%q, %q) = %t, Older(%q, %q) = %t, though one is not a semantic version", a, b, ab, b, a, ba)
		}
		if version.Older(a, a) {
			t.Fatalf("Older(%q, %q): a version older than itself", a, a)
		}
	})
}
