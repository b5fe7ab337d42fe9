package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/logtest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/mdtest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// gateKeys are the keys of the default gate, which the tests read and set in Redis.
var gateKeys = keys.For("peerdb:maintenance", "default")

// getKey returns the string at key, or "" when there is none.
func getKey(t *testing.T, srv *redistest.Server, key string) string {
	t.Helper()
	v, _ := srv.Client().Get(context.Background(), key).Result()
	return v
}

// runIn runs the program in-process with an environment map and returns its exit code and output.
func runIn(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	logtest.CheckLines(t, stderr.String())
	return exitCode(err), stdout.String(), stderr.String()
}

func TestExitCodeMapsEveryErrorClass(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"a task failed", &runner.TaskError{Task: "x", Err: errors.New("boom")}, 1},
		{"failure cooldown", fmt.Errorf("%w: recently", runner.ErrTaskFailed), 1},
		{"bad configuration", &config.Error{Problems: []config.Problem{{Var: "X", Problem: "bad"}}}, 2},
		{"bad task file", &tasks.FileError{Source: "f", Problems: []error{errors.New("bad")}}, 2},
		{"bad usage", &usageError{msg: "bad"}, 2},
		{"credentials refused", fmt.Errorf("%w: WRONGPASS", runner.ErrAuth), 2},
		{"constraint on a non-semver version", fmt.Errorf("%w: x", runner.ErrConfig), 2},
		{"Redis unreachable", fmt.Errorf("%w: x", runner.ErrUnreachable), 3},
		{"a command Redis refuses (WRONGTYPE, renamed EVALSHA)", fmt.Errorf("%w: x", runner.ErrRedisRefused), 2},
		{"a Redis that refuses writes (READONLY, OOM)", fmt.Errorf("%w: x", runner.ErrRedisUnwritable), 3},
		{"unlock refusing a live holder", fmt.Errorf("%w: x", runner.ErrHolderAlive), 2},
		{"wait ran out", fmt.Errorf("%w: x", runner.ErrWaitTimeout), 3},
		{"lock lost", fmt.Errorf("%w: x", lock.ErrLost), 4},
		{"downgrade refused", fmt.Errorf("%w: x", runner.ErrDowngrade), 5},
		{"a reply that is not the Redis protocol", fmt.Errorf("%w: x", runner.ErrMalformedReply), 2},
		{"an internal error", &InternalError{Panic: "boom"}, 2},
		{"SIGINT", &SignalError{Signal: syscall.SIGINT}, 130},
		{"SIGTERM", fmt.Errorf("task stopped: %w", &SignalError{Signal: syscall.SIGTERM}), 143},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"run", "--help"}, {"status", "--help"}, {"history", "--help"},
		{"unlock", "--help"}, {"validate", "--help"}, {"version", "--help"}} {
		code, out, _ := runIn(t, nil, args...)
		if code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
	}
}

func TestVersionPrintsVersionCommitAndGo(t *testing.T) {
	version, commit = "1.2.3", "abc1234"
	defer func() { version, commit = "", "" }()
	code, out, _ := runIn(t, nil, "version")
	if code != 0 || !strings.Contains(out, "1.2.3") || !strings.Contains(out, "abc1234") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestConfigurationErrorIsOneJSONLineNamingEveryVariable(t *testing.T) {
	code, _, stderr := runIn(t, map[string]string{"MAINTENANCE_LOCK_TTL": "soon", "MAINTENANCE_DOWNGRADE": "maybe"})
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(stderr)), &line); err != nil {
		t.Fatalf("stderr is not one JSON line: %q", stderr)
	}
	msg, _ := line["err"].(string)
	for _, v := range []string{"PEERDB_DEPLOYMENT_VERSION", "MAINTENANCE_LOCK_TTL", "MAINTENANCE_DOWNGRADE"} {
		if !strings.Contains(msg, v) {
			t.Errorf("error does not name %s: %s", v, msg)
		}
	}
}

