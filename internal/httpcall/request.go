// Package httpcall is the HTTP request plumbing shared by the http and peerdb task kinds: requests
// bounded by a per-request timeout, the redirect policy, header values read from the environment or
// re-read from a file before every request, the classification of failures into those worth another
// attempt (no answer, 429, 502, 503, 504, a few 500 in a row) and the rest, and the redaction of every
// secret value a task knows from whatever it logs or returns. Decoding a task file's fields is not
// here: package tasks builds the Headers and the Requester from them and runs the retries.
package httpcall

import (
	"bytes"
	"context"
	"encoding/base64"
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
)

// Requester sends the requests of one http or peerdb task. It owns what the two kinds share: the
// headers (files re-read before every request), the per-request timeout, the redirect policy, and the
// redaction of every secret value the task knows from whatever it returns.
type Requester struct {
	header  Headers
	timeout time.Duration
	follow  bool // follow redirects to another host (without the secret headers)
	client  *http.Client

	mu           sync.Mutex
	secrets      []string // every secret value known or read so far, in every form redact looks for
	fileFailures int      // header builds failed in a row (a header file missing or unreadable)
	serverErrors int      // 500 answers in a row
}

// New returns the Requester of a task whose requests carry header, each bounded by timeout. follow
// lets a redirect to another host be followed, without the secret headers. target is the task's URL:
// a password and the longer query values in it are secrets to redact.
func New(header Headers, timeout time.Duration, follow bool, target string) *Requester {
	r := &Requester{header: header, timeout: timeout, follow: follow}
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

// Timeout is the bound of one request.
func (r *Requester) Timeout() time.Duration { return r.timeout }

// Header is the task's headers; printed or logged, they show their names only.
func (r *Requester) Header() Headers { return r.header }

// MaxAnswer bounds the body of an answer: a mirror list of a large PeerDB is a few hundred KiB.
const MaxAnswer = 16 << 20

// Answer is a response: its status, its Retry-After, and up to MaxAnswer bytes of its body.
type Answer struct {
	Status     int
	RetryAfter time.Duration // from a Retry-After header in seconds, 0 when absent
	Body       []byte
	Cut        bool // the body was longer than MaxAnswer
}

// ErrAnswerTooLarge is the cause of an answer whose body is longer than MaxAnswer.
var ErrAnswerTooLarge = fmt.Errorf("answer larger than %d MiB", MaxAnswer>>20)

// Do sends one request to target, with the task's headers (placeholders in literal values replaced
// by expand) and header added, and returns the answer whatever its status. A 401 answer after a header file changed since it was read is sent again,
// once, with the new value: a token rotated while the request was on its way.
func (r *Requester) Do(ctx context.Context, method, target string, expand *strings.Replacer, header http.Header, body []byte) (Answer, error) {
	sent, secrets, err := r.header.build(expand)
	if err = r.buildFailed(err); err != nil {
		return Answer{}, err
	}
	r.learn(secrets)
	ans, err := r.send(ctx, method, target, merge(sent, header), body)
	if err != nil || ans.Status != http.StatusUnauthorized || !r.header.hasFiles() {
		return ans, r.RedactErr(err)
	}
	now, secrets, err := r.header.build(expand)
	if err != nil || headersEqual(sent, now) {
		return ans, nil
	}
	r.learn(secrets)
	ans, err = r.send(ctx, method, target, merge(now, header), body)
	return ans, r.RedactErr(err)
}

// MaxFileFailures is how many requests in a row may find a header file unreadable before the task
// fails: a rotation replaces a file in one step (Kubernetes swaps a symlink), so a file that stays
// missing is gone, not being rotated.
const MaxFileFailures = 3

// buildFailed classifies a failure to build the headers: transient for the first few in a row (a
// file caught mid-rotation), then permanent. It returns nil for nil.
func (r *Requester) buildFailed(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.fileFailures = 0
		return nil
	}
	r.fileFailures++
	if r.fileFailures < MaxFileFailures {
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
func (r *Requester) send(ctx context.Context, method, target string, header http.Header, body []byte) (Answer, error) {
	rctx, cancel := context.WithTimeoutCause(ctx, r.timeout, errRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, target, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header = header
	resp, err := r.client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var data []byte
		data, err = io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
		if err == nil {
			r.countStatus(resp.StatusCode)
			ans := Answer{Status: resp.StatusCode, Body: data, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
			if len(data) > MaxAnswer {
				ans.Body, ans.Cut = data[:MaxAnswer], true
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
		return Answer{}, err
	case ctx.Err() == nil && errors.Is(context.Cause(rctx), errRequestTimeout):
		return Answer{}, &connError{fmt.Errorf("no answer within request_timeout %s", r.timeout)}
	}
	return Answer{}, &connError{err}
}

// redirectError is a redirect the task refuses to follow: permanent.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect follows a redirect to the same host with the request's headers; one to another host
// only with follow_redirects, and then without the headers that came from the environment or a file.
// No Referer is ever sent: it would carry the original URL, query string included.
func (r *Requester) checkRedirect(req *http.Request, via []*http.Request) error {
	req.Header.Del("Referer")
	if len(via) >= 10 {
		return &redirectError{"stopped after 10 redirects"}
	}
	downgrade := via[0].URL.Scheme == "https" && req.URL.Scheme != "https" // the secrets would go out in clear text
	if req.URL.Host == via[0].URL.Host && !downgrade {
		return nil
	}
	if !r.follow && downgrade {
		return &redirectError{fmt.Sprintf("redirect from https to http (%s) refused: set follow_redirects: true to follow it, without the headers from env or file", RedactURL(req.URL.String()))}
	}
	if !r.follow {
		return &redirectError{fmt.Sprintf("redirect to another host (%s) refused: set follow_redirects: true to follow it, without the headers from env or file", RedactURL(req.URL.String()))}
	}
	for _, name := range r.header.secretNames() {
		req.Header.Del(name)
	}
	return nil
}

// MaxServerErrors is how many 500 answers in a row are retried: a server that failed on its side may
// have hit a passing problem, or may fail the same way every time.
const MaxServerErrors = 3

// countStatus keeps the count of 500 answers in a row.
func (r *Requester) countStatus(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if status == http.StatusInternalServerError {
		r.serverErrors++
	} else {
		r.serverErrors = 0
	}
}

// Retryable reports whether an answer's status may change when the request is sent again: the
// gateway or proxy in front of the server is failing (502, 503, 504) or the server is overloaded
// (429), until the task's timeout; the server failed on its side (500), for MaxServerErrors answers
// in a row. 400, 401, 403, 404, 501 and the rest never change by waiting.
func (r *Requester) Retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusInternalServerError:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.serverErrors < MaxServerErrors
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

// StatusError is an answer whose status is not the one wanted. Again says whether to send the
// request again, after at least Wait (the answer's Retry-After).
type StatusError struct {
	Err   error
	Again bool
	Wait  time.Duration
}

// Error is Err's text.
func (e *StatusError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *StatusError) Unwrap() error { return e.Err }

// Transient reports whether a failed request may succeed later: no answer, or a StatusError to send
// again.
func Transient(err error) bool {
	var ce *connError
	var se *StatusError
	return errors.As(err, &ce) || errors.As(err, &se) && se.Again
}

// WaitAtLeast is how long a server asked to be left alone before the next attempt (Retry-After).
func WaitAtLeast(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Wait
	}
	return 0
}

// connError marks a request that got no answer: the server is down, starting, or unreachable.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }
