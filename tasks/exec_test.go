package tasks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// logBuffer is a JSON log sink that tests may read while a task still writes to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type record struct {
	Msg    string `json:"msg"`
	Stream string `json:"stream"`
	Line   string `json:"line"`
}

func (b *logBuffer) records(t *testing.T) []record {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var rs []record
	for _, l := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		rs = append(rs, r)
	}
	return rs
}

// output returns the logged output lines of one stream.
func (b *logBuffer) output(t *testing.T, stream string) []string {
	t.Helper()
	var lines []string
	for _, r := range b.records(t) {
		if r.Msg == "task output" && r.Stream == stream {
			lines = append(lines, r.Line)
		}
	}
	return lines
}

// parseOne decodes a task file holding one task.
func parseOne(t *testing.T, yaml string) tasks.Spec {
	t.Helper()
	specs, err := tasks.Parse([]byte(yaml), "test.yaml", tasks.LoadContext{Getenv: os.Getenv, GateTag: "{p:g}"})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(specs) != 1 {
		t.Fatalf("%d tasks, want 1", len(specs))
	}
	return specs[0]
}

// run runs task with a JSON logger into the returned buffer.
func run(ctx context.Context, task tasks.Task, env tasks.Env) (*logBuffer, error) {
	logs := &logBuffer{}
	env.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	env.Getenv = os.Getenv
	return logs, task.Run(ctx, env)
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "task.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFile waits until path exists and returns its trimmed content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-deadline:
			t.Fatalf("%s was not written within 5s", path)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// gone reports whether the process whose pid is in pidFile has exited (a zombie waiting for its
// reaper counts as exited).
func gone(t *testing.T, pidFile string) bool {
	t.Helper()
	pid, err := strconv.Atoi(waitFile(t, pidFile))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

func eventuallyGone(t *testing.T, pidFile, what string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !gone(t, pidFile) {
		select {
		case <-deadline:
			t.Fatalf("%s is still running", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestExecLogsEachOutputLineWithItsStream(t *testing.T) {
	spec := parseOne(t, `
tasks:
  - name: talk
    exec: {command: [/bin/sh, -c, "echo first; echo oops >&2; echo second; printf 'last without newline'"]}`)
	logs, err := run(context.Background(), spec.Task, tasks.Env{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := logs.output(t, "stdout"), []string{"first", "second", "last without newline"}; !slices.Equal(got, want) {
		t.Errorf("stdout records %q, want %q", got, want)
	}
	if got, want := logs.output(t, "stderr"), []string{"oops"}; !slices.Equal(got, want) {
		t.Errorf("stderr records %q, want %q", got, want)
	}
}

func TestExecSeesTheUpgradeAndItsOwnEnvironment(t *testing.T) {
	dir := t.TempDir()
	spec := parseOne(t, fmt.Sprintf(`
tasks:
  - name: env
    exec:
      command: [/bin/sh, -c, 'echo "$MAINTENANCE_FROM_VERSION|$MAINTENANCE_TO_VERSION|$MAINTENANCE_FENCING_TOKEN|$MODE|$(pwd)"']
      env: {MODE: full, MAINTENANCE_TO_VERSION: forged}
      dir: %s`, dir))
	logs, err := run(context.Background(), spec.Task, tasks.Env{FromVersion: "v0.29.0", ToVersion: "v0.30.1", FencingToken: 42})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := "v0.29.0|v0.30.1|42|full|" + dir
	if got := logs.output(t, "stdout"); !slices.Equal(got, []string{want}) {
		t.Errorf("the command saw %q, want %q (the gate's variables win over the task's env)", got, want)
	}
}

func TestExecFailures(t *testing.T) {
	tests := []struct {
		name    string
		command string
		want    []string
	}{
		{"a non-zero exit names the program and the exit status", `[/bin/sh, -c, "exit 3"]`, []string{"/bin/sh", "exit status 3"}},
		{"a missing program is an error naming it", `[/nonexistent/migrate, up]`, []string{"/nonexistent/migrate"}},
		{"a program killed by a signal says so", `[/bin/sh, -c, "kill -9 $$"]`, []string{"/bin/sh", "killed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := parseOne(t, "tasks:\n  - name: fail\n    exec: {command: "+tt.command+"}")
			_, err := run(context.Background(), spec.Task, tasks.Env{})
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// cancelWhenReady runs spec until the script has written pidFile, then cancels with cause and
// returns Run's error, failing when Run does not return within 5s of the cancellation.
func cancelWhenReady(t *testing.T, task tasks.Task, pidFile string, cause error) (*logBuffer, error) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	type result struct {
		err  error
		logs *logBuffer
	}
	res := make(chan result, 1)
	go func() {
		logs, err := run(ctx, task, tasks.Env{})
		res <- result{err, logs}
	}()
	waitFile(t, pidFile)
	cancel(cause)
	select {
	case r := <-res:
		return r.logs, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancellation")
		return nil, nil
	}
}

func TestCancellingStopsTheWholeProcessGroupWithSIGTERM(t *testing.T) {
	dir := t.TempDir()
	// The script waits for its children in its handler, so that the gate's final SIGKILL of the
	// group cannot be what stopped them.
	sh := script(t, dir, `
trap 'echo terminated > "$DIR/marker"; wait; exit 0' TERM
sleep 60 &
echo $! > "$DIR/sleep.pid"
sh -c 'trap "echo terminated > \"$DIR/child-marker\"; exit 0" TERM; echo > "$DIR/ready"; while :; do sleep 0.05; done' &
wait
`)
	spec := parseOne(t, fmt.Sprintf("tasks:\n  - name: long\n    exec: {command: [%s], env: {DIR: %s}}", sh, dir))
	lost := errors.New("lock lost")
	_, err := cancelWhenReady(t, spec.Task, filepath.Join(dir, "ready"), lost)
	if !errors.Is(err, lost) {
		t.Errorf("error %v does not wrap the context's cause", err)
	}
	for _, marker := range []string{"marker", "child-marker"} {
		if b, err := os.ReadFile(filepath.Join(dir, marker)); err != nil || strings.TrimSpace(string(b)) != "terminated" {
			t.Errorf("%s: %q, %v: SIGTERM did not reach the whole process group", marker, b, err)
		}
	}
	eventuallyGone(t, filepath.Join(dir, "sleep.pid"), "the grandchild sleep")
}

func TestACommandIgnoringSIGTERMIsKilledAfterTheGracePeriod(t *testing.T) {
	dir := t.TempDir()
	sh := script(t, dir, `
trap '' TERM
sleep 60 &
echo $! > "$DIR/sleep.pid"
wait
`)
	spec := parseOne(t, fmt.Sprintf("tasks:\n  - name: stubborn\n    exec: {command: [%s], env: {DIR: %s}, grace_period: 200ms}", sh, dir))
	lost := errors.New("lock lost")
	logs, err := cancelWhenReady(t, spec.Task, filepath.Join(dir, "sleep.pid"), lost)
	if !errors.Is(err, lost) {
		t.Errorf("error %v does not wrap the context's cause", err)
	}
	eventuallyGone(t, filepath.Join(dir, "sleep.pid"), "the grandchild sleep")
	if !strings.Contains(logs.String(), "sending SIGKILL") {
		t.Errorf("the SIGKILL was not logged:\n%s", logs.String())
	}
}

func TestACommandFromTheArgumentsGetsAGracePeriodToo(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DIR", dir)
	sh := script(t, dir, `
trap 'sleep 0.2; echo terminated > "$DIR/marker"; exit 0' TERM
echo $$ > "$DIR/sh.pid"
while :; do sleep 0.05; done
`)
	cmd := tasks.FromArgs([]string{sh})[0]
	_, err := cancelWhenReady(t, cmd.Task, filepath.Join(dir, "sh.pid"), context.Canceled)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap the context's cause", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "marker")); err != nil {
		t.Errorf("the command was killed before its SIGTERM handler finished: %v", err)
	}
}

func TestABackgroundProcessLeftRunningNeitherFailsNorOutlivesTheTask(t *testing.T) {
	dir := t.TempDir()
	spec := parseOne(t, fmt.Sprintf(`
tasks:
  - name: daemon
    exec: {command: [/bin/sh, -c, 'sleep 60 & echo $! > %s/sleep.pid; echo started']}`, dir))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs, err := run(ctx, spec.Task, tasks.Env{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := logs.output(t, "stdout"); !slices.Equal(got, []string{"started"}) {
		t.Errorf("stdout records %q, want [started]", got)
	}
	eventuallyGone(t, filepath.Join(dir, "sleep.pid"), "the background sleep")
}

func TestAVeryLongLineIsSplitNotLost(t *testing.T) {
	const maxLine = 16 << 10
	// 'é' is two bytes: one of them sits on the first split point.
	long := strings.Repeat("x", maxLine-1) + "é" + strings.Repeat("y", 40000)
	for _, tt := range []struct{ name, text string }{
		{"without a newline", long},
		{"ending in a newline", long + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "out"), []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			spec := parseOne(t, fmt.Sprintf("tasks:\n  - name: long-line\n    exec: {command: [cat, %s/out]}", dir))
			logs, err := run(context.Background(), spec.Task, tasks.Env{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			lines := logs.output(t, "stdout")
			for i, l := range lines {
				if len(l) > maxLine {
					t.Errorf("record %d holds %d bytes, more than %d", i, len(l), maxLine)
				}
			}
			if len(lines) < 2 {
				t.Fatalf("%d records: the line was not split", len(lines))
			}
			if got := strings.Join(lines, ""); got != long {
				t.Errorf("the records hold %d bytes, want the %d written (lost or mangled at a split)", len(got), len(long))
			}
		})
	}
}

func TestExecDecodeErrorsNameTaskAndField(t *testing.T) {
	tests := []struct {
		name, exec, field, says string
	}{
		{"command missing", `{env: {A: b}}`, "exec.command", "required"},
		{"command empty", `{command: []}`, "exec.command", "required"},
		{"program empty", `{command: [""]}`, "exec.command", "required"},
		{"command misspelt", `{comand: [/bin/true]}`, "exec.comand", "unknown field"},
		{"grace period that is not a duration", `{command: [/bin/true], grace_period: soon}`, "exec.grace_period", "soon"},
		{"negative grace period", `{command: [/bin/true], grace_period: -1s}`, "exec.grace_period", "-1s"},
		{"zero grace period", `{command: [/bin/true], grace_period: 0s}`, "exec.grace_period", "0s"},
		{"a NUL in an argument", `{command: [echo, "a\0b"]}`, "exec.command", "item 2 holds a NUL"},
		{"an environment name with =", `{command: [/bin/true], env: {"A=B": x}}`, "exec.env", `name "A=B"`},
		{"an empty environment name", `{command: [/bin/true], env: {"": x}}`, "exec.env", `name ""`},
		{"a NUL in an environment value", `{command: [/bin/true], env: {A: "x\0y"}}`, "exec.env.A", "NUL"},
		{"a NUL in the directory", `{command: [/bin/true], dir: "/tmp\0x"}`, "exec.dir", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tasks.Parse([]byte("tasks:\n  - name: migrate\n    exec: "+tt.exec), "test.yaml", tasks.LoadContext{Getenv: os.Getenv, GateTag: "{p:g}"})
			var fe *tasks.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v has no *tasks.FieldError", err)
			}
			if fe.Task != "migrate" || fe.Field != tt.field {
				t.Errorf("problem names task %q field %q, want migrate %s: %v", fe.Task, fe.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "migrate") {
				t.Errorf("message %q does not name the task and say %q", err, tt.says)
			}
		})
	}
}
