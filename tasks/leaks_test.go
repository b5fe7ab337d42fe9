package tasks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// Secrets that come back in another form than the one the task sent: base64 in a Basic header,
// escaped inside JSON, decoded from JSON; and the places where the start of a secret could show.

func TestURLPasswordSentAsBasicAuthIsHiddenWhenTheServerEchoesIt(t *testing.T) {
	srv := echoServer(t)
	target := strings.Replace(srv.URL, "http://", "http://user:url-s3cret-pw@", 1)
	basic := base64.StdEncoding.EncodeToString([]byte("user:url-s3cret-pw"))
	for kind, task := range map[string]Task{
		"http":   loadHTTP(t, `{url: "`+target+`/hook"}`, nil),
		"peerdb": loadPeerDB(t, `{action: wait-ready, url: "`+target+`"}`, nil),
	} {
		t.Run(kind, func(t *testing.T) {
			env, log := runEnv(t, nil)
			err := task.Run(context.Background(), env)
			if err == nil || !strings.Contains(err.Error(), "Basic ***") {
				t.Fatalf("want the echoed Basic header hidden, got %v", err)
			}
			if strings.Contains(err.Error()+log.String(), basic) {
				t.Errorf("the URL password, base64-encoded, is shown: %v\n%s", err, log)
			}
		})
	}
}

// jsonEscapes are the ways servers write a secret inside a JSON string.
var jsonEscapes = map[string]func(string) string{
	`"/" as "\/" (PHP, some proxies)`: func(s string) string { return strings.ReplaceAll(s, "/", `\/`) },
	`"<" as "\u003c" (Go's encoder)`: func(s string) string {
		b, _ := json.Marshal(s)
		return string(b[1 : len(b)-1])
	},
}

func TestHTTPSecretEscapedInsideAJSONErrorBodyIsHidden(t *testing.T) {
	const key = "AbC/dEf<s3cret=="
	for name, escape := range jsonEscapes {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = fmt.Fprintf(w, `{"error":"bad key %s"}`, escape(r.Header.Get("X-Api-Key")))
			}))
			defer srv.Close()
			h := loadHTTP(t, `{url: "`+srv.URL+`", headers: {X-Api-Key: {env: KEY}}}`, map[string]string{"KEY": key})
			env, _ := runEnv(t, nil)
			err := h.Run(context.Background(), env)
			if err == nil || !strings.Contains(err.Error(), "bad key ***") {
				t.Errorf("want the escaped key hidden, got %v", err)
			}
		})
	}
}

func TestPeerDBSecretInTheMessageOfARetriedErrorStaysOutOfTheLog(t *testing.T) {
	const token = "AbC/dEf<s3cret=="
	for name, escape := range jsonEscapes {
		t.Run(name, func(t *testing.T) {
			var posts, polls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				// A proxy's 503 that quotes the request, to the POST (retried) and to the first poll.
				case r.Method == "POST" && posts.Add(1) == 1, r.Method == "GET" && polls.Add(1) == 1:
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = fmt.Fprintf(w, `{"code":14,"message":"upstream refused %s","details":[]}`, escape(r.Header.Get("Authorization")))
				case r.Method == "POST":
					_, _ = fmt.Fprint(w, `{"workflowId":"end-maintenance","runId":"x"}`)
				default:
					_, _ = fmt.Fprint(w, `{"maintenanceRunning":false,"phase":"MAINTENANCE_PHASE_UNKNOWN","pendingActivities":[]}`)
				}
			}))
			defer srv.Close()
			p := loadPeerDB(t, `{action: maintenance-end, url: "`+srv.URL+`", poll_interval: 1ms, headers: {Authorization: {env: TOK}}}`,
				map[string]string{"TOK": token})
			env, log := runEnv(t, nil)
			if err := p.Run(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			for _, line := range []string{"attempt failed, retrying", "waiting for flow-api"} {
				if !strings.Contains(log.String(), line) {
					t.Errorf("no %q line: the 503s were not logged", line)
				}
			}
			if strings.Contains(log.String(), "s3cret") {
				t.Errorf("the token is in the log:\n%s", log)
			}
		})
	}
}

