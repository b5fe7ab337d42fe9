package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)

// commonFields are the fields every task may have besides its kind.
var commonFields = map[string]bool{"name": true, "timeout": true, "when": true}

// LoadFile reads and validates a task file (YAML; JSON is YAML).
func LoadFile(path string, lc LoadContext) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{Source: path, Problems: []error{err}}
	}
	return Parse(data, path, lc)
}

// Parse decodes and validates a task list.
func Parse(data []byte, source string, lc LoadContext) ([]Spec, error) {
	fail := func(errs ...error) ([]Spec, error) { return nil, &FileError{Source: source, Problems: errs} }
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(errors.New("empty file: expected a mapping with a tasks list"))
		}
		return fail(fmt.Errorf("not valid YAML: %w", err))
	}
	root := &doc
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
		if k.Value != "tasks" {
			problems = append(problems, fmt.Errorf("line %d: unknown top-level field %q (expected tasks)", k.Line, k.Value))
			continue
		}
		list = v
	}
	if list == nil {
		return fail(append(problems, errors.New("no tasks list"))...)
	}
	if list.Kind != yaml.SequenceNode {
		return fail(append(problems, fmt.Errorf("line %d: tasks must be a list", list.Line))...)
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
	for i := 0; i+1 < len(item.Content); i += 2 {
		k := item.Content[i].Value
		fields[k] = item.Content[i+1]
		if !commonFields[k] {
			kindKeys = append(kindKeys, k)
		}
	}
	fe := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Task: label, Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if v, ok := fields["name"]; !ok || v.Value == "" {
		fe("name", "required")
	} else if !nameRe.MatchString(v.Value) {
		fe("name", "%q must be 1 to 64 of a-z, 0-9 and -, starting and ending with a letter or digit", v.Value)
	} else {
		spec.Name = v.Value
		label = v.Value
	}
	if v, ok := fields["timeout"]; ok {
		d, err := time.ParseDuration(v.Value)
		if err != nil || d <= 0 {
			fe("timeout", "%q is not a positive duration (Go syntax: 30s, 10m)", v.Value)
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
	switch len(kindKeys) {
	case 0:
		fe("", "no kind: expected one of %s", strings.Join(Kinds(), ", "))
	case 1:
		kind := kindKeys[0]
		decode, ok := kinds[kind]
		if !ok {
			fe(kind, "unknown kind or field: expected one of %s", strings.Join(Kinds(), ", "))
			break
		}
		spec.Kind = kind
		task, err := decode(fields[kind], lc)
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
	default:
		fe("", "more than one kind or unknown fields: %s (a task has exactly one of %s)", strings.Join(kindKeys, ", "), strings.Join(Kinds(), ", "))
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
// that a misspelt field is an error, not a silent default.
func DecodeStrict(node *yaml.Node, v any) error {
	if node.Kind != yaml.MappingNode {
		return Fieldf("", "line %d: expected a mapping", node.Line)
	}
	data, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return Fieldf("", "%s", yamlProblem(err))
	}
	return nil
}

// FromArgs turns the command after "--" into a one-task list: an exec task called "command".
func FromArgs(args []string) []Spec {
	return []Spec{{Name: "command", Kind: "exec", Timeout: DefaultTimeout, Task: &Exec{Command: args}}}
}

var (
	yamlLineRe    = regexp.MustCompile(`line \d+: `)
	yamlUnknownRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
	yamlTypeRe    = regexp.MustCompile(`cannot unmarshal !!(\w+) ` + "`" + `([^` + "`" + `]*)` + "`" + ` into (\S+)`)
)

// yamlProblem rewords a yaml decoding error in the task file's terms: the line numbers of the
// re-encoded node and Go type names mean nothing to the reader.
func yamlProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = yamlLineRe.ReplaceAllString(msg, "")
	msg = yamlUnknownRe.ReplaceAllString(msg, "unknown field $1")
	msg = yamlTypeRe.ReplaceAllString(msg, "$1 value $2 where $3 was expected")
	// Several problems come one per line: keep them apart.
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}
