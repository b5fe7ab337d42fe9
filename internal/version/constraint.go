package version

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Constraint is a parsed when.from or when.to: groups joined by "||", each a list of comparisons that must
// all hold. The syntax is that of github.com/Masterminds/semver/v3 (the one the task files have always
// accepted): operators =, !=, >, <, >=, =>, <=, =<, ~, ~>, ^ and none; partial versions and x, X or *
// wildcards (1.2, 1.x); hyphen ranges (1.2 - 1.4.5); comparisons joined by spaces or commas. Pre-releases
// are always included: 0.30.0-rc.1 matches "<0.30.0". A differential fuzz in test/packaging checks that
// this evaluator accepts exactly what that library accepts and answers as it does.
type Constraint struct {
	groups [][]comparison
}

// comparison is one operator and its (possibly partial) version.
type comparison struct {
	op                          string
	v                           Version
	dirty, minorDirty, patchDir bool
}

// Limits of a constraint string, the library's.
const (
	maxConstraintLen    = 512
	maxConstraintGroups = 32
)

// The grammar, compiled on first use only: a gate that never parses a constraint never pays for it.
const (
	opsRe = `=||!=|>|<|>=|=>|<=|=<|~|~>|\^`
	cvRe  = `v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?` +
		`(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?` +
		`(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?`
)

type grammar struct {
	one, rng, find, valid *regexp.Regexp
}

var compiled = sync.OnceValue(func() grammar {
	return grammar{
		one:   regexp.MustCompile(`^\s*(` + opsRe + `)\s*(` + cvRe + `)\s*$`),
		rng:   regexp.MustCompile(`\s*(` + cvRe + `)\s+-\s+(` + cvRe + `)\s*`),
		find:  regexp.MustCompile(`(` + opsRe + `)\s*(` + cvRe + `)`),
		valid: regexp.MustCompile(`^(\s*(` + opsRe + `)\s*(` + cvRe + `)\s*)((?:\s+|,\s*)(` + opsRe + `)\s*(` + cvRe + `)\s*)*$`),
	}
})

// errParse is returned for a constraint whose version part the grammar admits but is no version (1|2.0).
var errParse = errors.New("constraint parser error")

// ParseConstraint parses a when.from or when.to constraint.
func ParseConstraint(s string) (*Constraint, error) {
	if len(s) > maxConstraintLen {
		return nil, fmt.Errorf("constraint string is too long (max %d bytes)", maxConstraintLen)
	}
	g := compiled()
	s = rewriteRange(g, s)
	ors := strings.Split(s, "||")
	if len(ors) > maxConstraintGroups {
		return nil, fmt.Errorf("too many constraint groups (max %d)", maxConstraintGroups)
	}
	c := &Constraint{groups: make([][]comparison, len(ors))}
	for k, or := range ors {
		if !g.valid.MatchString(or) {
			return nil, fmt.Errorf("improper constraint: %q", or)
		}
		found := g.find.FindAllString(or, -1)
		if found == nil {
			found = []string{or}
		}
		for _, f := range found {
			cmp, err := parseComparison(g, f)
			if err != nil {
				return nil, err
			}
			c.groups[k] = append(c.groups[k], cmp)
		}
	}
	return c, nil
}

// rewriteRange turns each "A - B" into ">= A, <= B ".
func rewriteRange(g grammar, s string) string {
	out := s
	for _, m := range g.rng.FindAllStringSubmatch(s, -1) {
		out = strings.Replace(out, m[0], fmt.Sprintf(">= %s, <= %s ", m[1], m[11]), 1)
	}
	return out
}

func isX(s string) bool { return s == "x" || s == "X" || s == "*" }

func parseComparison(g grammar, s string) (comparison, error) {
	m := g.one.FindStringSubmatch(s)
	if m == nil {
		return comparison{}, fmt.Errorf("improper constraint: %q", s)
	}
	c := comparison{op: m[1]}
	ver := m[2]
	switch {
	case isX(m[3]) || m[3] == "":
		ver, c.dirty = "0.0.0"+m[6], true
	case isX(strings.TrimPrefix(m[4], ".")) || m[4] == "":
		ver, c.dirty, c.minorDirty = m[3]+".0.0"+m[6], true, true
	case isX(strings.TrimPrefix(m[5], ".")) || m[5] == "":
		ver, c.dirty, c.patchDir = m[3]+m[4]+".0"+m[6], true, true
	}
	v, ok := parseLoose(ver)
	if !ok {
		return comparison{}, errParse
	}
	c.v = v
	return c, nil
}

