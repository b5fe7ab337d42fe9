package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// Crash points and Redis faults, proven with the built binary, real processes and real redis-servers.
// The gate's tasks are exec tasks that append "<task> <version> <fencing token>" to a log file, so
// that a test can tell which task ran how often, for which version, and under which holder.

// taskScript appends the task's line to $DIR/log. With HANG=1, its first run marks $DIR/hang (after
// writing its pid to $DIR/pid) and then waits for $DIR/go, for a minute at most: a task that is
// interrupted the first time and passes when repeated. PAUSE is an extra sleep after the line.
const taskScript = `echo "$TASK $MAINTENANCE_TO_VERSION $MAINTENANCE_FENCING_TOKEN" >> "$DIR/log"
if [ "$HANG" = 1 ] && [ ! -e "$DIR/hang" ]; then
  echo $$ > "$DIR/pid"; touch "$DIR/hang"
  i=0; while [ ! -e "$DIR/go" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fi
sleep "${PAUSE:-0}"`

// writeTasks writes a task list of exec tasks named names into dir and returns its path. The task
// named hang (if any) hangs on its first run; every task sleeps pause after writing its line.
func writeTasks(t *testing.T, dir, hang, pause string, names ...string) string {
	t.Helper()
	type execTask struct {
		Command []string          `json:"command"`
		Env     map[string]string `json:"env"`
	}
	type task struct {
		Name string   `json:"name"`
		Exec execTask `json:"exec"`
	}
	var list struct {
		Tasks []task `json:"tasks"`
	}
	for _, n := range names {
		env := map[string]string{"TASK": n, "DIR": dir, "PAUSE": pause}
		if n == hang {
			env["HANG"] = "1"
		}
		list.Tasks = append(list.Tasks, task{Name: n, Exec: execTask{Command: []string{"sh", "-c", taskScript}, Env: env}})
	}
	b, _ := json.Marshal(list)
	path := filepath.Join(dir, "tasks.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// taskLine is one run of one task, as logged by taskScript.
type taskLine struct {
	Task, Version string
	Token         int64
}

func readTaskLog(t *testing.T, dir string) []taskLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []taskLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			tok, _ := strconv.ParseInt(f[2], 10, 64)
			lines = append(lines, taskLine{Task: f[0], Version: f[1], Token: tok})
		}
	}
	return lines
}

// countRuns returns how often each task ran.
func countRuns(lines []taskLine) map[string]int {
	n := map[string]int{}
	for _, l := range lines {
		n[l.Task]++
	}
	return n
}

// runCounts returns how often each task ran, as "t1=1 t2=2".
func runCounts(lines []taskLine, names ...string) string {
	n := countRuns(lines)
	var s []string
	for _, name := range names {
		s = append(s, name+"="+strconv.Itoa(n[name]))
	}
	return strings.Join(s, " ")
}

// history returns every history entry, oldest first.
func history(t *testing.T, c redis.UniversalClient) []map[string]any {
	t.Helper()
	msgs, err := c.XRange(context.Background(), gateKeys.History, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, m := range msgs {
		out = append(out, m.Values)
	}
	return out
}

// succeeded returns the succeeded history entries of version.
func succeeded(t *testing.T, c redis.UniversalClient, version string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range history(t, c) {
		if e["outcome"] == "succeeded" && e["version"] == version {
			out = append(out, e)
		}
	}
	return out
}

// assertRecordedOnce checks that version is recorded with exactly one succeeded history entry, that
// no task ran after that record (no task line of version carries a larger fencing token than the
// recording holder's) and returns the recording holder's token.
func assertRecordedOnce(t *testing.T, c redis.UniversalClient, version string, lines []taskLine) int64 {
	t.Helper()
	if v, _ := c.Get(context.Background(), gateKeys.Version).Result(); v != version {
		t.Errorf("recorded version = %q, want %q", v, version)
	}
	entries := succeeded(t, c, version)
	if len(entries) != 1 {
		t.Fatalf("history has %d succeeded entries for %s, want exactly 1: %v", len(entries), version, history(t, c))
	}
	token, _ := strconv.ParseInt(entries[0]["fencing_token"].(string), 10, 64)
	for _, l := range lines {
		if l.Version == version && l.Token > token {
			t.Errorf("task %s ran with fencing token %d, after the record by token %d", l.Task, l.Token, token)
		}
	}
	return token
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, r *replica) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() bool { _, err := os.Stat(path); return err == nil },
		"%s never appeared; the replica's log:\n%s", filepath.Base(path), r.stderr)
}

