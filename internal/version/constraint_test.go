package version_test

import (
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

func TestConstraintsReadTheDocumentedSyntax(t *testing.T) {
	cases := []struct {
		constraint string
		version    string
		want       bool
	}{
		{"<0.30.0", "0.29.9", true},
		{"<0.30.0", "0.30.0-rc.1", true}, // pre-releases are always included
		{"<0.30.0", "0.30.0", false},
		{">=1.2.0 <2.0.0", "1.99.0", true},
		{">=1.2.0, <2.0.0", "2.0.0", false},
		{"<0.30.0 || >=1.0.0", "1.0.0", true},
		{"<0.30.0 || >=1.0.0", "0.31.0", false},
		{"~1.2", "1.2.9", true},
		{"~1.2", "1.3.0", false},
		{"^0.2.3", "0.2.9", true},
		{"^0.2.3", "0.3.0", false},
		{"^1.2.3", "1.9.0", true},
		{"1.2 - 1.4.5", "1.4.5", true},
		{"1.2 - 1.4.5", "1.4.6", false},
		{"1.2.x", "1.2.7", true},
		{"!=1.2.x", "1.2.7", false},
		{">1.2", "1.2.9", false},
		{">1.2", "1.3.0", true},
		{"<=1.2", "1.2.9", true},
		{"=v1.2.3", "1.2.3+build.7", true},
		{"*", "0.0.1-alpha", true},
	}
	for _, c := range cases {
		con, err := version.ParseConstraint(c.constraint)
		if err != nil {
			t.Fatalf("ParseConstraint(%q): %v", c.constraint, err)
		}
		v, ok := version.Parse(c.version)
		if !ok {
			t.Fatalf("Parse(%q) failed", c.version)
		}
		if got := con.Check(v); got != c.want {
			t.Errorf("%q.Check(%q) = %t, want %t", c.constraint, c.version, got, c.want)
		}
	}
	for _, bad := range []string{"", "<<0.30", "newer please", "1|2", ">=1.2.3-01", "1.2.3 ||"} {
		if _, err := version.ParseConstraint(bad); err == nil {
			t.Errorf("ParseConstraint(%q) accepted", bad)
		}
	}
}
