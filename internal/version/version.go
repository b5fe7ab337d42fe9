// Package version compares deployment versions. Versions that parse as semantic versions (an optional
// leading "v", then MAJOR.MINOR.PATCH with optional pre-release and build) are ordered; anything else
// (git SHAs, chart build ids) is equal only to itself, and ordered by the gate's history.
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

// Equal reports whether two versions are the same deployment version: by semver when both parse (a
// leading "v" and build metadata ignored, so v1.2.3 equals 1.2.3+build.7), else as strings.
func Equal(a, b string) bool {
	va, ok1 := Parse(a)
	vb, ok2 := Parse(b)
	if ok1 && ok2 {
		return va.Compare(vb) == 0 && va.Prerelease() == vb.Prerelease()
	}
	return a == b
}

// OlderByHistory reports whether current is an old replica's version by the history of succeeded
// attempts (succeeded lists their versions, newest first): current succeeded before recorded did. It
// orders versions that are not semantic versions (git SHAs, chart build ids), so that an old replica
// alternating with a new one never moves the record back.
func OlderByHistory(current, recorded string, succeeded []string) bool {
	if Equal(current, recorded) {
		return false
	}
	seenRecorded := false
	for _, v := range succeeded {
		switch {
		case Equal(v, recorded):
			seenRecorded = true
		case Equal(v, current):
			return seenRecorded
		}
	}
	return false
}
