package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
	"github.com/redis/go-redis/v9"
)

// hostile holds what a terminal obeys: an escape sequence (colour, then clear screen), a C1 CSI, DEL,
// a line break that would forge an output line, and a right-to-left override.
const hostile = "1.0.0\x1b[31m\x1b[2J\u009b1m\x7f\nforged line\u202eevil"

// obeyed returns the first character of s a terminal would act on rather than show.
func obeyed(s string) (rune, bool) {
	for _, r := range s {
		if r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
			return r, true
		}
	}
	return 0, false
}

func TestStatusHistoryAndLogsEscapeControlCharacters(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := srv.Client()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	rdb.Set(ctx, gateKeys.Version, hostile, 0)
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: gateKeys.History, Values: []any{"version", hostile, "previous", hostile, "outcome", "failed",
		"holder", hostile, "pod", hostile, "fencing_token", "1", "started", now, "finished", now, "task", "webhook", "error", "400: " + hostile}})
	rdb.Set(ctx, gateKeys.Lock, `tok{"holder":"`+strings.ReplaceAll(hostile, "\n", `\n`)+`","version":"x\u001b[2J","started":"`+now+`"}`, time.Minute)
	env := map[string]string{"REDIS_URL": srv.URL(), "PEERDB_DEPLOYMENT_VERSION": "2.0.0", "MAINTENANCE_TERMINATION_LOG": ""}
	for _, args := range [][]string{{"status"}, {"history"}, {"status", "--json"}, {"history", "--json"}} {
		code, out, stderr := runIn(t, env, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		if r, ok := obeyed(out); ok {
			t.Errorf("%q prints %U raw:\n%s", args, r, out)
		}
		if strings.Contains(out, "\nforged line") {
			t.Errorf("%q prints a line break from Redis as a line of its own:\n%s", args, out)
		}
		if args[len(args)-1] == "--json" && !strings.Contains(out, `\u001b[31m`) {
			t.Errorf("%q lost the value instead of escaping it:\n%s", args, out)
		}
		if args[0] == "history" && args[len(args)-1] == "--json" {
			var entries []struct{ Version string }
			if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 1 || entries[0].Version != hostile {
				t.Errorf("history --json does not decode to the value in Redis: %v %+v", err, entries)
			}
		}
	}
	code, out, _ := runIn(t, env, "unlock")
	if r, ok := obeyed(out); code != 0 || ok {
		t.Errorf("unlock: exit %d, prints %U raw:\n%s", code, r, out)
	}
	rdb.Set(ctx, gateKeys.Version, hostile, 0)
	for _, format := range []string{"json", "text"} {
		env["LOG_FORMAT"] = format
		env["MAINTENANCE_FORCE"] = "true"
		code, _, stderr := runIn(t, env, "--", "true")
		if code != 0 {
			t.Fatalf("run: exit %d: %s", code, stderr)
		}
		if !strings.Contains(stderr, "forged line") {
			t.Fatalf("%s logs do not name the recorded version:\n%s", format, stderr)
		}
		if r, ok := obeyed(stderr); ok {
			t.Errorf("%s logs print %U raw:\n%s", format, r, stderr)
		}
		rdb.Set(ctx, gateKeys.Version, hostile, 0)
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
