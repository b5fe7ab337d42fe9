package tasks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
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

	mu           sync.Mutex
	secrets      []string // every secret value known or read so far, in every form redact looks for
	fileFailures int      // header builds failed in a row (a header file missing or unreadable)
	serverErrors int      // 500 answers in a row
}

func newRequester(header headerSet, timeout time.Duration, follow bool, target string) *requester {
	r := &requester{header: header, timeout: timeout, follow: follow}
	r.client = &http.Client{CheckRedirect: r.checkRedirect}
	var known []string
	if u, err := url.Parse(target); err == nil {
		if pw, ok := u.User.Password(); ok {
			// Go's client sends the user information as "Authorization: Basic base64(user:password)",
			// which a server may echo back.
			basic := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pw))
			known = append(known, pw, url.PathEscape(pw), url.QueryEscape(pw), basic)
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

// minSecret is the length below which a value is not redacted: replacing every "tok" or "42" in a
// message would garble it (a path, a status) and hide nothing worth hiding.
const minSecret = 4

// learn adds secret values to redact, each also in the forms a JSON body writes it in ("\/",
// "\u003c"), so that a server echoing it inside JSON does not show it.
func (r *requester) learn(values []string) {
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

// maxAnswer bounds the body of an answer: a mirror list of a large PeerDB is a few hundred KiB.
const maxAnswer = 16 << 20

// answer is a response: its status, its Retry-After, and up to maxAnswer bytes of its body.
type answer struct {
	status     int
	retryAfter time.Duration // from a Retry-After header in seconds, 0 when absent
	body       []byte
	cut        bool // the body was longer than maxAnswer
}

// errAnswerTooLarge is the cause of an answer whose body is longer than maxAnswer.
var errAnswerTooLarge = fmt.Errorf("answer larger than %d MiB", maxAnswer>>20)

// do sends one request. A 401 answer after a header file changed since it was read is sent again,
// once, with the new value: a token rotated while the request was on its way.
func (r *requester) do(ctx context.Context, method, target string, expand *strings.Replacer, header http.Header, body []byte) (answer, error) {
	sent, secrets, err := r.header.build(expand)
	if err = r.buildFailed(err); err != nil {
		return answer{}, err
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

// maxFileFailures is how many requests in a row may find a header file unreadable before the task
// fails: a rotation replaces a file in one step (Kubernetes swaps a symlink), so a file that stays
// missing is gone, not being rotated.
const maxFileFailures = 3

// buildFailed classifies a failure to build the headers: transient for the first few in a row (a
// file caught mid-rotation), then permanent. It returns nil for nil.
func (r *requester) buildFailed(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.fileFailures = 0
		return nil
	}
	r.fileFailures++
	if r.fileFailures < maxFileFailures {
		return &connError{err}
	}
	return fmt.Errorf("%w (%d requests in a row)", err, r.fileFailures)
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
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
		if err == nil {
			r.countStatus(resp.StatusCode)
			ans := answer{status: resp.StatusCode, body: data, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
			if len(data) > maxAnswer {
				ans.body, ans.cut = data[:maxAnswer], true
			}
			return ans, nil
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
	downgrade := via[0].URL.Scheme == "https" && req.URL.Scheme != "https" // the secrets would go out in clear text
	if req.URL.Host == via[0].URL.Host && !downgrade {
		return nil
	}
	if !r.follow && downgrade {
		return &redirectError{fmt.Sprintf("redirect from https to http (%s) refused: set follow_redirects: true to follow it, without the headers from env or file", redactURL(req.URL.String()))}
	}
	if !r.follow {
		return &redirectError{fmt.Sprintf("redirect to another host (%s) refused: set follow_redirects: true to follow it, without the headers from env or file", redactURL(req.URL.String()))}
	}
	for _, name := range r.header.secretNames() {
		req.Header.Del(name)
	}
	return nil
}

// maxServerErrors is how many 500 answers in a row are retried: a server that failed on its side may
// have hit a passing problem, or may fail the same way every time.
const maxServerErrors = 3

// countStatus keeps the count of 500 answers in a row.
func (r *requester) countStatus(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if status == http.StatusInternalServerError {
		r.serverErrors++
	} else {
		r.serverErrors = 0
	}
}

// retryable reports whether an answer's status may change when the request is sent again: the
// gateway or proxy in front of the server is failing (502, 503, 504) or the server is overloaded
// (429), until the task's timeout; the server failed on its side (500), for maxServerErrors answers
// in a row. 400, 401, 403, 404, 501 and the rest never change by waiting.
func (r *requester) retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusInternalServerError:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.serverErrors < maxServerErrors
	}
	return false
}

// retryAfter reads a Retry-After header given in seconds (the form 429 and 503 answers use); 0 when
// absent or an HTTP date.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, 24*3600)) * time.Second
}

// statusError is an answer whose status is not the one wanted. again says whether to send the
// request again, after at least wait (the answer's Retry-After).
type statusError struct {
	err   error
	again bool
	wait  time.Duration
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// transient reports whether a failed request may succeed later: no answer, or a retryable status.
func transient(err error) bool {
	var ce *connError
	var se *statusError
	return errors.As(err, &ce) || errors.As(err, &se) && se.again
}

// waitAtLeast is how long a server asked to be left alone before the next attempt (Retry-After).
func waitAtLeast(err error) time.Duration {
	var se *statusError
	if errors.As(err, &se) {
		return se.wait
	}
	return 0
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
