package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/safefile"
)

// FileError reports every problem of one task list at once. Source is the file path, or "arguments"
// for a task given after "--".
type FileError struct {
	Source   string
	Problems []error
}

func (e *FileError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return fmt.Sprintf("task file %s: %s", e.Source, strings.Join(msgs, "; "))
}

// Unwrap returns the problems, so that errors.As finds a FieldError.
func (e *FileError) Unwrap() []error { return e.Problems }

// nameRe is checked with a separate length limit: a counted repetition like {0,62} compiles to that many
// copies of its class, a cost every run of the gate would pay at start.
var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

const maxNameLen = 64

// commonFields are the fields every task may have besides its kind.
var commonFields = map[string]bool{"name": true, "timeout": true, "when": true}

// MaxFileSize bounds a task file. A task list is a few dozen lines (SQL belongs in sql.files); the
// bound keeps a wrong path (a log, /dev/zero) from taking the gate's memory.
const MaxFileSize = 1 << 20

var errTooLarge = fmt.Errorf("larger than %d KiB: a task list is a few dozen lines (SQL belongs in sql.files)", MaxFileSize>>10)

// LoadFile reads and validates a task file (YAML; JSON is YAML).
func LoadFile(path string, lc LoadContext) ([]Spec, error) {
	data, err := safefile.ReadFile(lc.ctx(), path, MaxFileSize)
	switch {
	case errors.Is(err, safefile.ErrTooLarge):
		return nil, &FileError{Source: path, Problems: []error{errTooLarge}}
	case err != nil:
		return nil, &FileError{Source: path, Problems: []error{err}}
	}
	return Parse(data, path, lc)
}

// Parse decodes and validates a task list. Every error is a *FileError.
func Parse(data []byte, source string, lc LoadContext) ([]Spec, error) {
	fail := func(errs ...error) ([]Spec, error) { return nil, &FileError{Source: source, Problems: errs} }
	if len(data) > MaxFileSize {
		return fail(errTooLarge)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(errors.New("empty file: expected a mapping with a tasks list"))
		}
		return fail(fmt.Errorf("not valid YAML: %w", err))
	}
	// A second document would be silently ignored: refuse it, unless it is empty (a trailing "---").
	var next yaml.Node
	if err := dec.Decode(&next); err == nil && !isNull(&next) {
		return fail(fmt.Errorf("line %d: more than one YAML document (---): put every task in one tasks list", next.Line))
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fail(fmt.Errorf("not valid YAML: %w", err))
	}
	root, err := resolve(&doc)
	if err != nil {
		return fail(err)
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return fail(fmt.Errorf("line %d: expected a mapping with a tasks list", root.Line))
	}
	var list *yaml.Node
	var problems []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch {
		case k.Value != "tasks" || k.Kind != yaml.ScalarNode:
			problems = append(problems, fmt.Errorf("line %d: unknown top-level field %q (expected tasks)", k.Line, k.Value))
		case list != nil:
			problems = append(problems, fmt.Errorf("line %d: tasks defined twice (first at line %d)", k.Line, list.Line))
		default:
			list = v
		}
	}
	if list == nil {
		return fail(append(problems, errors.New("no tasks list"))...)
	}
	if list.Kind != yaml.SequenceNode {
		return fail(append(problems, fmt.Errorf("line %d: tasks must be a list", list.Line))...)
	}
	if len(problems) > 0 {
		return fail(problems...)
	}
	seen := map[string]int{}
	specs := make([]Spec, 0, len(list.Content))
	for i, item := range list.Content {
		spec, errs := decodeSpec(item, i+1, lc)
		if spec.Name != "" {
			if first, dup := seen[spec.Name]; dup {
				errs = append(errs, &FieldError{Task: spec.Name, Field: "name", Problem: fmt.Sprintf("duplicate name (task #%d has it too)", first)})
			} else {
				seen[spec.Name] = i + 1
			}
		}
		problems = append(problems, errs...)
		specs = append(specs, spec)
	}
	if len(problems) > 0 {
		return fail(problems...)
	}
	return specs, nil
}

