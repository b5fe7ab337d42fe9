package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

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
var nameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`) })

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
		return fail(fmt.Errorf("%s: more than one YAML document (---): put every task in one tasks list", where(&next)))
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fail(fmt.Errorf("not valid YAML: %w", err))
	}
	if err := checkSize(&doc); err != nil {
		return fail(err)
	}
	root := doc.Content[0]
	if target(root).Kind != yaml.MappingNode {
		return fail(fmt.Errorf("%s: expected a mapping with a tasks list", where(root)))
	}
	fields, keyErrs := entries(root)
	var problems []error
	for _, e := range keyErrs {
		problems = append(problems, fmt.Errorf("line %d column %d: %s", e.Line, e.Column, strings.TrimSpace(e.Field+" "+e.Problem)))
	}
	if fields == nil {
		return fail(problems...)
	}
	for _, k := range byPosition(fields) {
		if k != "tasks" {
			problems = append(problems, fmt.Errorf("%s: unknown top-level field %q (expected tasks)", where(fields[k]), k))
		}
	}
	list := fields["tasks"]
	if list == nil {
		return fail(append(problems, fmt.Errorf("%s: no tasks list", where(root)))...)
	}
	if target(list).Kind != yaml.SequenceNode {
		return fail(append(problems, fmt.Errorf("%s: tasks must be a list", where(list)))...)
	}
	if len(problems) > 0 {
		return fail(problems...)
	}
	items := target(list).Content
	seen := map[string]int{}
	specs := make([]Spec, 0, len(items))
	for i, item := range items {
		spec, errs := decodeSpec(item, i+1, lc)
		if spec.Name != "" {
			if first, dup := seen[spec.Name]; dup {
				fe := at(locate(item, "name"), "name", "duplicate name (task #%d has it too)", first)
				fe.Task = spec.Name
				errs = append(errs, fe)
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
// Every problem is placed in the file: a kind decoder's at the field it names.
func decodeSpec(item *yaml.Node, n int, lc LoadContext) (Spec, []error) {
	spec := Spec{Timeout: DefaultTimeout}
	label := fmt.Sprintf("#%d", n)
	fields, errs := entries(item)
	if fields == nil {
		return spec, placed(errs, label, item)
	}
	fe := func(field string, node *yaml.Node, format string, args ...any) {
		errs = append(errs, at(node, field, format, args...))
	}
	var name string
	switch v, ok := fields["name"]; {
	case !ok:
		fe("name", item, "required")
	case v.Decode(&name) != nil:
		fe("name", v, "must be a string")
	case name == "":
		fe("name", v, "required")
	case len(name) > maxNameLen || !nameRe().MatchString(name):
		fe("name", v, "%q must be 1 to 64 of a-z, 0-9 and -, starting and ending with a letter or digit", name)
	default:
		spec.Name, label = name, name
	}
	if v, ok := fields["timeout"]; ok {
		var s string
		if err := v.Decode(&s); err != nil {
			fe("timeout", v, "must be a duration like 30s or 10m")
		} else if d, problem := positiveDuration(s, "30s, 10m"); problem != "" {
			fe("timeout", v, "%s", problem)
		} else {
			spec.Timeout = d
		}
	}
	if v, ok := fields["when"]; ok {
		w, wErrs := decodeWhen(v)
		spec.When = w
		errs = append(errs, wErrs...)
	}
	var kindKeys, known []string
	for _, k := range byPosition(fields) {
		switch _, ok := kinds[k]; {
		case commonFields[k]:
		case ok:
			kindKeys, known = append(kindKeys, k), append(known, k)
		default:
			kindKeys = append(kindKeys, k)
			fe(k, fields[k], "unknown kind or field: expected one of %s (and name, timeout, when)", strings.Join(Kinds(), ", "))
		}
	}
	for _, k := range known[min(1, len(known)):] {
		fe(k, fields[k], "a second kind (the task is already %s): a task has exactly one of %s", known[0], strings.Join(Kinds(), ", "))
	}
	switch {
	case len(kindKeys) == 0:
		fe("", item, "no kind: expected one of %s", strings.Join(Kinds(), ", "))
	case len(known) == 1:
		kind := known[0]
		spec.Kind = kind
		task, err := kinds[kind](fields[kind], lc)
		errs = append(errs, underField(kind, err)...)
		spec.Task = task
		if len(errs) == 0 {
			spec.Digest = digest(kind, nodeValue(fields[kind]), spec.When, spec.Timeout, task)
		}
	}
	return spec, placed(errs, label, item)
}

// placed names the task of each problem and places the problems a kind decoder left without a
// position at the field they name under item.
func placed(errs []*FieldError, task string, item *yaml.Node) []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		e.Task = task
		if e.Line == 0 {
			n := locate(item, e.Field)
			e.Line, e.Column = n.Line, n.Column
		}
		out[i] = e
	}
	return out
}

// underField returns the problems joined in err, each named under parent and keeping its position
// when it has one.
func underField(parent string, err error) []*FieldError {
	var out []*FieldError
	for _, e := range flatten(err) {
		var f *FieldError
		if errors.As(e, &f) {
			c := *f
			c.Field = joinField(parent, f.Field)
			out = append(out, &c)
		} else {
			out = append(out, &FieldError{Field: parent, Problem: e.Error()})
		}
	}
	return out
}

// joinField returns the path of field under parent ("exec" and "command" make "exec.command").
func joinField(parent, field string) string {
	switch {
	case field == "":
		return parent
	case parent == "":
		return field
	}
	return parent + "." + field
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

// isNull reports whether a decoded document is empty.
func isNull(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || (len(doc.Content) == 1 && doc.Content[0].ShortTag() == "!!null")
}

// FromArgs turns the command after "--" into a one-task list: an exec task called "command".
func FromArgs(args []string) []Spec {
	t := &Exec{Command: args}
	return []Spec{{Name: "command", Kind: "exec", Timeout: DefaultTimeout, Task: t,
		Digest: digest("exec", map[string]any{"command": args}, When{}, DefaultTimeout, t)}}
}