func TestPeerDBErrorMessageHidesASecretTheServerEscaped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprintf(w, `{"code":7,"message":"%s may not","details":[]}`, jsonEscapes[`"/" as "\/" (PHP, some proxies)`](r.Header.Get("X-Api-Key")))
	}))
	defer srv.Close()
	p := loadPeerDB(t, `{action: wait-ready, url: "`+srv.URL+`", headers: {X-Api-Key: {env: KEY}}}`, map[string]string{"KEY": "AbC/dEf+s3cret=="})
	env, _ := runEnv(t, nil)
	err := p.Run(context.Background(), env)
	var fe *FlowAPIError
	if !errors.As(err, &fe) || fe.Message != "*** may not" {
		t.Errorf("want the decoded message with the key hidden, got %#v (%v)", fe, err)
	}
}

func TestURLWithAnUnencodedSlashInThePasswordIsRefusedWithoutShowingIt(t *testing.T) {
	for _, kind := range []string{"http: {url: ", "peerdb: {action: wait-ready, url: "} {
		_, err := Parse([]byte("tasks:\n  - name: t\n    "+kind+`"http://admin:s3cr/et@flow-api:8113"}`+"\n"), "tasks.yaml", LoadContext{})
		if err == nil || !strings.Contains(err.Error(), "percent-encode special characters in the password") {
			t.Errorf("%s want the URL refused with a hint, got %v", kind, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("%s the error shows part of the password: %v", kind, err)
		}
	}
}

func TestHeaderFileThatIsGoneFailsTheTaskAfterAFewRequests(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "tok") // too short to be redacted, so "token" in the path stays readable
	h := loadHTTP(t, `{url: "`+srv.URL+`", headers: {Authorization: {file: "`+path+`"}}}`, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	env, log := runEnv(t, nil)
	err := h.Run(boundedContext(t), env)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("want the missing file named, got %v", err)
	}
	if n := strings.Count(log.String(), "attempt failed, retrying"); n != httpcall.MaxFileFailures-1 {
		t.Errorf("%d retries, want %d: a file caught mid-rotation is read again, a missing one not forever", n, httpcall.MaxFileFailures-1)
	}
	if calls.Load() != 0 {
		t.Errorf("%d requests sent without the header", calls.Load())
	}
}

// boundedContext is the context of a task that must give up by itself: its timeout only keeps a
// broken test from hanging, and a test fails when the task reached it.
func boundedContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeoutCause(context.Background(), 30*time.Second, errors.New("the test's bound, not the task, ended it"))
	t.Cleanup(cancel)
	return ctx
}

// A token written in the task file itself (no env, no file) is as secret as one from the environment:
// a server that answers 401 echoing the request's headers must not put it in the task's error (what
// the gate logs and writes to the history) or its log. Other literal headers stay visible.
func TestHTTPLiteralAuthorizationHeaderIsHiddenWhenA401EchoesIt(t *testing.T) {
	const token = "LITERALSECRETTOKEN123"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, "unauthorized, you sent %q; token %s", r.Header, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	defer srv.Close()
	h := loadHTTP(t, `{url: "`+srv.URL+`/hook", headers: {Authorization: "Bearer `+token+`", Content-Type: application/json}}`, nil)
	env, log := runEnv(t, nil)
	err := h.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), `"Authorization":["***"]`) || !strings.Contains(err.Error(), "token ***") {
		t.Fatalf("want the 401 with the echoed Authorization hidden, got %v", err)
	}
	// The gate's ERROR line and the history entry's error field are this error's text (runner/hold.go).
	for name, out := range map[string]string{"error (log line, history)": err.Error(), "task log": log.String()} {
		if strings.Contains(out, token) || strings.Contains(out, "LITERALSECRET") {
			t.Errorf("the literal token is shown in the %s: %s", name, out)
		}
	}
	if !strings.Contains(err.Error(), "application/json") {
		t.Errorf("a literal non-credential header was hidden: %v", err)
	}
}
