package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// fastBackoff keeps retry tests quick.
var fastBackoff = backoff{initial: time.Millisecond, max: 5 * time.Millisecond}

// loadHTTP decodes an http task the way the task file loader does.
func loadHTTP(t *testing.T, yaml string, env map[string]string) *HTTP {
	t.Helper()
	specs, err := Parse([]byte("tasks:\n  - name: hook\n    http: "+yaml+"\n"), "test", LoadContext{Getenv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	h := specs[0].Task.(*HTTP)
	h.backoff = fastBackoff
	return h
}

type seenRequest struct {
	method, path, auth, trace, body string
}

func TestHTTPSendsMethodHeadersAndBodyWithPlaceholdersExpanded(t *testing.T) {
	var got seenRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seenRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Fencing-Token"), string(b)}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h := loadHTTP(t, `{method: post, url: "`+srv.URL+`/upgraded", expect: [204],
      headers: {Authorization: {env: HOOK_TOKEN, prefix: "Bearer "}, X-Fencing-Token: "${FENCING_TOKEN}"},
      body: '{"from":"${FROM_VERSION}","to":"${TO_VERSION}","fence":${FENCING_TOKEN}}'}`,
		map[string]string{"HOOK_TOKEN": "s3cr3t-token"})
	env, log := runEnv(t, nil)
	if err := h.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	want := seenRequest{"POST", "/upgraded", "Bearer s3cr3t-token", "42", `{"from":"0.29.1","to":"0.30.0","fence":42}`}
	if got != want {
		t.Fatalf("server saw %+v, want %+v", got, want)
	}
	if !strings.Contains(log.String(), "status=204") {
		t.Errorf("the answer's status is not logged:\n%s", log)
	}
	if strings.Contains(log.String(), "s3cr3t-token") {
		t.Errorf("a header value from the environment reached the log:\n%s", log)
	}
}

func TestHTTPStatusOutsideExpectFailsAtOnceWithTheStartOfTheBody(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, "version already recorded "+strings.Repeat("x", 2000)+" END-OF-BODY")
	}))
	defer srv.Close()
	h := loadHTTP(t, `{url: "`+srv.URL+`", headers: {X-Token: {env: TOKEN}}}`, map[string]string{"TOKEN": "hidden-value"})
	env, _ := runEnv(t, nil)
	err := h.Run(context.Background(), env)
	if err == nil {
		t.Fatal("a 409 answer when 2xx is expected should fail")
	}
	msg := err.Error()
	for _, want := range []string{"status 409", "expected 2xx", "version already recorded", "truncated"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "END-OF-BODY") || strings.Contains(msg, "hidden-value") {
		t.Errorf("error holds the whole body or a header value: %q", msg)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("a 4xx answer was sent %d times, want once (not retried)", n)
	}
}

func TestHTTPStatusListedInExpectSucceedsEvenWhenNot2xx(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	h := loadHTTP(t, `{method: DELETE, url: "`+srv.URL+`/cache", expect: [200, 404]}`, nil)
	env, _ := runEnv(t, nil)
	if err := h.Run(context.Background(), env); err != nil {
		t.Fatalf("404 is in expect: %v", err)
	}
}

func TestHTTPRetries5xxUntilTheServerRecovers(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	h := loadHTTP(t, `{url: "`+srv.URL+`"}`, nil)
	env, log := runEnv(t, nil)
	if err := h.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3 (two 503s, then 200)", n)
	}
	if !strings.Contains(log.String(), "attempts=3") {
		t.Errorf("attempts not logged:\n%s", log)
	}
}

func TestHTTPRefusedConnectionIsRetriedUntilTheTaskTimeout(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) // nothing listens there: connections are refused
	h := loadHTTP(t, `{url: "http://`+addr+`/"}`, nil)
	env, log := runEnv(t, nil)
	err := timeOutWhenLogged(t, h, env, log, "attempt failed, retrying")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the task timeout, got %v", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not say the last attempt was refused", err)
	}
}

// timeOutWhenLogged runs task and ends it as the task timeout would (cause DeadlineExceeded) once msg
// has been logged, so that a loaded machine cannot end it before its first attempt.
func timeOutWhenLogged(t *testing.T, task Task, env Env, log *logRecorder, msg string) error {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx, env) }()
	log.await(t, msg)
	cancel(fmt.Errorf("task timed out: %w", context.DeadlineExceeded))
	return <-done
}

func TestHTTPServerThatNeverAnswersFailsAtTheTaskTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	h := loadHTTP(t, `{url: "`+srv.URL+`"}`, nil)
	env, _ := runEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.Run(ctx, env); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the task timeout, got %v", err)
	}
}

func TestHTTPCancelledContextStopsTheRequestWithItsCause(t *testing.T) {
	arrived := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-r.Context().Done()
	}))
	defer srv.Close()
	h := loadHTTP(t, `{method: POST, url: "`+srv.URL+`"}`, nil)
	env, _ := runEnv(t, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	sigterm := errors.New("interrupted by SIGTERM")
	go func() {
		<-arrived
		cancel(sigterm)
	}()
	if err := h.Run(ctx, env); !errors.Is(err, sigterm) {
		t.Fatalf("want the context's cause, got %v", err)
	}
}

// Test helpers shared by the kind tests.

// envOf makes a Getenv of a map.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runEnv returns the Env of an upgrade from 0.29.1 to 0.30.0 with fencing token 42, logging into rec.
func runEnv(t *testing.T, env map[string]string) (Env, *logRecorder) {
	rec := &logRecorder{changed: make(chan struct{})}
	return Env{
		FromVersion: "0.29.1", ToVersion: "0.30.0", FencingToken: 42,
		Getenv: envOf(env), Logger: slog.New(&recHandler{rec: rec, h: slog.NewTextHandler(rec, &slog.HandlerOptions{Level: slog.LevelDebug})}),
		GateTag: DefaultGateTag,
	}, rec
}

// logRecorder keeps what a task logs, as text (to check that no secret reaches the log) and as
// messages that a test can wait for.
type logRecorder struct {
	mu      sync.Mutex
	text    bytes.Buffer
	msgs    []string
	changed chan struct{} // closed and replaced at each record
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.Write(p)
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.String()
}

// await waits until msg has been logged. The bound only keeps a broken test from hanging.
func (r *logRecorder) await(t *testing.T, msg string) {
	t.Helper()
	bound := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		seen, changed := slices.Contains(r.msgs, msg), r.changed
		r.mu.Unlock()
		if seen {
			return
		}
		select {
		case <-changed:
		case <-bound:
			t.Fatalf("%q never logged; log:\n%s", msg, r)
		}
	}
}

type recHandler struct {
	rec *logRecorder
	h   slog.Handler
}

func (h *recHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *recHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.h.Handle(ctx, r)
	h.rec.mu.Lock()
	h.rec.msgs = append(h.rec.msgs, r.Message)
	close(h.rec.changed)
	h.rec.changed = make(chan struct{})
	h.rec.mu.Unlock()
	return err
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recHandler{rec: h.rec, h: h.h.WithAttrs(as)}
}

func (h *recHandler) WithGroup(name string) slog.Handler {
	return &recHandler{rec: h.rec, h: h.h.WithGroup(name)}
}
