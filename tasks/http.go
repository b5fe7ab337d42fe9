package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// HTTP sends one request and checks that the answer's status is expected. Connection errors, requests
// cut by request_timeout, and 429 (after its Retry-After), 502, 503 and 504 answers are retried with
// capped exponential backoff until the task's timeout, 500 for three answers in a row; any other
// unexpected status (400, 401, 403, 404, 501, ...) fails at once, with the start of the response body
// in the error. Every secret value the task knows (header
// values from env or file, a URL password) is shown as *** in what it logs and returns.
type HTTP struct {
	Method string
	URL    string
	// Body may hold ${FROM_VERSION}, ${TO_VERSION} and ${FENCING_TOKEN}, expanded at run time.
	Body string
	// Expect lists the accepted statuses; empty accepts any 2xx.
	Expect []int

	req     *httpcall.Requester
	backoff backoff
}

type httpFields struct {
	Method          string               `yaml:"method"`
	URL             string               `yaml:"url"`
	Headers         map[string]yaml.Node `yaml:"headers"`
	Body            string               `yaml:"body"`
	Expect          []int                `yaml:"expect"`
	RequestTimeout  string               `yaml:"request_timeout"`
	FollowRedirects bool                 `yaml:"follow_redirects"`
}

func init() { Register("http", decodeHTTP) }

var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func decodeHTTP(node *yaml.Node, lc LoadContext) (Task, error) {
	var f httpFields
	errs, ok := decodeKind(node, &f)
	if !ok {
		return nil, errors.Join(errs...)
	}
	t := &HTTP{Method: strings.ToUpper(f.Method), URL: f.URL, Body: f.Body, Expect: f.Expect, backoff: defaultBackoff}
	if t.Method == "" {
		t.Method = http.MethodGet
	} else if !slices.Contains(httpMethods, t.Method) {
		errs = append(errs, Fieldf("method", "%q is not one of %s", f.Method, strings.Join(httpMethods, ", ")))
	}
	if err := checkHTTPURL(f.URL); err != nil {
		errs = append(errs, Fieldf("url", "%s", err))
	}
	for _, s := range f.Expect {
		if s < 100 || s > 599 {
			errs = append(errs, Fieldf("expect", "%d is not an HTTP status (100 to 599)", s))
		}
	}
	if err := checkPlaceholders(f.Body); err != nil {
		errs = append(errs, Fieldf("body", "%s", err))
	}
	timeout, err := requestTimeout(f.RequestTimeout)
	if err != nil {
		errs = append(errs, err)
	}
	header, hErrs := decodeHeaders(f.Headers, lc)
	t.req = httpcall.New(header, timeout, f.FollowRedirects, f.URL)
	return t, errors.Join(append(errs, hErrs...)...)
}

// DefaultRequestTimeout bounds one request of the http and peerdb kinds that set no request_timeout.
const DefaultRequestTimeout = 30 * time.Second

// requestTimeout reads the request_timeout field.
func requestTimeout(s string) (time.Duration, error) {
	if s == "" {
		return DefaultRequestTimeout, nil
	}
	d, problem := positiveDuration(s, "10s, 1m")
	if problem != "" {
		return DefaultRequestTimeout, Fieldf("request_timeout", "%s", problem)
	}
	return d, nil
}

// Run sends the request, retrying what may succeed later until ctx is done.
func (h *HTTP) Run(ctx context.Context, env Env) error {
	expand := placeholders(env)
	body := []byte(expand.Replace(h.Body))
	target := httpcall.RedactURL(h.URL)
	start := time.Now()
	var status int
	attempts, err := h.backoff.retry(ctx, env.Logger, func() (bool, error) {
		ans, err := h.req.Do(ctx, h.Method, h.URL, expand, nil, body)
		if err != nil {
			return httpcall.Transient(err), err
		}
		status = ans.Status
		if h.expected(status) {
			return false, nil
		}
		err = fmt.Errorf("status %d, expected %s: %s", status, h.expectText(), h.req.Excerpt(ans.Body))
		se := &httpcall.StatusError{Err: err, Again: h.req.Retryable(status), Wait: ans.RetryAfter}
		return se.Again, se
	})
	if err != nil {
		return h.req.RedactErr(fmt.Errorf("%s %s: %w", h.Method, target, err))
	}
	env.Logger.Info("http request done", "method", h.Method, "url", target, "status", status,
		"attempts", attempts, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

func (h *HTTP) expected(status int) bool {
	if len(h.Expect) == 0 {
		return status >= 200 && status < 300
	}
	return slices.Contains(h.Expect, status)
}

func (h *HTTP) expectText() string {
	if len(h.Expect) == 0 {
		return "2xx"
	}
	return strings.ReplaceAll(strings.Trim(fmt.Sprint(h.Expect), "[]"), " ", ", ")
}

func checkHTTPURL(raw string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil && strings.Contains(raw, "@") {
		// url.Parse quotes the part of the authority it choked on, which may be the start of the
		// password.
		return errors.New("not a URL (percent-encode special characters in the password)")
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, password included
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https", httpcall.RedactURL(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("%s: no host", httpcall.RedactURL(raw))
	}
	return nil
}

var knownPlaceholders = []string{"FROM_VERSION", "TO_VERSION", "FENCING_TOKEN"}

func checkPlaceholders(s string) error {
	var unknown []string
	for _, m := range httpcall.PlaceholderRe().FindAllStringSubmatch(s, -1) {
		if !slices.Contains(knownPlaceholders, m[1]) {
			unknown = append(unknown, m[0])
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	return fmt.Errorf("unknown placeholder %s: only ${FROM_VERSION}, ${TO_VERSION} and ${FENCING_TOKEN} are expanded", strings.Join(unknown, ", "))
}

func placeholders(env Env) *strings.Replacer {
	return strings.NewReplacer(
		"${FROM_VERSION}", env.FromVersion,
		"${TO_VERSION}", env.ToVersion,
		"${FENCING_TOKEN}", strconv.FormatInt(env.FencingToken, 10),
	)
}
