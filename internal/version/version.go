// Package version compares deployment versions. Versions that parse as semantic versions (an optional
// leading "v", then MAJOR.MINOR.PATCH with optional pre-release and build) are ordered; anything else
// (git SHAs, chart build ids) is compared for equality only.
package version

import (
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Parse returns the semantic version in s, or false when s is not one. Only the strict form is accepted,
// so that a short all-digit git SHA is never taken for a major version.
func Parse(s string) (*semver.Version, bool) {
	v, err := semver.StrictNewVersion(strings.TrimPrefix(s, "v"))
	if err != nil {
		return nil, false
	}
	return v, true
}

// Older reports whether current is an older semantic version than recorded. It is false when either is
// not a semantic version.
func Older(current, recorded string) bool {
	c, ok1 := Parse(current)
	r, ok2 := Parse(recorded)
	return ok1 && ok2 && c.LessThan(r)
}
