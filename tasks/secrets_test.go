package tasks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/flowapitest"
)

// What the http and peerdb kinds share: header files (rotating tokens), redirects, the redaction of
// secrets, request_timeout and which answers are retried.

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	// As Kubernetes updates a mounted Secret: a new file renamed over the old one.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tokenFileTask(t *testing.T, api *flowapitest.Server, token string) (*PeerDB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, token)
	return loadPeerDB(t, `{action: wait-ready, url: "`+api.URL+`", poll_interval: 1ms,
      headers: {Authorization: {file: "`+path+`", prefix: "Bearer "}}}`, nil), path
}

func TestPeerDBHeaderFileIsReadAgainBeforeEveryRequest(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.OAuth, s.Tokens = true, map[string]bool{"jwt.one.a": true} })
	p, path := tokenFileTask(t, api, "jwt.one.a")
	env, log := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	writeToken(t, path, "jwt.two.b")
	api.Do(func(s *flowapitest.Server) { s.Tokens = map[string]bool{"jwt.two.b": true} }) // the old token expired
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatalf("after the token file rotated: %v", err)
	}
	reqs := api.Requests()
	if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer jwt.two.b" {
		t.Errorf("sent %q after the rotation, want the new token", got)
	}
	if strings.Contains(log.String(), "jwt.") {
		t.Errorf("a token reached the log:\n%s", log)
	}
}

func TestPeerDB401AfterTheTokenChangedIsRetriedOnceWithTheNewToken(t *testing.T) {
	api := flowapitest.Start(t)
	hang, arrived := make(chan struct{}), make(chan string, 4)
	api.Do(func(s *flowapitest.Server) {
		s.OAuth, s.Tokens, s.Hang, s.Arrived = true, map[string]bool{"jwt.two.b": true}, hang, arrived
	})
	p, path := tokenFileTask(t, api, "jwt.one.a")
	env, _ := runEnv(t, nil)
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), env) }()
	<-arrived // the request with the old token is on its way: the token rotates now
	writeToken(t, path, "jwt.two.b")
	close(hang)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var sent []string
	for _, r := range api.Requests() {
		sent = append(sent, r.Header.Get("Authorization"))
	}
	if want := []string{"Bearer jwt.one.a", "Bearer jwt.two.b"}; fmt.Sprint(sent) != fmt.Sprint(want) {
		t.Errorf("sent %q, want the old token, then once the new one", sent)
	}
}

func TestPeerDB401WithAnUnchangedTokenFailsAtOnceWithoutTheToken(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.OAuth, s.Expired = true, map[string]bool{"jwt.old.a": true} })
	p, _ := tokenFileTask(t, api, "jwt.old.a")
	env, _ := runEnv(t, nil)
	err := p.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "token is expired") || strings.Contains(err.Error(), "jwt.old") {
		t.Fatalf("want the middleware's 401 message without the token, got %v", err)
	}
	if n := api.Count("GET /v1/version"); n != 1 {
		t.Errorf("sent %d times, want once", n)
	}
}

func TestHeaderFileProblemsAreFoundAtLoad(t *testing.T) {
	dir := t.TempDir()
	empty, fifo := filepath.Join(dir, "empty"), filepath.Join(dir, "fifo")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		filepath.Join(dir, "missing"): "no such file",
		dir:                           "not a regular file",
		fifo:                          "not a regular file",
		empty:                         "is empty",
	} {
		_, err := Parse([]byte(`tasks:
  - name: hook
    http: {url: "http://hooks", headers: {Authorization: {file: "`+file+`"}}}
`), "tasks.yaml", LoadContext{})
		if err == nil || !strings.Contains(err.Error(), "task hook: http.headers.Authorization.file: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want the field and %q", filepath.Base(file), err, want)
		}
	}
}