func TestValidateReportsTheTasksOrEveryProblem(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("tasks:\n  - name: migrate\n    exec: {command: [/app/migrate, up]}\n"), 0o644)
	os.WriteFile(bad, []byte("tasks:\n  - name: Bad_Name\n    exec: {command: []}\n  - name: other\n    teleport: {}\n"), 0o644)
	code, out, _ := runIn(t, nil, "validate", good)
	if code != 0 || !strings.Contains(out, "1 tasks ok") || !strings.Contains(out, "migrate (exec") {
		t.Errorf("validate good: exit %d, %q", code, out)
	}
	code, _, stderr := runIn(t, map[string]string{"MAINTENANCE_TASKS_FILE": bad}, "validate")
	if code != 2 {
		t.Fatalf("validate bad: exit %d, want 2", code)
	}
	for _, want := range []string{"Bad_Name", "exec.command", "task other", "teleport"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate bad: output does not mention %q:\n%s", want, stderr)
		}
	}
	if code, _, _ := runIn(t, nil, "validate"); code != 2 {
		t.Errorf("validate without a file: exit %d, want 2", code)
	}
}

func TestTaskFileAndCommandTogetherIsAUsageError(t *testing.T) {
	code, _, stderr := runIn(t, map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1", "MAINTENANCE_TASKS_FILE": "/x.yaml"}, "--", "true")
	if code != 2 || !strings.Contains(stderr, "choose one") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

func TestStatusHistoryAndUnlock(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URL(), "PEERDB_DEPLOYMENT_VERSION": "1.0.0", "MAINTENANCE_HOLDER": "pod-a", "MAINTENANCE_TERMINATION_LOG": ""}
	if code, _, stderr := runIn(t, env, "--", "true"); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	env["PEERDB_DEPLOYMENT_VERSION"] = "1.1.0"
	if code, _, _ := runIn(t, env, "--", "false"); code != 1 {
		t.Fatalf("failing run: exit %d", code)
	}
	inspectEnv := map[string]string{"REDIS_URL": srv.URL()}

	code, out, _ := runIn(t, inspectEnv, "status")
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"{peerdb:maintenance:default}", "version: 1.0.0", "lock: free", "progress: version 1.1.0", "succeeded", "failed", "command"} {
		if code != 0 || !strings.Contains(flat, want) {
			t.Errorf("status: exit %d, missing %q in:\n%s", code, want, out)
		}
	}
	code, out, _ = runIn(t, inspectEnv, "status", "--json")
	var st runner.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: exit %d, %v:\n%s", code, err, out)
	}
	if st.Version != "1.0.0" || st.Lock != nil || len(st.History) != 2 || st.History[0].Outcome != "failed" || st.Progress == nil || st.Progress.Version != "1.1.0" {
		t.Errorf("status --json = %+v", st)
	}

	code, out, _ = runIn(t, inspectEnv, "history", "-n", "1")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "1.1.0") || !strings.Contains(out, "exit status 1") {
		t.Errorf("history -n 1: exit %d:\n%s", code, out)
	}
	code, out, _ = runIn(t, inspectEnv, "history", "--json")
	var entries []runner.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || code != 0 || len(entries) != 2 || entries[1].Holder != "pod-a" {
		t.Errorf("history --json: exit %d, %v, %+v", code, err, entries)
	}

	code, out, _ = runIn(t, inspectEnv, "unlock")
	if code != 0 || !strings.Contains(out, "was free") {
		t.Errorf("unlock of a free lock: exit %d, %q", code, out)
	}
	srv.Client().Set(context.Background(), gateKeys.Lock, `tok{"holder":"stuck-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z"}`, 0)
	code, out, _ = runIn(t, inspectEnv, "status")
	if code != 0 || !strings.Contains(out, "held by stuck-pod for version 1.1.0") {
		t.Errorf("status with a holder: exit %d:\n%s", code, out)
	}
	code, out, _ = runIn(t, inspectEnv, "unlock")
	if code != 0 || !strings.Contains(out, "holder stuck-pod") || getKey(t, srv, gateKeys.Lock) != "" {
		t.Errorf("unlock: exit %d, %q", code, out)
	}
}

