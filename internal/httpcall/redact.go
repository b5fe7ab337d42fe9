package httpcall

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// minSecret is the length below which a value is not redacted: replacing every "tok" or "42" in a
// message would garble it (a path, a status) and hide nothing worth hiding.
const minSecret = 4

// learn adds secret values to redact, each also in the forms a JSON body writes it in ("\/",
// "\u003c"), so that a server echoing it inside JSON does not show it.
func (r *Requester) learn(values []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if len(v) < minSecret {
			continue
		}
		for _, form := range jsonForms(v) {
			if !slices.Contains(r.secrets, form) {
				r.secrets = append(r.secrets, form)
			}
		}
	}
	// Longest first, so that "Bearer tok" is hidden whole before "tok".
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// jsonForms returns v and the ways a JSON encoder may write it inside a string: with or without HTML
// escaping (\u003c, \u0026), and with "/" escaped as "\/" (PHP, some proxies).
func jsonForms(v string) []string {
	forms := []string{v}
	add := func(f string) {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	for _, html := range []bool{true, false} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		if enc.Encode(v) != nil {
			continue
		}
		f := strings.TrimSuffix(buf.String(), "\n")
		f = f[1 : len(f)-1] // the quotes
		add(f)
		add(strings.ReplaceAll(f, "/", `\/`))
	}
	return forms
}

// Redact replaces every secret value the task knows by ***.
func (r *Requester) Redact(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, "***")
	}
	return s
}

// RedactErr returns err, or an error with the same chain and the secrets hidden in its text.
func (r *Requester) RedactErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := r.Redact(err.Error()); msg != err.Error() {
		return &redactedError{msg: msg, err: err}
	}
	return err
}

// redactedError keeps errors.Is and errors.As working on an error whose text was redacted.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Excerpt is a response body fit for an error message, secrets hidden.
func (r *Requester) Excerpt(body []byte) string { return BodyExcerpt([]byte(r.Redact(string(body)))) }

// maxExcerpt is how much of a response body an error quotes.
const maxExcerpt = 512

// BodyExcerpt is a response body fit for an error message: one line, at most maxExcerpt bytes.
func BodyExcerpt(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if s == "" {
		return "(empty body)"
	}
	if len(s) > maxExcerpt {
		cut := maxExcerpt
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + "…(truncated)"
	}
	return s
}

// RedactURL hides a URL's password and the values of its query, for a log line or an error.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	// Query values may be tokens (?token=, ?sig=): keep the names, hide every value.
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