// waitSubscribers waits until n replicas listen for completion notices, that is, are waiting.
func waitSubscribers(t *testing.T, c redis.UniversalClient, n int64) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() bool {
		m, err := c.PubSubNumSub(context.Background(), gateKeys.Events).Result()
		return err == nil && m[gateKeys.Events] >= n
	}, "fewer than %d replicas started waiting", n)
}

func TestHolderKilledAtEveryCrashPointIsTakenOverAndTheVersionRecordedOnce(t *testing.T) {
	names := []string{"t1", "t2", "t3"}
	cases := []struct {
		name    string
		pauseAt string // MAINTENANCE_TEST_PAUSE_AT, or "" for the task t2 hanging on its first run
		want    string // task runs over both holders
	}{
		{"before its first task nothing is repeated", "before-tasks", "t1=1 t2=1 t3=1"},
		{"inside a task only that task is repeated", "", "t1=1 t2=2 t3=1"},
		{"after its last task but before the record no task is repeated", "before-record", "t1=1 t2=1 t3=1"},
		{"after the record but before release the version stays recorded", "after-record", "t1=1 t2=1 t3=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			c := srv.Client()
			dir := t.TempDir()
			hang, pauseFile := "", filepath.Join(dir, "paused")
			if tc.pauseAt == "" {
				hang, pauseFile = "t2", filepath.Join(dir, "hang")
			}
			env := baseEnv(srv, "MAINTENANCE_TASKS_FILE", writeTasks(t, dir, hang, "0", names...),
				"MAINTENANCE_HOLDER", "first", "MAINTENANCE_TEST_PAUSE_AT", tc.pauseAt, "MAINTENANCE_TEST_PAUSE_FILE", filepath.Join(dir, "paused"))
			first := startReplica(t, env)
			waitFile(t, pauseFile, first)

			env["MAINTENANCE_HOLDER"], env["MAINTENANCE_TEST_PAUSE_AT"] = "second", ""
			second := startReplica(t, env)
			if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// A container's processes die with it: so does the interrupted task's process group.
			killPidFile(filepath.Join(dir, "pid"))
			if code := first.wait(t); code != 128+int(syscall.SIGKILL) {
				t.Fatalf("the first holder exited %d before it was killed:\n%s", code, first.stderr)
			}
			if code := second.wait(t); code != 0 {
				t.Fatalf("the second replica exited %d:\n%s", code, second.stderr)
			}
			lines := readTaskLog(t, dir)
			if got := runCounts(lines, names...); got != tc.want {
				t.Errorf("task runs %s, want %s", got, tc.want)
			}
			assertRecordedOnce(t, c, "2.0.0", lines)
			if n := len(history(t, c)); n != 1 {
				t.Errorf("history has %d entries, want only the record: a killed holder writes none", n)
			}
			redistest.Eventually(t, 10*time.Second, func() bool { return getKey(t, srv, gateKeys.Lock) == "" },
				"the lock was not freed within the TTL of the killed holder")
			if n, _ := c.Exists(context.Background(), gateKeys.Progress).Result(); n != 0 {
				t.Error("progress is left after the record")
			}
			third := startReplica(t, env)
			if code := third.wait(t); code != 0 || len(readTaskLog(t, dir)) != len(lines) {
				t.Errorf("a replica started after the record exited %d or ran tasks:\n%s", code, third.stderr)
			}
		})
	}
}

