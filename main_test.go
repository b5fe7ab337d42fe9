package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/logtest"
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
