package tasks

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Task files are decoded by the YAML library: it parses and resolves aliases and merge keys (<<).
// This file holds what the library does not do: report each problem at the line and column of the
// node it is about, under the field's path in the task file's terms ("exec.env.MODE"), in words a
// reader of the file understands. Node.Decode ignores KnownFields and its type errors carry a line
// only, so a mapping is decoded one field at a time: the library turns it into its fields, the field
// names are checked against the struct's yaml tags, and each field's node is decoded by the library
// on its own. checkSize (yamlsize.go) bounds, over the whole file, what those decodings may cost.

// where names n's position the way every message does.
func where(n *yaml.Node) string { return fmt.Sprintf("line %d column %d", n.Line, n.Column) }

// at returns a FieldError about field, placed at n.
func at(n *yaml.Node, field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Line: n.Line, Column: n.Column, Problem: fmt.Sprintf(format, args...)}
}

// target returns the node n stands for: the node an alias names (the parser has linked it), or n.
func target(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// entries returns the fields of the mapping n stands for, merge keys applied by the library. The keys
// written in n are checked first, so that a duplicate or a key that is not a string is reported at
// its own line (the library would refuse the whole mapping without saying which key); with such a
// problem the fields returned are those written in n, without merges. Fields of the problems are
// relative to n. The fields are nil when n is not a mapping or the library refuses it.
func entries(n *yaml.Node) (map[string]*yaml.Node, []*FieldError) {
	m := target(n)
	if m.Kind != yaml.MappingNode {
		return nil, []*FieldError{at(n, "", "expected a mapping")}
	}
	keys := map[string]*yaml.Node{}
	written := map[string]*yaml.Node{}
	var errs []*FieldError
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		first, dup := keys[k.Value]
		switch {
		case k.Kind != yaml.ScalarNode:
			errs = append(errs, at(k, "", "a field name must be a string"))
			continue
		case dup:
			errs = append(errs, at(k, k.Value, "defined twice (first at line %d)", first.Line))
			continue
		case k.ShortTag() == "!!merge" && !mergeable(v):
			errs = append(errs, at(v, "", "a merge key (<<) takes a mapping or a list of mappings"))
		case k.ShortTag() != "!!merge":
			written[k.Value] = v
		}
		keys[k.Value] = k
	}
	if len(errs) > 0 {
		return written, errs
	}
	var fields map[string]yaml.Node
	if err := n.Decode(&fields); err != nil {
		// The keys are unique strings: what is left is the library's bound on aliases, or a duplicate
		// key inside a merged mapping.
		return nil, []*FieldError{at(n, "", "%v", err)}
	}
	out := make(map[string]*yaml.Node, len(fields))
	for k, v := range fields {
		out[k] = &v
	}
	return out, nil
}

// mergeable reports whether the library merges v, a merge key's value: a mapping, or a list of
// mappings, each possibly an alias.
func mergeable(v *yaml.Node) bool {
	if v.Kind != yaml.SequenceNode {
		return target(v).Kind == yaml.MappingNode
	}
	for _, c := range v.Content {
		if target(c).Kind != yaml.MappingNode {
			return false
		}
	}
	return true
}

// byPosition lists the names of fields in the order they are written.
func byPosition(fields map[string]*yaml.Node) []string {
	return slices.SortedFunc(maps.Keys(fields), func(a, b string) int {
		x, y := fields[a], fields[b]
		return cmp.Or(cmp.Compare(x.Line, y.Line), cmp.Compare(x.Column, y.Column), strings.Compare(a, b))
	})
}