func TestRedisRestartWithoutPersistenceStopsTheHolderAndAnotherReplicaRedoesEverything(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	dir := t.TempDir()
	names := []string{"t1", "t2", "t3"}
	env := baseEnv(srv, "MAINTENANCE_TASKS_FILE", writeTasks(t, dir, "t2", "0", names...), "MAINTENANCE_HOLDER", "first")
	first := startReplica(t, env)
	waitFile(t, filepath.Join(dir, "hang"), first)
	var waiters []*replica
	for i := range 3 {
		env["MAINTENANCE_HOLDER"] = "waiter-" + strconv.Itoa(i)
		waiters = append(waiters, startReplica(t, env))
	}
	waitSubscribers(t, c, 3)

	// The restarted Redis has lost the lock, the progress, the fencing counter and the history.
	srv.Restart()
	if code := first.wait(t); code != 4 {
		t.Errorf("the holder whose lock vanished exited %d, want 4 (lock lost):\n%s", code, first.stderr)
	}
	for i, w := range waiters {
		if code := w.wait(t); code != 0 {
			t.Errorf("waiter %d exited %d:\n%s", i, code, w.stderr)
		}
	}
	lines := readTaskLog(t, dir)
	// With the progress gone, finished tasks run again: why tasks must be idempotent.
	if got, want := runCounts(lines, names...), "t1=2 t2=2 t3=1"; got != want {
		t.Errorf("task runs %s, want %s", got, want)
	}
	token := assertRecordedOnce(t, c, "2.0.0", lines)
	if len(lines) > 0 && lines[0].Token >= token {
		t.Errorf("the new holder's fencing token %d is not larger than the lost holder's %d: a store fenced "+
			"on the token would refuse the new holder and accept the stale one", token, lines[0].Token)
	}
}

// stalledHolder starts a holder that reaches Redis through a proxy, lets it finish t1 and hang in t2,
// then stalls the proxy. It returns the moment the holder's lock can expire at the earliest, read
// from Redis directly right after the stall.
func stalledHolder(t *testing.T, srv *redistest.Server, proxy *redistest.Proxy, dir string, extra ...string) (*replica, time.Time) {
	t.Helper()
	env := baseEnv(srv, append([]string{"REDIS_URL", proxy.URL(), "MAINTENANCE_HOLDER", "cut-off",
		"MAINTENANCE_TASKS_FILE", writeTasks(t, dir, "t2", "0", "t1", "t2", "t3")}, extra...)...)
	holder := startReplica(t, env)
	waitFile(t, filepath.Join(dir, "hang"), holder)
	proxy.Stall()
	before := time.Now()
	pttl, err := srv.Client().PTTL(context.Background(), gateKeys.Lock).Result()
	if err != nil || pttl <= 0 {
		t.Fatalf("the holder's lock has no TTL (%s, %v)", pttl, err)
	}
	return holder, before.Add(pttl)
}

func TestHolderCutOffFromRedisExits4BeforeItsLockCanExpire(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr)
	dir := t.TempDir()
	// A TTL of 3s leaves the keeper's margin (TTL/6) at half a second on a busy machine.
	holder, expiry := stalledHolder(t, srv, proxy, dir, "MAINTENANCE_LOCK_TTL", "3s")
	if code := holder.wait(t); code != 4 {
		t.Fatalf("the holder cut off from Redis exited %d, want 4 (lock lost):\n%s", code, holder.stderr)
	}
	if holder.ended.After(expiry) {
		t.Errorf("the holder exited %s after its lock could expire: it may have run beside the next holder",
			holder.ended.Sub(expiry))
	} else {
		t.Logf("the holder exited %s before its lock could expire", expiry.Sub(holder.ended))
	}
	if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
		b, _ := os.ReadFile(filepath.Join(dir, "pid"))
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Error("the interrupted task still runs after the holder exited")
		}
	}
	// What the holder sent during the stall arrives late: it is fenced and changes nothing.
	proxy.Resume()
	if v := getKey(t, srv, gateKeys.Version); v != "" || historyLen(t, srv) != 0 {
		t.Errorf("a holder that lost its lock recorded %q or wrote history", v)
	}
}

func TestAttemptAfterAnOutageLongerThanTheTTLResumesFromProgress(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	proxy := redistest.StartProxy(t, srv.Addr)
	dir := t.TempDir()
	holder, _ := stalledHolder(t, srv, proxy, dir)
	if code := holder.wait(t); code != 4 {
		t.Fatalf("the holder cut off from Redis exited %d, want 4:\n%s", code, holder.stderr)
	}
	// The outage lasts on past the TTL; the next attempt reaches Redis on another path.
	redistest.Eventually(t, 10*time.Second, func() bool { return getKey(t, srv, gateKeys.Lock) == "" },
		"the cut-off holder's lock did not expire")
	next := startReplica(t, baseEnv(srv, "MAINTENANCE_HOLDER", "next", "MAINTENANCE_TASKS_FILE", filepath.Join(dir, "tasks.json")))
	if code := next.wait(t); code != 0 {
		t.Fatalf("the next attempt exited %d:\n%s", code, next.stderr)
	}
	lines := readTaskLog(t, dir)
	if got, want := runCounts(lines, "t1", "t2", "t3"), "t1=1 t2=2 t3=1"; got != want {
		t.Errorf("task runs %s, want %s: the finished task is not repeated, the interrupted one is", got, want)
	}
	assertRecordedOnce(t, c, "2.0.0", lines)
	if n := len(history(t, c)); n != 1 {
		t.Errorf("history has %d entries, want 1: the cut-off holder records nothing", n)
	}
}