func TestRunDryRunFlagPrintsThePlanAndRecordsNothing(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URL(), "PEERDB_DEPLOYMENT_VERSION": "1.0.0", "LOG_FORMAT": "text", "MAINTENANCE_TERMINATION_LOG": ""}
	code, out, stderr := runIn(t, env, "run", "--dry-run", "--", "touch", filepath.Join(t.TempDir(), "ran"))
	if code != 0 || !strings.Contains(out, "plan for (none: fresh install) -> 1.0.0") || !strings.Contains(out, "RUN") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if getKey(t, srv, gateKeys.Version) != "" || getKey(t, srv, gateKeys.Lock) != "" {
		t.Error("dry run recorded or took the lock")
	}
}

func TestAMistypedCommandIsAUsageErrorNotATask(t *testing.T) {
	env := map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1", "REDIS_URL": "redis://127.0.0.1:1/0", "MAINTENANCE_CONNECT_TIMEOUT": "1s"}
	for _, args := range [][]string{{"stauts"}, {"run", "true"}, {"--"}, {"--", ""}, {"--dry-run", "x"},
		{"status", "extra"}, {"status", "--json", "extra"}, {"history", "extra"}, {"unlock", "extra"}, {"version", "extra"},
		{"validate", "a.yaml", "b.yaml"}} {
		code, _, stderr := runIn(t, env, args...)
		if code != 2 || !strings.Contains(stderr, "peerdb-maintenance:") {
			t.Errorf("%q: exit %d, stderr %q; want a usage error (2)", args, code, stderr)
		}
	}
}

// The task files the README and docs/tasks.md show validate: the README's minimal one, and the first of
// docs/tasks.md, which has a task of every kind.
func TestTheDocumentedTaskExamplesAreValid(t *testing.T) {
	for _, c := range []struct{ doc, first string }{
		{"README.md", "tasks:\n  - name: catalog-schema"},
		{"docs/tasks.md", "tasks:\n  - name: wait-flow-api"},
	} {
		doc, err := os.ReadFile(c.doc)
		if err != nil {
			t.Fatal(err)
		}
		var example string
		for _, b := range mdtest.Blocks(doc) {
			if b.Info == "yaml" && strings.HasPrefix(b.Text, c.first) {
				example = b.Text
				break
			}
		}
		if example == "" {
			t.Fatalf("%s has no yaml block starting with %q", c.doc, c.first)
		}
		path := filepath.Join(t.TempDir(), "tasks.yaml")
		if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := runIn(t, map[string]string{"HOOK_TOKEN": "x", "PEERDB_CATALOG_DSN": "postgres://u@h/db"}, "validate", path)
		if code != 0 {
			t.Fatalf("the task example of %s does not validate:\n%s", c.doc, stderr)
		}
		if c.doc == "README.md" {
			continue
		}
		for _, kind := range []string{"(peerdb", "(sql", "(exec", "(http", "(redis"} {
			if !strings.Contains(out, kind) {
				t.Errorf("the every-kind example of %s has no %s task:\n%s", c.doc, kind[1:], out)
			}
		}
	}
}

func TestHelpListsEveryEnvironmentVariableWithItsDefault(t *testing.T) {
	typ := reflect.TypeFor[config.Config]()
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"help", "env"}} {
		code, out, _ := runIn(t, nil, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d", args, code)
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			if name == "" || name == "-" {
				continue
			}
			def := regexp.QuoteMeta(f.Tag.Get("envDefault"))
			if def == "" {
				def = "empty|required|hostname"
			}
			line := regexp.MustCompile(`(?m)^  ` + name + ` +(` + def + `) +\S`)
			if !line.MatchString(out) {
				t.Errorf("%q does not list %s with its default %s and a line of meaning:\n%s", args, name, def, out)
			}
		}
	}
	if code, _, stderr := runIn(t, nil, "help", "nothing"); code != 2 || !strings.Contains(stderr, "help env") {
		t.Errorf("help on an unknown topic: exit %d, %q; want a usage error pointing to help env", code, stderr)
	}
}