// parseLoose parses a constraint's version: like Parse, but the minor and patch may be missing (zero) and
// numbers may have leading zeros.
func parseLoose(s string) (Version, bool) {
	if len(s) > maxLen {
		return Version{}, false
	}
	s = strings.TrimPrefix(s, "v")
	var v Version
	if i := strings.IndexByte(s, '+'); i >= 0 {
		v.meta, s = s[i+1:], s[:i]
		if !validMeta(v.meta) {
			return Version{}, false
		}
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		v.pre, s = s[i+1:], s[:i]
		if !validPre(v.pre) {
			return Version{}, false
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return Version{}, false
	}
	nums := [3]*uint64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		if p == "" || !allDigits(p) {
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

// Check reports whether v satisfies the constraint: every comparison of at least one group holds.
func (c *Constraint) Check(v Version) bool {
	for _, group := range c.groups {
		all := true
		for _, cmp := range group {
			if !cmp.check(v) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// check evaluates one comparison, with the library's meaning of each operator and of a partial version.
func (c comparison) check(v Version) bool {
	switch c.op {
	case "", "=":
		if c.dirty {
			return c.tilde(v)
		}
		return v.Compare(c.v) == 0
	case "!=":
		return c.notEqual(v)
	case ">":
		return c.greater(v)
	case "<":
		return v.Compare(c.v) < 0
	case ">=", "=>":
		return v.Compare(c.v) >= 0
	case "<=", "=<":
		return c.lessEqual(v)
	case "~", "~>":
		return c.tilde(v)
	default: // "^"
		return c.caret(v)
	}
}

func (c comparison) notEqual(v Version) bool {
	if c.dirty {
		switch {
		case c.v.major != v.major:
			return true
		case c.v.minor != v.minor && !c.minorDirty:
			return true
		case c.minorDirty:
			return false
		case c.v.patch != v.patch && !c.patchDir:
			return true
		case c.patchDir:
			if v.pre != "" || c.v.pre != "" {
				return comparePre(v.pre, c.v.pre) != 0
			}
			return false
		}
	}
	return v.Compare(c.v) != 0
}

// greater: >1 means 2.0.0 and above, >1.2 means 1.3.0 and above.
func (c comparison) greater(v Version) bool {
	if c.dirty {
		switch {
		case v.major != c.v.major:
			return v.major > c.v.major
		case c.minorDirty:
			return false
		case c.patchDir:
			return v.minor > c.v.minor
		}
	}
	return v.Compare(c.v) > 0
}

// lessEqual: <=1 means below 2.0.0, <=1.2 means below 1.3.0.
func (c comparison) lessEqual(v Version) bool {
	if !c.dirty {
		return v.Compare(c.v) <= 0
	}
	if v.major > c.v.major {
		return false
	}
	return !(v.major == c.v.major && v.minor > c.v.minor && !c.minorDirty)
}

// tilde: ~1.2.3 means >=1.2.3 <1.3.0, ~1 means >=1.0.0 <2.0.0, ~0.0.0 and ~* anything.
func (c comparison) tilde(v Version) bool {
	if v.Compare(c.v) < 0 {
		return false
	}
	if c.v.major == 0 && c.v.minor == 0 && c.v.patch == 0 && !c.minorDirty && !c.patchDir {
		return true
	}
	if v.major != c.v.major {
		return false
	}
	return v.minor == c.v.minor || c.minorDirty
}

// caret: ^1.2.3 means >=1.2.3 <2.0.0, ^0.2.3 >=0.2.3 <0.3.0, ^0.0.3 >=0.0.3 <0.0.4.
func (c comparison) caret(v Version) bool {
	if v.Compare(c.v) < 0 {
		return false
	}
	if c.v.major > 0 || c.minorDirty {
		return v.major == c.v.major
	}
	if v.major > 0 {
		return false
	}
	if c.v.minor > 0 || c.patchDir {
		return v.minor == c.v.minor
	}
	if v.minor > 0 {
		return false
	}
	return c.v.patch == v.patch
}
