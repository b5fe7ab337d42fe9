// Package mdtest reads Markdown the way a renderer does (github.com/yuin/goldmark, CommonMark), for
// tests of the repository's documents: it finds fences that do not close where the author meant,
// headings swallowed by a code block, relative links to files that do not exist, and returns the code
// blocks as they render. Only tests import it, so the parser never enters the binary.
package mdtest

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
)

// Block is one fenced code block as it renders.
type Block struct {
	Info string // the info string: yaml, sh, ...
	Line int    // 1-based line of the first content line
	Text string
}

var (
	fenceLine   = regexp.MustCompile("^ {0,3}(```|~~~)")
	headingLine = regexp.MustCompile(`^#{2,6} \S`)
)

func parse(src []byte) ast.Node {
	md := goldmark.New(goldmark.WithExtensions(extension.GFM))
	return md.Parser().Parse(text.NewReader(src))
}

// lineOf returns the 1-based line of byte offset off.
func lineOf(src []byte, off int) int { return bytes.Count(src[:off], []byte("\n")) + 1 }

// Blocks returns every fenced code block of a Markdown document.
func Blocks(src []byte) []Block {
	var out []Block
	_ = ast.Walk(parse(src), func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		fb, ok := n.(*ast.FencedCodeBlock)
		if !entering || !ok {
			return ast.WalkContinue, nil
		}
		b := Block{Info: string(fb.Language(src))}
		var sb strings.Builder
		for i := range fb.Lines().Len() {
			seg := fb.Lines().At(i)
			if i == 0 {
				b.Line = lineOf(src, seg.Start)
			}
			sb.Write(seg.Value(src))
		}
		b.Text = sb.String()
		out = append(out, b)
		return ast.WalkContinue, nil
	})
	return out
}

// Problems lists what renders differently from what the author of the document at path meant: a
// fenced code block that never closes, a line inside a code block that looks like a fence or a
// section heading (a fence closed too early or too late swallows them), and a relative link or image
// whose file does not exist.
func Problems(path string, src []byte) []string {
	var ps []string
	add := func(line int, format string, args ...any) {
		ps = append(ps, fmt.Sprintf("%s:%d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	_ = ast.Walk(parse(src), func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.FencedCodeBlock:
			lines := n.Lines()
			if lines.Len() == 0 {
				return ast.WalkContinue, nil
			}
			for i := range lines.Len() {
				seg := lines.At(i)
				l := string(seg.Value(src))
				switch {
				case fenceLine.MatchString(l):
					add(lineOf(src, seg.Start), "a fence line with text after it inside a code block (a closing fence must stand alone): %q", strings.TrimSpace(l))
				case headingLine.MatchString(l):
					add(lineOf(src, seg.Start), "a heading inside a code block: %q", strings.TrimSpace(l))
				}
			}
			last := lines.At(lines.Len() - 1)
			rest := src[last.Stop:]
			if !fenceLine.Match(rest) {
				add(lineOf(src, lines.At(0).Start)-1, "the code block opened here never closes")
			}
		case *ast.Link:
			checkLink(path, string(n.Destination), lineNear(src, n), add)
		case *ast.Image:
			checkLink(path, string(n.Destination), lineNear(src, n), add)
		}
		return ast.WalkContinue, nil
	})
	return ps
}

// lineNear returns the line of the text inside an inline node (links have no position of their own).
func lineNear(src []byte, n ast.Node) int {
	for c := n; c != nil; c = c.Parent() {
		if c.Type() == ast.TypeBlock && c.Lines().Len() > 0 {
			return lineOf(src, c.Lines().At(0).Start)
		}
	}
	return 0
}

func checkLink(path, dest string, line int, add func(int, string, ...any)) {
	u, err := url.Parse(dest)
	if err != nil {
		add(line, "link %q does not parse: %v", dest, err)
		return
	}
	if u.Scheme != "" || u.Host != "" || u.Path == "" {
		return // absolute, or a fragment of this document
	}
	target := filepath.Join(filepath.Dir(path), filepath.FromSlash(u.Path))
	if _, err := os.Stat(target); err != nil {
		add(line, "relative link %q: %s does not exist", dest, target)
	}
}