// DecodeStrict decodes a kind's node into v, a pointer to a struct, refusing fields v does not have.
// Kind decoders use it so that a misspelt field is an error, not a silent default. The error joins
// one *FieldError per problem, at the line and column it is about, whose Field is the path of the
// field inside node ("comand", "env.MODE"), so that the loader reports "exec.comand".
func DecodeStrict(node *yaml.Node, v any) error {
	var errs []error
	for _, e := range decodeInto(node, reflect.ValueOf(v).Elem(), "") {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// decodeInto decodes n into out, the field at path. A struct, a map or a list is decoded one entry
// at a time, so that each problem is reported at its entry; everything else is the library's.
func decodeInto(n *yaml.Node, out reflect.Value, path string) []*FieldError {
	t := target(n)
	switch {
	case out.Type() == reflect.TypeFor[yaml.Node]():
		out.Set(reflect.ValueOf(*t))
		return nil
	case out.Kind() == reflect.Struct:
		return decodeStruct(n, out, path)
	case out.Kind() == reflect.Map && out.Type().Key().Kind() == reflect.String && t.Kind == yaml.MappingNode:
		fields, errs := entries(n)
		under(path, errs)
		m := reflect.MakeMapWithSize(out.Type(), len(fields))
		for _, k := range byPosition(fields) {
			e := reflect.New(out.Type().Elem()).Elem()
			errs = append(errs, decodeInto(fields[k], e, joinField(path, k))...)
			m.SetMapIndex(reflect.ValueOf(k).Convert(out.Type().Key()), e)
		}
		out.Set(m)
		return errs
	case out.Kind() == reflect.Slice && t.Kind == yaml.SequenceNode:
		s := reflect.MakeSlice(out.Type(), len(t.Content), len(t.Content))
		var errs []*FieldError
		for i, item := range t.Content {
			errs = append(errs, decodeInto(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		out.Set(s)
		return errs
	}
	err := n.Decode(out.Addr().Interface())
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		return []*FieldError{at(n, path, "%s where %s was expected", describeNode(t), describeType(out.Type()))}
	case err != nil:
		return []*FieldError{at(n, path, "%v", err)}
	}
	return nil
}

// decodeStruct decodes the mapping n stands for into the struct out, one field at a time.
func decodeStruct(n *yaml.Node, out reflect.Value, path string) []*FieldError {
	fields, errs := entries(n)
	under(path, errs)
	index, names := yamlFields(out.Type())
	for _, k := range byPosition(fields) {
		v, field := fields[k], joinField(path, k)
		i, ok := index[k]
		if !ok {
			errs = append(errs, at(v, field, "unknown field %q (expected one of %s)", k, strings.Join(names, ", ")))
			continue
		}
		errs = append(errs, decodeInto(v, out.Field(i), field)...)
	}
	return errs
}

// under puts the fields of errs under path.
func under(path string, errs []*FieldError) {
	for _, e := range errs {
		e.Field = joinField(path, e.Field)
	}
}

// yamlFields maps the field names of struct type t, as the library names them, to their index.
func yamlFields(t reflect.Type) (index map[string]int, names []string) {
	index = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		index[name] = i
		names = append(names, name)
	}
	slices.Sort(names)
	return index, names
}

// describeNode says what a node holds, in the words of a task file's reader.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	v := n.Value
	if utf8.RuneCountInString(v) > 40 {
		v = string([]rune(v)[:37]) + "..."
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "an empty value"
	case "!!str":
		return "string " + strconv.Quote(v)
	case "!!int", "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	default:
		return strings.TrimPrefix(tag, "!!") + " " + strconv.Quote(v)
	}
}

// describeType says what a Go type takes, in the words of a task file's reader.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return t.String()
}

// locate returns the node that the field path names under n ("exec.command", "headers.X-Api-Key.env",
// "unlink[2]"), or the last node on the way when the field is not written (a missing required one),
// so that a kind decoder's problem is placed too.
func locate(n *yaml.Node, path string) *yaml.Node {
	for path != "" {
		t := target(n)
		var next *yaml.Node
		switch {
		case t.Kind == yaml.SequenceNode && strings.HasPrefix(path, "["):
			idx, rest, ok := strings.Cut(path[1:], "]")
			i, err := strconv.Atoi(idx)
			if !ok || err != nil || i < 0 || i >= len(t.Content) {
				return n
			}
			next, path = t.Content[i], rest
		case t.Kind == yaml.MappingNode:
			fields, _ := entries(n)
			best := ""
			for k := range fields {
				// A header name may hold a dot: the longest name that fits is the field.
				if len(k) > len(best) && (path == k || strings.HasPrefix(path, k+".") || strings.HasPrefix(path, k+"[")) {
					best = k
				}
			}
			if best == "" {
				return n
			}
			next, path = fields[best], path[len(best):]
		default:
			return n
		}
		n, path = next, strings.TrimPrefix(path, ".")
	}
	return n
}
