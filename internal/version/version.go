// Package version compares deployment versions. Versions that parse as semantic versions (an optional
// leading "v", then MAJOR.MINOR.PATCH with optional pre-release and build) are ordered; anything else
// (git SHAs, chart build ids) is equal only to itself, and ordered by the gate's history. It also
// evaluates the constraints of a task's when.from and when.to (see Constraint).
//
// The package has no initialisation cost: nothing is compiled or allocated until a constraint is parsed,
// so a run that only reads the recorded version pays nothing for it.
package version

import (
	"strconv"
	"strings"
)

// Version is a parsed semantic version. Build metadata is kept for printing but never orders.
type Version struct {
	major, minor, patch uint64
	pre, meta           string
}

// maxLen bounds a version string, as the semver library the task files' syntax comes from does.
const maxLen = 256

// Parse returns the semantic version in s, or false when s is not one. Only the strict form is accepted,
// so that a short all-digit git SHA is never taken for a major version: exactly three numbers without
// leading zeros that fit in 64 bits, a pre-release of non-empty dot-separated identifiers (numeric ones
// without leading zeros), build metadata of non-empty identifiers, one optional leading "v".
func Parse(s string) (Version, bool) {
	s = strings.TrimPrefix(s, "v")
	if s == "" || len(s) > maxLen {
		return Version{}, false
	}
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 {
		return Version{}, false
	}
	var v Version
	if i := strings.IndexByte(parts[2], '+'); i >= 0 {
		v.meta, parts[2] = parts[2][i+1:], parts[2][:i]
		if !validMeta(v.meta) {
			return Version{}, false
		}
	}
	if i := strings.IndexByte(parts[2], '-'); i >= 0 {
		v.pre, parts[2] = parts[2][i+1:], parts[2][:i]
		if !validPre(v.pre) {
			return Version{}, false
		}
	}
	nums := [3]*uint64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		if !allDigits(p) || (len(p) > 1 && p[0] == '0') {
			return Version{}, false
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Version{}, false
		}
		*nums[i] = n
	}
	return v, true
}

// String prints the version without a leading "v": MAJOR.MINOR.PATCH[-PRE][+BUILD].
func (v Version) String() string {
	s := strconv.FormatUint(v.major, 10) + "." + strconv.FormatUint(v.minor, 10) + "." + strconv.FormatUint(v.patch, 10)
	if v.pre != "" {
		s += "-" + v.pre
	}
	if v.meta != "" {
		s += "+" + v.meta
	}
	return s
}

// Compare orders two versions: -1, 0 or +1. Build metadata is ignored; a pre-release is below its
// release; pre-release identifiers compare numerically when both are numbers, else as text, a number
// below text, and a shorter list below a longer one that it begins.
func (v Version) Compare(o Version) int {
	for _, d := range [3][2]uint64{{v.major, o.major}, {v.minor, o.minor}, {v.patch, o.patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	return comparePre(v.pre, o.pre)
}

// comparePre orders two pre-releases identifier by identifier. An identifier too large for 64 bits is
// compared as text, as the semver library the task files' syntax comes from does.
func comparePre(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y string
		if i < len(as) {
			x = as[i]
		}
		if i < len(bs) {
			y = bs[i]
		}
		if d := comparePrePart(x, y); d != 0 {
			return d
		}
	}
	return 0
}

func comparePrePart(x, y string) int {
	switch {
	case x == y:
		return 0
	case x == "":
		return -1
	case y == "":
		return 1
	}
	xi, errX := strconv.ParseUint(x, 10, 64)
	yi, errY := strconv.ParseUint(y, 10, 64)
	switch {
	case errX != nil && errY != nil:
		if x > y {
			return 1
		}
		return -1
	case errY != nil:
		return -1
	case errX != nil:
		return 1
	case xi > yi:
		return 1
	}
	return -1
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func identChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-'
}

func validIdents(s string, pre bool) bool {
	for _, p := range strings.Split(s, ".") {
		if p == "" {
			return false
		}
		if allDigits(p) {
			if pre && len(p) > 1 && p[0] == '0' {
				return false
			}
			continue
		}
		for i := 0; i < len(p); i++ {
			if !identChar(p[i]) {
				return false
			}
		}
	}
	return true
}

func validPre(s string) bool  { return validIdents(s, true) }
func validMeta(s string) bool { return validIdents(s, false) }

// Older reports whether current is an older semantic version than recorded. It is false when either is
// not a semantic version.
func Older(current, recorded string) bool {
	c, ok1 := Parse(current)
	r, ok2 := Parse(recorded)
	return ok1 && ok2 && c.Compare(r) < 0
}

// Equal reports whether two versions are the same deployment version: by semver when both parse (a
// leading "v" and build metadata ignored, so v1.2.3 equals 1.2.3+build.7), else as strings.
func Equal(a, b string) bool {
	va, ok1 := Parse(a)
	vb, ok2 := Parse(b)
	if ok1 && ok2 {
		return va.Compare(vb) == 0 && va.pre == vb.pre
	}
	return a == b
}

// Attempt is one history entry as OlderByHistory reads it: the version attempted and whether it succeeded.
type Attempt struct {
	Version   string
	Succeeded bool
}

// OlderByHistory reports whether current is an old replica's version by the gate's history (newest
// first): current was attempted, successfully or not, before recorded last succeeded. It orders versions
// that are not semantic versions (git SHAs, chart build ids), so that an old replica alternating with a
// new one never moves the record back; a failed attempt counts too, since a version that failed before
// a newer one succeeded is just as old. A version rolled back from (with MAINTENANCE_DOWNGRADE=run) is
// old by this rule until it is deployed again with MAINTENANCE_DOWNGRADE=run: its replicas during the
// rollback look the same as a later roll forward.
func OlderByHistory(current, recorded string, history []Attempt) bool {
	if Equal(current, recorded) {
		return false
	}
	seenRecorded := false
	for _, a := range history {
		switch {
		case Equal(a.Version, recorded):
			seenRecorded = seenRecorded || a.Succeeded
		case Equal(a.Version, current):
			return seenRecorded
		}
	}
	return false
}
