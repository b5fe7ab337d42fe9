package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/logtest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// Multi-process tests: the built binary, real child processes, a real redis-server.

var binary string

// root is the module's root, from this package's directory (where go test runs it).
const root = "../.."

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "peerdb-maintenance-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "peerdb-maintenance")
	// Crash points exist only in test builds: the fault tests pause a holder at one.
	build := exec.Command("go", "build", "-tags", "crashpoints", "-o", binary, ".")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var gateKeys = keys.For("peerdb:maintenance", "default")

// replica is one started gate process.
type replica struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	code   int
	ended  time.Time
}

// startReplica starts the binary with the given environment (on top of PATH) and arguments.
func startReplica(t *testing.T, env map[string]string, args ...string) *replica {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return startProcess(t, cmd)
}

// startProcess starts cmd as a replica, killed when the test ends.
func startProcess(t *testing.T, cmd *exec.Cmd) *replica {
	t.Helper()
	r := &replica{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		r.ended = time.Now()
		r.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.code = 128 + int(ws.Signal())
			}
		}
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *replica) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(60 * time.Second):
		t.Fatalf("replica did not exit within 60s; stderr:\n%s", r.stderr)
		return -1
	}
}

// slack is what a timing bound allows beyond the bound the configuration promises (bound): a quarter
// of it, or, on a machine loaded enough that the binary now takes longer to start and exit, three
// such starts, measured here.
func slack(t *testing.T, bound time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	if out, err := exec.Command(binary, "version").CombinedOutput(); err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	return max(bound/4, 3*time.Since(began))
}

func baseEnv(srv *redistest.Server, extra ...string) map[string]string {
	env := map[string]string{
		"PEERDB_DEPLOYMENT_VERSION":   "2.0.0",
		"REDIS_URL":                   srv.URL(),
		"MAINTENANCE_LOCK_TTL":        "2s",
		"MAINTENANCE_WAIT_TIMEOUT":    "60s",
		"MAINTENANCE_TERMINATION_LOG": "",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

func historyLen(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	n, err := srv.Client().XLen(context.Background(), gateKeys.History).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func getKey(t *testing.T, srv *redistest.Server, key string) string {
	t.Helper()
	v, _ := srv.Client().Get(context.Background(), key).Result()
	return v
}

func TestTwentyReplicasRunTheTaskExactlyOnce(t *testing.T) {
	srv := redistest.Start(t)
	counter := filepath.Join(t.TempDir(), "runs")
	env := baseEnv(srv, "COUNTER", counter)
	var replicas []*replica
	for i := range 20 {
		env["MAINTENANCE_HOLDER"] = "replica-" + strconv.Itoa(i)
		replicas = append(replicas, startReplica(t, env, "--", "sh", "-c", `echo "$MAINTENANCE_FENCING_TOKEN" >> "$COUNTER"; sleep 0.5`))
	}
	for i, r := range replicas {
		if code := r.wait(t); code != 0 {
			t.Errorf("replica %d exited %d:\n%s", i, code, r.stderr)
		}
	}
	b, _ := os.ReadFile(counter)
	if lines := strings.Count(string(b), "\n"); lines != 1 {
		t.Errorf("task ran %d times, want 1", lines)
	}
	if v := getKey(t, srv, gateKeys.Version); v != "2.0.0" {
		t.Errorf("recorded version = %q", v)
	}
	if n := historyLen(t, srv); n != 1 {
		t.Errorf("history has %d entries, want 1", n)
	}
}

func TestKilledHolderIsTakenOverWithinTTLPlusOneSecond(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	// The first holder marks that it started, then hangs; the next holder finds the mark and finishes.
	script := `if [ -e "$DIR/started" ]; then echo again >> "$DIR/runs"; exit 0; fi
echo $$ > "$DIR/pid"; touch "$DIR/started"; echo first >> "$DIR/runs"; exec sleep 60`
	env := baseEnv(srv, "DIR", dir, "MAINTENANCE_HOLDER", "holder-a")
	a := startReplica(t, env, "--", "sh", "-c", script)
	t.Cleanup(func() { killPidFile(filepath.Join(dir, "pid")) })
	redistest.Eventually(t, 20*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, "started")); return err == nil },
		"the first holder never started its task:\n%s", a.stderr)
	env["MAINTENANCE_HOLDER"] = "holder-b"
	b := startReplica(t, env, "--", "sh", "-c", script)
	redistest.Eventually(t, 20*time.Second, func() bool {
		m, err := srv.Client().PubSubNumSub(context.Background(), gateKeys.Events).Result()
		return err == nil && m[gateKeys.Events] == 1
	}, "the second replica never started waiting:\n%s", b.stderr)

	killed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The killed holder's task goes with it, so the next holder never runs beside an orphan.
	pidBytes, _ := os.ReadFile(filepath.Join(dir, "pid"))
	taskPid, _ := strconv.Atoi(strings.TrimSpace(string(pidBytes)))
	redistest.Eventually(t, 10*time.Second, func() bool { return taskPid > 0 && syscall.Kill(taskPid, 0) != nil },
		"the killed holder's task (pid %d) is still running", taskPid)
	if code := b.wait(t); code != 0 {
		t.Fatalf("second replica exited %d:\n%s", code, b.stderr)
	}
	// The lock expires at most a TTL after the kill; the waiter tries it as it expires.
	const ttl = 2 * time.Second // MAINTENANCE_LOCK_TTL of baseEnv
	if took, limit := b.ended.Sub(killed), ttl+slack(t, ttl); took > limit {
		t.Errorf("takeover took %s, more than TTL + slack = %s", took, limit)
	}
	runs, _ := os.ReadFile(filepath.Join(dir, "runs"))
	if string(runs) != "first\nagain\n" {
		t.Errorf("task runs = %q, want the interrupted task repeated once", runs)
	}
	if n := historyLen(t, srv); n != 1 {
		t.Errorf("history has %d entries, want the version recorded once", n)
	}
}

