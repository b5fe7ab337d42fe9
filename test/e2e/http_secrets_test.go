package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// An http task whose server echoes the request's headers in a 400 answer: the secret header values
// (from env and from a file) must be *** on every path the task's error takes out of the gate.
func TestHTTPTaskSecretsAreHiddenOnEveryPathTheErrorTakes(t *testing.T) {
	const envSecret, fileSecret = "Env-s3cret-api-key", "File-s3cret-token"
	srv := redistest.Start(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, "bad request; you sent X-Api-Key=%s Authorization=%s", r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
	}))
	defer echo.Close()
	dir := t.TempDir()
	tokenFile, tasksFile, termLog := filepath.Join(dir, "token"), filepath.Join(dir, "tasks.yaml"), filepath.Join(dir, "termination-log")
	for path, content := range map[string]string{
		tokenFile: fileSecret + "\n",
		termLog:   "",
		tasksFile: `tasks:
  - name: webhook
    http:
      url: "` + echo.URL + `/upgraded"
      headers:
        X-Api-Key: {env: API_KEY}
        Authorization: {file: "` + tokenFile + `", prefix: "Bearer "}
`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := baseEnv(srv, "MAINTENANCE_TASKS_FILE", tasksFile, "MAINTENANCE_TERMINATION_LOG", termLog,
		"MAINTENANCE_FAILURE_COOLDOWN", "0", "API_KEY", envSecret)

	outputs := map[string]string{}
	for _, format := range []string{"json", "text"} {
		env["LOG_FORMAT"] = format
		res := runGate(t, env)
		if res.code != 1 {
			t.Fatalf("LOG_FORMAT=%s: exit %d, want 1 (the task failed)\n%s%s", format, res.code, res.stdout, res.stderr)
		}
		outputs[format+" logs"] = res.stdout + res.stderr
	}
	term, err := os.ReadFile(termLog)
	if err != nil {
		t.Fatal(err)
	}
	outputs["termination log"] = string(term)
	entries, err := srv.Client().XRange(context.Background(), gateKeys.History, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	outputs["history stream"] = fmt.Sprint(entries)
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"history"}, {"history", "--json"}} {
		res := runGate(t, env, args...)
		if res.code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, res.code, res.stderr)
		}
		outputs[strings.Join(args, " ")] = res.stdout + res.stderr
	}

	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(out, "X-Api-Key=*** Authorization=***") {
				t.Errorf("the echoed request is not shown with its secrets hidden:\n%s", out)
			}
			for _, secret := range []string{envSecret, fileSecret} {
				if strings.Contains(out, secret) {
					t.Errorf("%s is shown:\n%s", secret, out)
				}
			}
		})
	}
}
