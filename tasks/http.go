package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// HTTP sends one request and checks that the answer's status is expected. Connection errors and 5xx
// answers are retried with capped exponential backoff until the task's timeout; any other unexpected
// status fails at once, with the start of the response body in the error.
type HTTP struct {
	Method string
	URL    string
	// Body may hold ${FROM_VERSION}, ${TO_VERSION} and ${FENCING_TOKEN}, expanded at run time.
	Body string
	// Expect lists the accepted statuses; empty accepts any 2xx.
	Expect []int

	header  headerSet
	backoff backoff
}

type httpFields struct {
	Method  string               `yaml:"method"`
	URL     string               `yaml:"url"`
	Headers map[string]yaml.Node `yaml:"headers"`
	Body    string               `yaml:"body"`
	Expect  []int                `yaml:"expect"`
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
	var hErrs []error
	t.header, hErrs = decodeHeaders(f.Headers, lc)
	return t, errors.Join(append(errs, hErrs...)...)
}

// Run sends the request, retrying connection errors and 5xx answers until ctx is done.
func (h *HTTP) Run(ctx context.Context, env Env) error {
	expand := placeholders(env)
	body := []byte(expand.Replace(h.Body))
	target := redactURL(h.URL)
	start := time.Now()
	var status int
	attempts, err := h.backoff.retry(ctx, env.Logger, func() (bool, error) {
		var resp []byte
		var err error
		status, resp, err = roundTrip(ctx, h.Method, h.URL, h.header.build(expand), body)
		if err != nil {
			return true, err
		}
		if h.expected(status) {
			return false, nil
		}
		return status >= 500, fmt.Errorf("status %d, expected %s: %s", status, h.expectText(), bodyExcerpt(resp))
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", h.Method, target, err)
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

// httpClient sends every request of the http and peerdb kinds; deadlines come from the task's context.
var httpClient = &http.Client{}

// maxExcerpt is how much of a response body an error quotes.
const maxExcerpt = 512

// roundTrip sends one request and returns the status and up to 64 KiB of the body.
func roundTrip(ctx context.Context, method, target string, header http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = header
	resp, err := httpClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the method and URL, which the caller names itself
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, data, fmt.Errorf("status %d, reading body: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, data, nil
}

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

func checkHTTPURL(raw string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, password included
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https", redactURL(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("%s: no host", redactURL(raw))
	}
	return nil
}

// redactURL hides a password in a URL's user information.
func redactURL(raw string) string {
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

// placeholderRe finds ${NAME} in a body or header value.
var placeholderRe = regexp.MustCompile(`\$\{([^}]*)\}`)

var knownPlaceholders = []string{"FROM_VERSION", "TO_VERSION", "FENCING_TOKEN"}

func checkPlaceholders(s string) error {
	var unknown []string
	for _, m := range placeholderRe.FindAllStringSubmatch(s, -1) {
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

// headerSet is the headers of a request. Values read from the environment are secrets: headerSet
// prints names only, and its values never reach a log line or an error.
type headerSet []headerField

type headerField struct {
	name   string
	value  string
	secret bool // read from the environment: used as is, never expanded, never shown
}

// String lists the header names, never their values.
func (hs headerSet) String() string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.name
	}
	return strings.Join(names, ", ")
}

// LogValue keeps header values out of logs even when a headerSet is logged by mistake.
func (hs headerSet) LogValue() slog.Value { return slog.StringValue(hs.String()) }

func (hs headerSet) build(expand *strings.Replacer) http.Header {
	h := http.Header{}
	for _, f := range hs {
		v := f.value
		if !f.secret {
			v = expand.Replace(v)
		}
		h.Set(f.name, v)
	}
	return h
}

var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

type headerEnvFields struct {
	Env    string `yaml:"env"`
	Prefix string `yaml:"prefix"`
}

// decodeHeaders reads a headers mapping: each value is a string or {env: NAME, prefix: "Bearer "}.
func decodeHeaders(nodes map[string]yaml.Node, lc LoadContext) (headerSet, []error) {
	names := make([]string, 0, len(nodes))
	for name := range nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	var hs headerSet
	var errs []error
	for _, name := range names {
		node := nodes[name]
		field := "headers." + name
		if !headerNameRe.MatchString(name) {
			errs = append(errs, Fieldf(field, "not a valid header name"))
			continue
		}
		switch node.Kind {
		case yaml.ScalarNode:
			if strings.ContainsAny(node.Value, "\r\n") {
				errs = append(errs, Fieldf(field, "a header value cannot hold a line break"))
			} else if err := checkPlaceholders(node.Value); err != nil {
				errs = append(errs, Fieldf(field, "%s", err))
			}
			hs = append(hs, headerField{name: name, value: node.Value})
		case yaml.MappingNode:
			var f headerEnvFields
			if err := DecodeStrict(&node, &f); err != nil {
				errs = append(errs, Fieldf(field, "%s", problem(err)))
				continue
			}
			if f.Env == "" {
				errs = append(errs, Fieldf(field+".env", "required: the environment variable holding the value"))
				continue
			}
			v := lc.getenv(f.Env)
			if v == "" {
				errs = append(errs, Fieldf(field+".env", "environment variable %s is empty or not set", f.Env))
				continue
			}
			if strings.ContainsAny(v, "\r\n") {
				errs = append(errs, Fieldf(field+".env", "environment variable %s holds a line break", f.Env))
				continue
			}
			hs = append(hs, headerField{name: name, value: f.Prefix + v, secret: true})
		default:
			errs = append(errs, Fieldf(field, "expected a string or {env: NAME}"))
		}
	}
	return hs, errs
}