// stalledWait is a holder hanging in t2 (connected directly) and a waiter behind a stalled proxy.
type stalledWait struct {
	holder, waiter *replica
	// subscribed is when the waiter's subscription was seen: its wait had begun by then, and the
	// process's start-up (exec, connect, first reads), which a loaded machine stretches, lies before.
	subscribed time.Time
	proxy      *redistest.Proxy
	dir        string
}

// stalledWaiter starts a stalledWait, stalling the proxy once the waiter waits.
func stalledWaiter(t *testing.T, srv *redistest.Server, waitTimeout string) stalledWait {
	t.Helper()
	s := stalledWait{proxy: redistest.StartProxy(t, srv.Addr), dir: t.TempDir()}
	env := baseEnv(srv, "MAINTENANCE_HOLDER", "holder", "MAINTENANCE_TASKS_FILE", writeTasks(t, s.dir, "t2", "0", "t1", "t2", "t3"))
	s.holder = startReplica(t, env)
	waitFile(t, filepath.Join(s.dir, "hang"), s.holder)
	env["MAINTENANCE_HOLDER"], env["REDIS_URL"], env["MAINTENANCE_WAIT_TIMEOUT"] = "waiter", s.proxy.URL(), waitTimeout
	s.waiter = startReplica(t, env)
	waitSubscribers(t, srv.Client(), 1)
	s.subscribed = time.Now()
	s.proxy.Stall()
	return s
}

func TestWaiterBehindAStalledNetworkExits3WhenItsWaitTimeoutRunsOut(t *testing.T) {
	srv := redistest.Start(t)
	s := stalledWaiter(t, srv, "3s")
	holder, waiter, dir := s.holder, s.waiter, s.dir
	if code := waiter.wait(t); code != 3 {
		t.Fatalf("the stalled waiter exited %d, want 3:\n%s", code, waiter.stderr)
	}
	// Every Redis call is bounded by the wait's deadline or by 2s past it, not by go-redis's
	// 5s read timeout times its retries.
	const waitTimeout, pastDeadline = 3 * time.Second, 2 * time.Second
	if took, limit := waiter.ended.Sub(s.subscribed), waitTimeout+pastDeadline+slack(t, waitTimeout); took > limit {
		t.Errorf("the stalled waiter took %s to give up, more than MAINTENANCE_WAIT_TIMEOUT + 2s + slack = %s", took, limit)
	}
	touch(t, filepath.Join(dir, "go"))
	if code := holder.wait(t); code != 0 {
		t.Fatalf("the holder exited %d:\n%s", code, holder.stderr)
	}
}

func TestWaiterBehindAStalledNetworkFinishesWhenTheNetworkComesBack(t *testing.T) {
	srv := redistest.Start(t)
	s := stalledWaiter(t, srv, "60s")
	holder, waiter, proxy, dir := s.holder, s.waiter, s.proxy, s.dir
	touch(t, filepath.Join(dir, "go"))
	if code := holder.wait(t); code != 0 {
		t.Fatalf("the holder exited %d:\n%s", code, holder.stderr)
	}
	select {
	case <-waiter.done:
		t.Fatalf("the waiter exited %d while it could not see Redis:\n%s", waiter.code, waiter.stderr)
	case <-time.After(2 * time.Second):
	}
	proxy.Resume()
	resumed := time.Now()
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("the waiter exited %d after the network came back:\n%s", code, waiter.stderr)
	}
	if took := waiter.ended.Sub(resumed); took > 15*time.Second {
		t.Errorf("the waiter took %s to notice the record after the network came back", took)
	}
	assertRecordedOnce(t, srv.Client(), "2.0.0", readTaskLog(t, dir))
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}
