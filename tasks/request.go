package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultRequestTimeout bounds one request of the http and peerdb kinds that set no request_timeout.
const DefaultRequestTimeout = 30 * time.Second

// requester sends the requests of one http or peerdb task. It owns what the two kinds share: the
// headers (files re-read before every request), the per-request timeout, the redirect policy, and the
// redaction of every secret value the task knows from whatever it returns.
type requester struct {
	header  headerSet
	timeout time.Duration
	follow  bool // follow redirects to another host (without the secret headers)
	client  *http.Client

	mu      sync.Mutex
	secrets []string // every secret value known or read so far
}

func newRequester(header headerSet, timeout time.Duration, follow bool, target string) *requester {
	r := &requester{header: header, timeout: timeout, follow: follow}
	r.client = &http.Client{CheckRedirect: r.checkRedirect}
	var known []string
	if u, err := url.Parse(target); err == nil {
		if pw, ok := u.User.Password(); ok {
			known = append(known, pw, url.PathEscape(pw), url.QueryEscape(pw))
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				if len(v) >= 8 { // shorter query values (v=1) are not secrets and would garble messages
					known = append(known, v)
				}
			}
		}
	}
	if _, secrets, err := header.build(strings.NewReplacer()); err == nil {
		known = append(known, secrets...)
	}
	r.learn(known)
	return r
}

// learn adds secret values to redact.
func (r *requester) learn(values []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if v != "" && !slices.Contains(r.secrets, v) {
			r.secrets = append(r.secrets, v)
		}
	}
	// Longest first, so that "Bearer tok" is hidden whole before "tok".
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// redact replaces every secret value the task knows by ***.
func (r *requester) redact(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, "***")
	}
	return s
}

// redactErr returns err, or an error with the same chain and the secrets hidden in its text.
func (r *requester) redactErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := r.redact(err.Error()); msg != err.Error() {
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

// excerpt is a response body fit for an error message, secrets hidden.
func (r *requester) excerpt(body []byte) string { return bodyExcerpt([]byte(r.redact(string(body)))) }

// answer is a response: its status and up to 64 KiB of its body.
type answer struct {
	status int
	body   []byte
}

// do sends one request. A 401 answer after a header file changed since it was read is sent again,
// once, with the new value: a token rotated while the request was on its way.
func (r *requester) do(ctx context.Context, method, target string, expand *strings.Replacer, header http.Header, body []byte) (answer, error) {
	sent, secrets, err := r.header.build(expand)
	if err != nil {
		return answer{}, &connError{err} // a header file mid-rotation: try again
	}
	r.learn(secrets)
	ans, err := r.send(ctx, method, target, merge(sent, header), body)
	if err != nil || ans.status != http.StatusUnauthorized || !r.header.hasFiles() {
		return ans, r.redactErr(err)
	}
	now, secrets, err := r.header.build(expand)
	if err != nil || headersEqual(sent, now) {
		return ans, nil
	}
	r.learn(secrets)
	ans, err = r.send(ctx, method, target, merge(now, header), body)
	return ans, r.redactErr(err)
}

// merge returns h with extra's headers added, leaving h as it was.
func merge(h, extra http.Header) http.Header {
	h = h.Clone()
	for k, vs := range extra {
		h[k] = vs
	}
	return h
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// errRequestTimeout is the cause of a request cut by request_timeout.
var errRequestTimeout = errors.New("request_timeout")

// send sends one request within the request timeout.
func (r *requester) send(ctx context.Context, method, target string, header http.Header, body []byte) (answer, error) {
	rctx, cancel := context.WithTimeoutCause(ctx, r.timeout, errRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, target, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header = header
	resp, err := r.client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var data []byte
		data, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err == nil {
			return answer{status: resp.StatusCode, body: data}, nil
		}
		err = fmt.Errorf("status %d, reading body: %w", resp.StatusCode, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the method and URL, which the caller names itself
	}
	var refused *redirectError
	switch {
	case errors.As(err, &refused):
		return answer{}, err
	case ctx.Err() == nil && errors.Is(context.Cause(rctx), errRequestTimeout):
		return answer{}, &connError{fmt.Errorf("no answer within request_timeout %s", r.timeout)}
	}
	return answer{}, &connError{err}
}

// redirectError is a redirect the task refuses to follow: permanent.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect follows a redirect to the same host with the request's headers; one to another host
// only with follow_redirects, and then without the headers that came from the environment or a file.
// No Referer is ever sent: it would carry the original URL, query string included.
func (r *requester) checkRedirect(req *http.Request, via []*http.Request) error {
	req.Header.Del("Referer")
	if len(via) >= 10 {
		return &redirectError{"stopped after 10 redirects"}
	}
	if req.URL.Host == via[0].URL.Host {
		return nil
	}
	if !r.follow {
		return &redirectError{fmt.Sprintf("redirect to another host (%s) refused: set follow_redirects: true to follow it, without the headers from env or file", redactURL(req.URL.String()))}
	}
	for _, name := range r.header.secretNames() {
		req.Header.Del(name)
	}
	return nil
}

// retryable reports whether an answer's status may change when the request is sent again: the
// gateway or proxy in front of the server is failing (502, 503, 504), the server is overloaded (429),
// or failed on its side (500). 400, 401, 403, 404 and 501 never change by waiting.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500 && status != http.StatusNotImplemented && status != http.StatusHTTPVersionNotSupported
}

// transient reports whether a failed request may succeed later: no answer, or a retryable status.
func transient(err error) bool {
	var ce *connError
	var fe *FlowAPIError
	return errors.As(err, &ce) || errors.As(err, &fe) && retryable(fe.Status)
}

// connError marks a request that got no answer: the server is down, starting, or unreachable.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// maxExcerpt is how much of a response body an error quotes.
const maxExcerpt = 512

// bodyExcerpt is a response body fit for an error message: one line, at most maxExcerpt bytes.
func bodyExcerpt(b []byte) string {
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
