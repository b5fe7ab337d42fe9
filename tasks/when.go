package tasks

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

// When limits a task to some upgrades: From constrains the previous (recorded) version, To the new one.
// A fresh install has no previous version and matches From unless Install is false.
type When struct {
	From    string
	To      string
	Install *bool

	from, to *version.Constraint
}

type whenFields struct {
	From    string `yaml:"from"`
	To      string `yaml:"to"`
	Install *bool  `yaml:"install"`
}

func decodeWhen(node *yaml.Node) (When, []*FieldError) {
	var f whenFields
	var errs []*FieldError
	// An unknown field or a wrong type is reported, and the constraints are still checked, so that every
	// problem is reported at once; only a when that is not a mapping stops here.
	if err := DecodeStrict(node, &f); err != nil {
		for _, e := range flatten(err) {
			fe := &FieldError{Field: "when", Problem: e.Error()}
			if errors.As(e, &fe) {
				c := *fe
				c.Field = joinField("when", fe.Field)
				fe = &c
			}
			errs = append(errs, fe)
		}
		if target(node).Kind != yaml.MappingNode {
			return When{}, errs
		}
	}
	w := When{From: f.From, To: f.To, Install: f.Install}
	var err error
	if f.From != "" {
		if w.from, err = constraint(f.From); err != nil {
			errs = append(errs, &FieldError{Field: "when.from", Problem: fmt.Sprintf("%q is not a semver constraint: %v", f.From, err)})
		}
	}
	if f.To != "" {
		if w.to, err = constraint(f.To); err != nil {
			errs = append(errs, &FieldError{Field: "when.to", Problem: fmt.Sprintf("%q is not a semver constraint: %v", f.To, err)})
		}
	}
	return w, errs
}

// constraint parses a semver constraint; pre-releases are always admitted: semver orders 0.30.0-rc.1
// below 0.30.0, so an upgrade from it must run a task gated on from "<0.30.0".
func constraint(s string) (*version.Constraint, error) { return version.ParseConstraint(s) }

// IsZero reports whether the task runs on every upgrade.
func (w When) IsZero() bool { return w.from == nil && w.to == nil && w.Install == nil }

// Match reports whether an upgrade from the recorded version (empty on a fresh install) to the new
// one satisfies the constraints, and if not, why. An error means a constrained version is not semver:
// a configuration error found before any lock is taken.
func (w When) Match(from, to string) (bool, string, error) {
	if w.to != nil {
		v, ok := version.Parse(to)
		if !ok {
			return false, "", fmt.Errorf("when.to: version %q is not a semantic version", to)
		}
		if !w.to.Check(v) {
			return false, fmt.Sprintf("new version %s does not match when.to %q", to, w.To), nil
		}
	}
	if from == "" {
		if w.Install != nil && !*w.Install {
			return false, "fresh install and when.install is false", nil
		}
		return true, "", nil
	}
	if w.from != nil {
		v, ok := version.Parse(from)
		if !ok {
			return false, "", fmt.Errorf("when.from: recorded version %q is not a semantic version", from)
		}
		if !w.from.Check(v) {
			return false, fmt.Sprintf("previous version %s does not match when.from %q", from, w.From), nil
		}
	}
	return true, "", nil
}
