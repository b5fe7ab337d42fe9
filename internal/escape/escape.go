// Package escape keeps what the gate prints from driving a terminal: values it did not choose (a
// version or holder read from Redis, an error body from a server) may carry escape sequences, line
// breaks that forge output lines, or bidirectional overrides that reorder what is shown.
package escape

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// unsafe reports whether r changes how a terminal shows what follows it: C0 and C1 controls, DEL,
// and the bidirectional formatting characters.
func unsafe(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029'
}

// Text returns s with every control, bidirectional formatting character and invalid byte written as
// a Go escape (\x1b, \n, \u202e), so that it prints as one inert line. Text without them is returned
// as it is.
func Text(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return unsafe(r) || r == utf8.RuneError }) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
				continue
			}
			b.WriteRune(r)
		case unsafe(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// JSON wraps a writer of JSON text (one document or line per Write) so that the characters
// encoding/json leaves raw (DEL, C1 controls, bidirectional formatting) are written as \u escapes:
// outside strings JSON has none of them, so the document means the same.
func JSON(w io.Writer) io.Writer { return jsonWriter{w} }

type jsonWriter struct{ w io.Writer }

func (j jsonWriter) Write(p []byte) (int, error) {
	if !hasUnsafe(p) {
		return j.w.Write(p)
	}
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r != utf8.RuneError && unsafe(r) && r >= 0x7f {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, p[i:i+size]...)
		}
		i += size
	}
	if _, err := j.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func hasUnsafe(p []byte) bool {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r >= 0x7f && r != utf8.RuneError && unsafe(r) {
			return true
		}
		i += size
	}
	return false
}
