package tasks

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// A task file is decoded one field at a time (decode.go), each by the YAML library. The library
// bounds what aliases expand to within one decoding, and compares a mapping's keys pair by pair; a
// file of a thousand small decodings escapes the first bound, and a mapping of a hundred thousand
// keys makes the second take minutes. checkSize bounds both over the whole file before any decoding.

// maxEntries bounds the entries of one mapping. A task list's mappings hold a few fields.
const maxEntries = 256

// maxAliasNodes bounds the values aliases stand for in one file, so that a few lines of nested
// anchors ("billion laughs") or one large anchor named by thousands of tasks cannot take the loader's
// time and memory.
const maxAliasNodes = 100_000

// checkSize refuses a document with a mapping of more than maxEntries entries, an anchor that
// contains an alias of itself, or aliases that stand for more than maxAliasNodes values in all.
// Aliases are counted, not followed: each costs the values of the node it names.
func checkSize(doc *yaml.Node) error {
	s := sizer{sizes: map[*yaml.Node]int{}, inside: map[*yaml.Node]bool{}}
	return s.check(doc)
}

type sizer struct {
	aliased int                 // values the aliases seen so far stand for
	sizes   map[*yaml.Node]int  // values an anchored node stands for, once counted
	inside  map[*yaml.Node]bool // anchored nodes being counted: an alias of one is a cycle
}

// check walks the document as written, counting what each alias stands for.
func (s *sizer) check(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode && len(n.Content) > 2*maxEntries {
		return fmt.Errorf("%s: a mapping of more than %d entries: a task list is a few dozen lines", where(n), maxEntries)
	}
	if n.Kind == yaml.AliasNode {
		k, err := s.size(n)
		if s.aliased += k; err == nil && s.aliased > maxAliasNodes {
			err = fmt.Errorf("%s: aliases expand to more than %d values", where(n), maxAliasNodes)
		}
		return err
	}
	for _, c := range n.Content {
		if err := s.check(c); err != nil {
			return err
		}
	}
	return nil
}

// size returns the number of values n stands for, each alias in it counted as the node it names,
// up to maxAliasNodes+1.
func (s *sizer) size(n *yaml.Node) (int, error) {
	if n.Kind == yaml.AliasNode {
		switch {
		case n.Alias == nil: // the parser refuses an unknown anchor; counted as itself
			return 1, nil
		case s.inside[n.Alias]:
			return 0, fmt.Errorf("%s: anchor %q contains itself", where(n), n.Value)
		}
		n = n.Alias
	}
	if k, ok := s.sizes[n]; ok {
		return k, nil
	}
	if n.Anchor != "" {
		s.inside[n] = true
		defer delete(s.inside, n)
	}
	total := 1
	for _, c := range n.Content {
		k, err := s.size(c)
		if err != nil {
			return 0, err
		}
		total = min(total+k, maxAliasNodes+1)
	}
	if n.Anchor != "" {
		s.sizes[n] = total
	}
	return total, nil
}