// decodeSpec decodes one task entry; n is its 1-based position, used when it has no usable name.
func decodeSpec(item *yaml.Node, n int, lc LoadContext) (Spec, []error) {
	spec := Spec{Timeout: DefaultTimeout}
	label := fmt.Sprintf("#%d", n)
	if item.Kind != yaml.MappingNode {
		return spec, []error{&FieldError{Task: label, Problem: fmt.Sprintf("line %d: expected a mapping", item.Line)}}
	}
	fields := map[string]*yaml.Node{}
	var kindKeys []string
	var errs []error
	// Problems of the task's own keys are reported once its label (name) is known.
	var keyProblems []func()
	fe := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Task: label, Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	for i := 0; i+1 < len(item.Content); i += 2 {
		kn := item.Content[i]
		k := kn.Value
		switch _, dup := fields[k]; {
		case kn.Kind != yaml.ScalarNode:
			keyProblems = append(keyProblems, func() { fe("", "line %d: a field name must be a string", kn.Line) })
			continue
		case dup:
			keyProblems = append(keyProblems, func() { fe(k, "line %d: defined twice", kn.Line) })
			continue
		}
		fields[k] = item.Content[i+1]
		if !commonFields[k] {
			kindKeys = append(kindKeys, k)
		}
	}
	if v, ok := fields["name"]; !ok || (v.Kind == yaml.ScalarNode && v.Value == "") {
		fe("name", "required")
	} else if v.Kind != yaml.ScalarNode {
		fe("name", "line %d: must be a string", v.Line)
	} else if len(v.Value) > maxNameLen || !nameRe.MatchString(v.Value) {
		fe("name", "%q must be 1 to 64 of a-z, 0-9 and -, starting and ending with a letter or digit", v.Value)
	} else {
		spec.Name = v.Value
		label = v.Value
	}
	for _, p := range keyProblems {
		p()
	}
	if v, ok := fields["timeout"]; ok {
		d, problem := positiveDuration(v.Value, "30s, 10m")
		if v.Kind != yaml.ScalarNode {
			fe("timeout", "line %d: must be a duration like 30s or 10m", v.Line)
		} else if problem != "" {
			fe("timeout", "%s", problem)
		} else {
			spec.Timeout = d
		}
	}
	if v, ok := fields["when"]; ok {
		w, wErrs := decodeWhen(v)
		spec.When = w
		for _, e := range wErrs {
			e.Task = label
			errs = append(errs, e)
		}
	}
	var known []string
	for _, k := range kindKeys {
		if _, ok := kinds[k]; ok {
			known = append(known, k)
		} else {
			fe(k, "unknown kind or field: expected one of %s (and name, timeout, when)", strings.Join(Kinds(), ", "))
		}
	}
	for _, k := range known[min(1, len(known)):] {
		fe(k, "a second kind (the task is already %s): a task has exactly one of %s", known[0], strings.Join(Kinds(), ", "))
	}
	switch {
	case len(kindKeys) == 0:
		fe("", "no kind: expected one of %s", strings.Join(Kinds(), ", "))
	case len(known) == 1:
		kind := known[0]
		spec.Kind = kind
		task, err := kinds[kind](fields[kind], lc)
		for _, e := range flatten(err) {
			var f *FieldError
			if errors.As(e, &f) {
				c := *f
				c.Task = label
				c.Field = joinField(kind, f.Field)
				errs = append(errs, &c)
			} else {
				errs = append(errs, &FieldError{Task: label, Field: kind, Problem: e.Error()})
			}
		}
		spec.Task = task
	}
	return spec, errs
}

func joinField(kind, field string) string {
	if field == "" {
		return kind
	}
	return kind + "." + field
}

// flatten returns the errors joined in err, or none for nil.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// DecodeStrict decodes a kind's node into v, refusing fields v does not have. Kind decoders use it so
// that a misspelt field is an error, not a silent default. The error joins one *FieldError per
// problem, whose Field is the path of the field inside node ("comand", "headers.X.env"), so that the
// loader reports "exec.comand".
func DecodeStrict(node *yaml.Node, v any) error {
	if node.Kind != yaml.MappingNode {
		return Fieldf("", "line %d: expected a mapping", node.Line)
	}
	data, err := yaml.Marshal(blockStyle(node))
	if err != nil {
		return Fieldf("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return decodeProblems(err, data, v)
	}
	return nil
}

// isNull reports whether a decoded document is empty.
func isNull(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || (len(doc.Content) == 1 && doc.Content[0].ShortTag() == "!!null")
}

// FromArgs turns the command after "--" into a one-task list: an exec task called "command".
func FromArgs(args []string) []Spec {
	return []Spec{{Name: "command", Kind: "exec", Timeout: DefaultTimeout, Task: &Exec{Command: args}}}
}