// echoServer answers 400 with every header it received in the body, as some servers do.
func echoServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"code":3,"message":"bad request, you sent %q and %q from %s"}`, r.Header, r.URL.RawQuery, r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestEverySecretTheTaskKnowsIsHiddenInItsErrorAndLog(t *testing.T) {
	srv := echoServer(t)
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "file-s3cret-token")
	env := map[string]string{"API_KEY": "env-s3cret-key"}
	headers := `headers: {X-Api-Key: {env: API_KEY}, Authorization: {file: "` + path + `", prefix: "Bearer "}}`
	target := strings.Replace(srv.URL, "http://", "http://user:url-s3cret-pw@", 1)
	for kind, task := range map[string]Task{
		"http":   loadHTTP(t, `{url: "`+target+`/hook?sig=query-s3cret-sig", `+headers+`}`, env),
		"peerdb": loadPeerDB(t, `{action: wait-ready, url: "`+target+`", `+headers+`}`, env),
	} {
		t.Run(kind, func(t *testing.T) {
			renv, log := runEnv(t, nil)
			err := task.Run(context.Background(), renv)
			if err == nil || !strings.Contains(err.Error(), "***") {
				t.Fatalf("want the echoed request with its secrets hidden, got %v", err)
			}
			for _, out := range []string{err.Error(), log.String()} {
				if strings.Contains(out, "s3cret") {
					t.Errorf("a secret is shown: %s", out)
				}
			}
		})
	}
}

// redirectPair is a server that redirects to another host, which records what it received.
func redirectPair(t *testing.T) (from string, seen func() http.Header) {
	var mu sync.Mutex
	var got http.Header
	to := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(to.Close)
	// localhost and 127.0.0.1 with different ports: another host.
	target := strings.Replace(to.URL, "127.0.0.1", "localhost", 1) + "/landed"
	fromSrv := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
	t.Cleanup(fromSrv.Close)
	return fromSrv.URL, func() http.Header {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

func TestHTTPRedirectToAnotherHostIsRefusedUnlessFollowRedirects(t *testing.T) {
	from, seen := redirectPair(t)
	h := loadHTTP(t, `{url: "`+from+`/hook?token=query-value-secret", headers: {X-Api-Key: {env: API_KEY}}}`, map[string]string{"API_KEY": "env-s3cret"})
	env, _ := runEnv(t, nil)
	err := h.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "redirect to another host") || !strings.Contains(err.Error(), "follow_redirects: true") {
		t.Fatalf("want the redirect refused, got %v", err)
	}
	if seen() != nil {
		t.Errorf("the other host got a request: %v", seen())
	}
}

func TestHTTPFollowedRedirectCarriesNoSecretHeaderAndNoReferer(t *testing.T) {
	from, seen := redirectPair(t)
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "file-s3cret")
	h := loadHTTP(t, `{url: "`+from+`/hook?token=query-value-secret", follow_redirects: true,
      headers: {X-Api-Key: {env: API_KEY}, X-Token: {file: "`+path+`"}, X-Trace: "v-${TO_VERSION}", X-Api-Token: "literal-s3cret"}}`, map[string]string{"API_KEY": "env-s3cret"})
	env, _ := runEnv(t, nil)
	if err := h.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	got := seen()
	if got.Get("X-Api-Key") != "" || got.Get("X-Token") != "" || got.Get("X-Api-Token") != "" || got.Get("Referer") != "" {
		t.Errorf("the other host got X-Api-Key %q, X-Token %q, X-Api-Token %q, Referer %q; want none",
			got.Get("X-Api-Key"), got.Get("X-Token"), got.Get("X-Api-Token"), got.Get("Referer"))
	}
	if got.Get("X-Trace") != "v-0.30.0" {
		t.Errorf("a plain header was dropped: X-Trace %q", got.Get("X-Trace"))
	}
}

func TestHTTPRedirectOnTheSameHostKeepsTheHeadersButSendsNoReferer(t *testing.T) {
	var got http.Header
	mux := http.NewServeMux()
	mux.Handle("/hook", http.RedirectHandler("/landed", http.StatusFound))
	mux.HandleFunc("/landed", func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h := loadHTTP(t, `{url: "`+srv.URL+`/hook?token=query-value-secret", headers: {X-Api-Key: {env: API_KEY}}}`, map[string]string{"API_KEY": "env-s3cret"})
	env, _ := runEnv(t, nil)
	if err := h.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if got.Get("X-Api-Key") != "env-s3cret" || got.Get("Referer") != "" {
		t.Errorf("same-host redirect: X-Api-Key %q, Referer %q; want the key kept and no Referer", got.Get("X-Api-Key"), got.Get("Referer"))
	}
}

func TestHTTPRequestCutByRequestTimeoutIsRetriedAnd501FailsAtOnce(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		switch n {
		case 1: // hangs until the client gives up on it
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	defer srv.Close()
	// The second request is answered at once: a request_timeout of a second leaves it all the time a
	// loaded machine needs, so that only the first request is ever cut.
	h := loadHTTP(t, `{url: "`+srv.URL+`", request_timeout: 1s}`, nil)
	env, log := runEnv(t, nil)
	err := h.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "status 501") {
		t.Fatalf("want the 501 of the second attempt, got %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 || !strings.Contains(log.String(), "no answer within request_timeout 1s") {
		t.Errorf("%d requests, want 2: the one cut by request_timeout, then the 501 that is not retried\n%s", calls, log)
	}
}
