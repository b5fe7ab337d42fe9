package tasks

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxAliasNodes bounds what YAML aliases may expand to, so that a few lines of nested anchors (a
// "billion laughs" document) cannot take the loader's memory.
const maxAliasNodes = 100_000

// resolver copies a YAML tree without aliases or merge keys: an alias becomes a copy of its anchor's
// node and a merge key's mappings become ordinary fields (explicit fields win). The loader then never
// sees an alias, whose Value is the anchor's name and not the value it stands for.
type resolver struct {
	budget int                 // nodes aliases may still add
	active map[*yaml.Node]bool // anchors being expanded: an anchor inside itself is a cycle
}

func resolve(n *yaml.Node) (*yaml.Node, error) {
	r := &resolver{budget: maxAliasNodes, active: map[*yaml.Node]bool{}}
	return r.node(n, false)
}

func (r *resolver) node(n *yaml.Node, viaAlias bool) (*yaml.Node, error) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, fmt.Errorf("line %d: unknown anchor %q", n.Line, n.Value)
		}
		if r.active[n.Alias] {
			return nil, fmt.Errorf("line %d: anchor %q contains itself", n.Line, n.Value)
		}
		r.active[n.Alias] = true
		defer delete(r.active, n.Alias)
		return r.node(n.Alias, true)
	}
	if viaAlias {
		if r.budget--; r.budget < 0 {
			return nil, fmt.Errorf("line %d: aliases expand to more than %d values", n.Line, maxAliasNodes)
		}
	}
	c := *n
	c.Anchor, c.Content = "", nil
	if n.Kind != yaml.MappingNode {
		for _, child := range n.Content {
			cc, err := r.node(child, viaAlias)
			if err != nil {
				return nil, err
			}
			c.Content = append(c.Content, cc)
		}
		return &c, nil
	}
	explicit := map[string]bool{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		k, err := r.node(n.Content[i], viaAlias)
		if err != nil {
			return nil, err
		}
		v, err := r.node(n.Content[i+1], viaAlias)
		if err != nil {
			return nil, err
		}
		explicit[k.Value] = true
		c.Content = append(c.Content, k, v)
	}
	for _, m := range merges {
		mc, err := r.node(m, viaAlias)
		if err != nil {
			return nil, err
		}
		maps := []*yaml.Node{mc}
		if mc.Kind == yaml.SequenceNode {
			maps = mc.Content
		}
		for _, mm := range maps {
			if mm.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("line %d: a merge key (<<) takes a mapping or a list of mappings", m.Line)
			}
			for j := 0; j+1 < len(mm.Content); j += 2 {
				if k := mm.Content[j]; !explicit[k.Value] {
					explicit[k.Value] = true
					c.Content = append(c.Content, k, mm.Content[j+1])
				}
			}
		}
	}
	return &c, nil
}

// blockStyle returns a copy of n with every mapping and list in block style, so that once encoded
// each field starts a line of its own and a decoding error's line number names exactly one field.
func blockStyle(n *yaml.Node) *yaml.Node {
	c := *n
	if c.Kind == yaml.MappingNode || c.Kind == yaml.SequenceNode {
		c.Style &^= yaml.FlowStyle
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, child := range n.Content {
		c.Content[i] = blockStyle(child)
	}
	return &c
}

// lineIndex maps the lines of an encoded block-style document to field paths: key[line] is the field
// whose name is on that line, value[line, tag] the field whose value of that YAML tag starts there.
type lineIndex struct {
	key   map[int]string
	value map[lineTag]string
}

type lineTag struct {
	line int
	tag  string
}

func indexLines(data []byte) lineIndex {
	ix := lineIndex{key: map[int]string{}, value: map[lineTag]string{}}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) == 1 {
		ix.walk(doc.Content[0], "")
	}
	return ix
}

func (ix lineIndex) walk(n *yaml.Node, path string) {
	if lt := (lineTag{n.Line, n.ShortTag()}); ix.value[lt] == "" {
		ix.value[lt] = path
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if _, ok := ix.key[k.Line]; !ok {
				ix.key[k.Line] = p
			}
			ix.walk(n.Content[i+1], p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			ix.walk(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

var (
	yamlLineRe      = regexp.MustCompile(`^line (\d+): `)
	yamlUnknownRe   = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	yamlDuplicateRe = regexp.MustCompile(`^mapping key "(.*)" already defined at line \d+$`)
	yamlTypeRe      = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `([^`]*)`)? into (\\S+)$")
)

// decodeProblems turns a yaml decoding error of the encoded block-style data into one FieldError per
// problem, each naming the field's path (relative to the decoded node) in the task file's terms: the
// line numbers of the re-encoded node and Go type names mean nothing to the reader.
func decodeProblems(err error, data []byte, v any) error {
	lines := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines = te.Errors
	}
	ix := indexLines(data)
	var errs []error
	for _, msg := range lines {
		msg = strings.Join(strings.Fields(msg), " ")
		line := 0
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = msg[len(m[0]):]
		}
		var field, problem string
		switch m := yamlUnknownRe.FindStringSubmatch(msg); {
		case m != nil:
			field = ix.key[line]
			if field == "" {
				field = m[1]
			}
			problem = fmt.Sprintf("unknown field %q", m[1])
			if !strings.ContainsAny(field, ".[") {
				problem += " (expected one of " + strings.Join(yamlFields(v), ", ") + ")"
			}
		case yamlDuplicateRe.MatchString(msg):
			field, problem = ix.key[line], "defined twice"
		default:
			problem = msg
			if m := yamlTypeRe.FindStringSubmatch(msg); m != nil {
				field = ix.value[lineTag{line, m[1]}]
				problem = fmt.Sprintf("%s where %s was expected", yamlKind(m[1], m[2]), goKind(m[3]))
			}
		}
		errs = append(errs, Fieldf(field, "%s", problem))
	}
	return errors.Join(errs...)
}

// yamlFields lists the field names of the struct v points to.
func yamlFields(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func yamlKind(tag, value string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!null":
		return "an empty value"
	case "!!str":
		return fmt.Sprintf("string %q", value)
	case "!!int", "!!float":
		return "number " + value
	case "!!bool":
		return "boolean " + value
	}
	return fmt.Sprintf("%s %q", strings.TrimPrefix(tag, "!!"), value)
}

func goKind(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "bool" || t == "*bool":
		return "true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "[]string":
		return "a list of strings"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	return t
}