func killPidFile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// startHolderOnSleep starts a replica whose task writes a marker and sleeps, and waits for the marker.
func startHolderOnSleep(t *testing.T, srv *redistest.Server, extra ...string) (*replica, string) {
	t.Helper()
	dir := t.TempDir()
	r := startReplica(t, baseEnv(srv, append([]string{"DIR", dir}, extra...)...),
		"--", "sh", "-c", `echo $$ > "$DIR/pid"; touch "$DIR/started"; exec sleep 60`)
	t.Cleanup(func() { killPidFile(filepath.Join(dir, "pid")) })
	redistest.Eventually(t, 20*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, "started")); return err == nil },
		"the holder never started its task:\n%s", r.stderr)
	return r, dir
}

func TestSIGTERMExits143FreesTheLockAndRecordsNothing(t *testing.T) {
	srv := redistest.Start(t)
	r, dir := startHolderOnSleep(t, srv)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 143 {
		t.Fatalf("exit %d, want 143:\n%s", code, r.stderr)
	}
	if getKey(t, srv, gateKeys.Lock) != "" || getKey(t, srv, gateKeys.Version) != "" || historyLen(t, srv) != 0 {
		t.Error("an interrupted holder left its lock, recorded, or wrote history")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		t.Error("the task's process outlived the interrupted gate")
	}
}

func TestSIGINTExits130(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := startHolderOnSleep(t, srv)
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	if code := r.wait(t); code != 130 {
		t.Fatalf("exit %d, want 130:\n%s", code, r.stderr)
	}
}

func TestLockOverwrittenBySomeoneElseExits4AndRecordsNothing(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := startHolderOnSleep(t, srv)
	if err := srv.Client().Set(context.Background(), gateKeys.Lock, "intruder", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 4 {
		t.Fatalf("exit %d, want 4:\n%s", code, r.stderr)
	}
	if getKey(t, srv, gateKeys.Version) != "" || historyLen(t, srv) != 0 {
		t.Error("a holder that lost its lock recorded")
	}
	if !strings.Contains(r.stderr.String(), "lock lost") {
		t.Errorf("log does not say the lock was lost:\n%s", r.stderr)
	}
}

func TestUnreachableRedisExits3WithinTheConnectTimeout(t *testing.T) {
	port := redistest.FreePort(t)
	began := time.Now()
	r := startReplica(t, map[string]string{
		"PEERDB_DEPLOYMENT_VERSION":   "2.0.0",
		"REDIS_URL":                   "redis://127.0.0.1:" + strconv.Itoa(port) + "/0",
		"MAINTENANCE_CONNECT_TIMEOUT": "2s",
	})
	if code := r.wait(t); code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", code, r.stderr)
	}
	const timeout = 2 * time.Second
	if took, limit := r.ended.Sub(began), timeout+slack(t, timeout); took > limit {
		t.Errorf("gave up after %s, more than the connect timeout %s + slack", took, limit)
	}
}

func TestExitCodesOfTheProcess(t *testing.T) {
	srv := redistest.Start(t)
	srv.Client().Set(context.Background(), gateKeys.Version, "3.0.0", 0)
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want int
		says string
	}{
		{"missing deployment version is a configuration error", map[string]string{"REDIS_URL": srv.URL()}, nil, 2, "PEERDB_DEPLOYMENT_VERSION"},
		{"a failing task exits 1", baseEnv(srv, "PEERDB_DEPLOYMENT_VERSION", "4.0.0"), []string{"--", "sh", "-c", "exit 3"}, 1, "exit status 3"},
		{"a refused downgrade exits 5", baseEnv(srv, "MAINTENANCE_DOWNGRADE", "fail"), nil, 5, "downgrade"},
		{"a skipped downgrade exits 0", baseEnv(srv), nil, 0, "skipping"},
		{"an unknown flag is a usage error", baseEnv(srv), []string{"--nope"}, 2, "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startReplica(t, tc.env, tc.args...)
			if code := r.wait(t); code != tc.want {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.want, r.stderr)
			}
			if !strings.Contains(r.stderr.String(), tc.says) {
				t.Errorf("stderr does not mention %q:\n%s", tc.says, r.stderr)
			}
		})
	}
}

func TestLogsAreJSONLinesAndNeverContainThePassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "hunter2-secret")
	env := baseEnv(srv, "REDIS_URL", "redis://:hunter2-secret@"+srv.Addr+"/0", "LOG_LEVEL", "debug")
	var mu sync.Mutex
	var all bytes.Buffer
	for _, args := range [][]string{{"--", "true"}, nil, {"status"}} {
		r := startReplica(t, env, args...)
		if code := r.wait(t); code != 0 {
			t.Fatalf("%v exit %d:\n%s", args, code, r.stderr)
		}
		mu.Lock()
		all.Write(r.stderr.Bytes())
		mu.Unlock()
	}
	if strings.Contains(all.String(), "hunter2-secret") {
		t.Fatalf("the password appears in the logs:\n%s", all.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(all.String()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("not a JSON log line: %q", line)
		}
	}
	logtest.CheckLines(t, all.String())
}
