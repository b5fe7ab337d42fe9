package runner

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// blocking returns a task that signals when it starts and runs until ctx is done.
func blocking(started chan<- struct{}) funcTask {
	return func(ctx context.Context, _ tasks.Env) error {
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	}
}

func TestLockOverwrittenWhileRunningStopsTheHolderAndRecordsNothing(t *testing.T) {
	h := newHarness(t)
	started := make(chan struct{})
	r, _ := h.runner([]tasks.Spec{spec("long", blocking(started))})
	done := start(context.Background(), r)
	<-started
	if err := h.rdb.Set(context.Background(), h.keys.Lock, "someone-else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	out := wait(t, done)
	if !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("err = %v, want lock lost", out.err)
	}
	if h.exists(h.keys.Version) {
		t.Error("a holder that lost its lock recorded the version")
	}
	if len(h.history()) != 0 {
		t.Error("a holder that lost its lock wrote history")
	}
	if h.get(h.keys.Lock) != "someone-else" {
		t.Error("the new holder's lock was touched")
	}
}

func TestCancelledRunReleasesTheLockAndRecordsNothing(t *testing.T) {
	h := newHarness(t)
	started := make(chan struct{})
	r, _ := h.runner([]tasks.Spec{spec("long", blocking(started))})
	ctx, cancel := context.WithCancelCause(context.Background())
	interrupted := errors.New("interrupted by terminated")
	done := start(ctx, r)
	<-started
	cancel(interrupted)
	out := wait(t, done)
	if !errors.Is(out.err, interrupted) {
		t.Fatalf("err = %v, want the cancellation cause", out.err)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Version) || len(h.history()) != 0 {
		t.Error("an interrupted run left its lock, recorded, or wrote history")
	}
}

func TestRedisDownWhileHoldingStopsTheHolderWithLockLost(t *testing.T) {
	h := newHarness(t)
	started := make(chan struct{})
	r, _ := h.runner([]tasks.Spec{spec("long", blocking(started))})
	done := start(context.Background(), r)
	<-started
	h.srv.Kill()
	out := wait(t, done)
	if !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("err = %v, want lock lost", out.err)
	}
}

func TestFailedVersionIsNotRetriedWithinTheCooldown(t *testing.T) {
	h := newHarness(t)
	var c counter
	bad := []tasks.Spec{c.task("migrate", errors.New("boom"))}
	r1, _ := h.runner(bad, "MAINTENANCE_FAILURE_COOLDOWN", "1h")
	if _, err := r1.Run(context.Background()); !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("first attempt: %v", err)
	}
	r2, _ := h.runner(bad, "MAINTENANCE_FAILURE_COOLDOWN", "1h")
	_, err := r2.Run(context.Background())
	if !errors.Is(err, ErrTaskFailed) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("second attempt: %v, want the earlier failure", err)
	}
	if c.get("migrate") != 1 {
		t.Errorf("task ran %d times within the cooldown, want 1", c.get("migrate"))
	}
	if h.exists(h.keys.Lock) {
		t.Error("lock left behind by the cooldown refusal")
	}

	// The cooldown is per version: another version runs.
	r3, _ := h.runner(bad, "MAINTENANCE_FAILURE_COOLDOWN", "1h", "PEERDB_DEPLOYMENT_VERSION", "1.2.0")
	_, _ = r3.Run(context.Background())
	if c.get("migrate") != 2 {
		t.Errorf("a failure of 1.1.0 blocked 1.2.0")
	}

	// Once the cooldown has passed, the next attempt retries.
	r4, _ := h.runner(bad, "MAINTENANCE_FAILURE_COOLDOWN", "1ns")
	_, _ = r4.Run(context.Background())
	if c.get("migrate") != 3 {
		t.Errorf("the attempt after the cooldown did not retry")
	}
}

// skewedFailure writes a failure of version 1.1.0 into history the way a replica whose clock runs an
// hour ahead does: "finished" an hour in the future, the ID given (by Redis, from its clock, with "*").
func skewedFailure(t *testing.T, h *harness, id string) string {
	t.Helper()
	skewed := time.Now().Add(time.Hour).UTC()
	e := Entry{Version: "1.1.0", Outcome: OutcomeFailed, Holder: "skewed-pod", FencingToken: 1,
		Started: skewed.Add(-time.Second), Finished: skewed, Task: "migrate", Error: "boom"}
	got, err := h.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: h.keys.History, ID: id, Values: e.fields()}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFailureCooldownIsJudgedByRedisClockNotTheFailingReplicas(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const cooldown = 2 * time.Second
	added, ok := entryTime(skewedFailure(t, h, "*"))
	if !ok {
		t.Fatal("Redis assigned an ID that is not <ms>-<seq>")
	}
	var c counter
	ok2 := []tasks.Spec{c.task("migrate", nil)}

	// Right after the failure: refused, with at most the cooldown left (not the hour of the skew).
	r1, _ := h.runner(ok2, "MAINTENANCE_FAILURE_COOLDOWN", cooldown.String())
	_, err := r1.Run(ctx)
	if !errors.Is(err, ErrTaskFailed) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("attempt within the cooldown: %v, want the earlier failure", err)
	}
	m := regexp.MustCompile(`retry in ([^,]+),`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("no retry in: %v", err)
	}
	if left, perr := time.ParseDuration(m[1]); perr != nil || left > cooldown {
		t.Errorf("retry in %s, want at most the cooldown %s: %v", m[1], cooldown, err)
	}
	if c.get("migrate") != 0 {
		t.Fatal("the task ran within the cooldown")
	}

	// Once the cooldown has passed by Redis's clock, the next attempt runs.
	redistest.Eventually(t, 5*cooldown, func() bool {
		now, terr := h.rdb.Time(ctx).Result()
		return terr == nil && now.Sub(added) >= cooldown
	}, "Redis's clock did not pass the cooldown")
	r2, _ := h.runner(ok2, "MAINTENANCE_FAILURE_COOLDOWN", cooldown.String())
	if _, err := r2.Run(ctx); err != nil {
		t.Fatalf("attempt after the cooldown by Redis's clock: %v (blocked by the failing replica's clock?)", err)
	}
	if c.get("migrate") != 1 {
		t.Errorf("task ran %d times after the cooldown, want 1", c.get("migrate"))
	}
}

// An entry whose ID lies in Redis's future (its clock went back, or a failover to a node behind) has no
// age to judge: it is run rather than blocked for as long as the clocks disagree.
func TestFailureFromRedisFutureAppliesNoCooldown(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	now, err := h.rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	skewedFailure(t, h, strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)+"-0")
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_FAILURE_COOLDOWN", "1h")
	if _, err := r.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if c.get("migrate") != 1 || !strings.Contains(logs.String(), "no failure cooldown applied") {
		t.Errorf("runs %d, want 1 and a warning; logs:\n%s", c.get("migrate"), logs)
	}
}

// On Redis Cluster the clock the cooldown is judged by is the one of the node that assigned the
// history's IDs: TIME is read by a script keyed by the stream, so no other node's clock is compared
// with them.
func TestFailureCooldownOnRedisClusterReadsTheClockOfTheHistoryNode(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	h := newHarness(t)
	h.env["REDIS_URL"], h.env["REDIS_MODE"] = cl.URL(), "cluster"
	ctx := context.Background()
	skewed := time.Now().Add(time.Hour).UTC()
	e := Entry{Version: "1.1.0", Outcome: OutcomeFailed, Holder: "skewed-pod", FencingToken: 1, Started: skewed, Finished: skewed, Task: "migrate", Error: "boom"}
	if err := cl.Client().XAdd(ctx, &redis.XAddArgs{Stream: h.keys.History, Values: e.fields()}).Err(); err != nil {
		t.Fatal(err)
	}
	home, err := cl.NodeFor(ctx, h.keys.History)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cl.Nodes {
		if err := s.Client().ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const cooldown = time.Minute
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_FAILURE_COOLDOWN", cooldown.String())
	_, err = r.Run(ctx)
	if !errors.Is(err, ErrTaskFailed) || !strings.Contains(err.Error(), "retry in") || strings.Contains(err.Error(), "retry in 1h") || c.get("migrate") != 0 {
		t.Fatalf("run: %v, runs %d; want refused for at most %s", err, c.get("migrate"), cooldown)
	}
	for _, s := range cl.Nodes {
		stats, err := s.Client().Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(stats, "cmdstat_time:"); got != (s == home) {
			t.Errorf("node %s (history's: %v) ran TIME: %v", s.Addr, s == home, got)
		}
	}
}

func TestEntryTime(t *testing.T) {
	for id, want := range map[string]int64{"1700000000123-0": 1700000000123, "0-1": 0, "5-18446744073709551615": 5} {
		if got, ok := entryTime(id); !ok || got.UnixMilli() != want {
			t.Errorf("entryTime(%q) = %v, %v, want %d ms", id, got, ok, want)
		}
	}
	for _, id := range []string{"", "123", "abc-0", "123-", "-0", "+1-0", "1-x", "99999999999999999999-0", "1-2-3"} {
		if _, ok := entryTime(id); ok {
			t.Errorf("entryTime(%q) ok, want not", id)
		}
	}
}

func TestRetryResumesAfterTheLastFinishedTask(t *testing.T) {
	h := newHarness(t)
	var c counter
	failing := true
	flaky := spec("second", func(context.Context, tasks.Env) error {
		c.task("second", nil).Task.Run(context.Background(), tasks.Env{})
		if failing {
			return errors.New("transient")
		}
		return nil
	})
	specs := []tasks.Spec{c.task("first", nil), flaky, c.task("third", nil)}
	r1, _ := h.runner(specs)
	if _, err := r1.Run(context.Background()); !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("first attempt: %v", err)
	}
	if done := h.rdb.HGetAll(context.Background(), h.keys.Progress).Val(); done["version"] != "1.1.0" || done["done:first"] == "" || done["done:second"] != "" {
		t.Fatalf("progress after the failure = %v", done)
	}
	failing = false
	r2, logs := h.runner(specs)
	if _, err := r2.Run(context.Background()); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if c.get("first") != 1 || c.get("second") != 2 || c.get("third") != 1 {
		t.Errorf("runs first=%d second=%d third=%d, want 1 2 1", c.get("first"), c.get("second"), c.get("third"))
	}
	if !strings.Contains(logs.String(), "task already done in an earlier attempt") {
		t.Error("resume not logged")
	}
	// One of three tasks was done: "resumed" counts it alone, not every task progress has a line for.
	if !strings.Contains(logs.String(), `"tasks":3,"resumed":1}`) {
		t.Errorf("lock taken line does not say one task resumed:\n%s", logs)
	}
	if h.exists(h.keys.Progress) {
		t.Error("progress not cleared by the record")
	}
	if hist := h.history(); len(hist) != 2 || hist[0].FencingToken <= hist[1].FencingToken {
		t.Errorf("history = %+v, want two entries with increasing fencing tokens", hist)
	}
}

func TestProgressOfAnotherVersionIsNotResumed(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var c counter
	migrate := c.task("migrate", nil)
	// A mark of this very definition: only its version keeps it from counting as done.
	h.rdb.HSet(ctx, h.keys.Progress, "version", "1.0.5", "done:migrate", `{"digest":"`+migrate.Digest+`"}`)
	r, _ := h.runner([]tasks.Spec{migrate})
	if _, err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.get("migrate") != 1 {
		t.Error("a task finished for another version was skipped")
	}
}

func TestTaskTimeoutIsATaskFailure(t *testing.T) {
	h := newHarness(t)
	s := spec("slow", func(ctx context.Context, _ tasks.Env) error { <-ctx.Done(); return context.Cause(ctx) })
	s.Timeout = 100 * time.Millisecond
	r, _ := h.runner([]tasks.Spec{s})
	_, err := r.Run(context.Background())
	var te *TaskError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "timed out after 100ms") {
		t.Fatalf("err = %v, want a task failure saying it timed out", err)
	}
}

func TestWrongPasswordFailsAtOnceAsAuthError(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-password")
	h := newHarness(t)
	r, _ := h.runner(nil, "REDIS_URL", "redis://:wrong-password@"+srv.Addr+"/0", "MAINTENANCE_CONNECT_TIMEOUT", "1m")
	began := time.Now()
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want an authentication error", err)
	}
	if time.Since(began) > 30*time.Second {
		t.Error("authentication failure was retried until the connect timeout")
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Error("the password is in the error")
	}
}

func TestUnreachableRedisTimesOut(t *testing.T) {
	h := newHarness(t)
	port := redistest.FreePort(t) // nothing listens there: connections are refused
	r, logs := h.runner(nil, "REDIS_URL", "redis://127.0.0.1:"+strconv.Itoa(port)+"/0", "MAINTENANCE_CONNECT_TIMEOUT", "1s")
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want Redis unreachable", err)
	}
	// The last attempt runs into the deadline; the error keeps what the attempts before it saw.
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want the cause seen on the attempts (connection refused)", err)
	}
	if !strings.Contains(logs.String(), "Redis not reachable yet, retrying") {
		t.Error("retries not logged")
	}
}

func TestRedisStartingLateIsWaitedFor(t *testing.T) {
	h := newHarness(t)
	h.srv.Kill()
	r, logs := h.runner(nil, "MAINTENANCE_CONNECT_TIMEOUT", "30s")
	done := start(context.Background(), r)
	// Redis comes up only once the gate has found it down and is retrying.
	redistest.Eventually(t, 20*time.Second, func() bool { return strings.Contains(logs.String(), "Redis not reachable yet, retrying") },
		"the gate never reported Redis down:\n%s", logs)
	h.srv.Restart()
	out := wait(t, done)
	if out.err != nil || out.res.Outcome != "recorded" {
		t.Fatalf("run = %+v, %v; want the version recorded once Redis is up", out.res, out.err)
	}
	if v := h.get(h.keys.Version); v != "1.1.0" {
		t.Errorf("recorded %q, want 1.1.0", v)
	}
}

func TestProgressThatCannotBeWrittenIsNotATaskFailure(t *testing.T) {
	h := newHarness(t)
	// The task succeeds, but the lock is no longer ours when its progress is written.
	r, logs := h.runner([]tasks.Spec{spec("migrate", func(context.Context, tasks.Env) error {
		return h.rdb.Set(context.Background(), h.keys.Lock, "someone-else", 0).Err()
	})}, "MAINTENANCE_FAILURE_COOLDOWN", "1h")
	_, err := r.Run(context.Background())
	var te *TaskError
	if !errors.Is(err, lock.ErrLost) || errors.As(err, &te) {
		t.Fatalf("err = %v, want lock lost and no task failure", err)
	}
	if n := len(h.history()); n != 0 {
		t.Errorf("history has %d entries: a successful task was blamed", n)
	}
	if strings.Contains(logs.String(), "task failed") {
		t.Error("log says the task failed")
	}
}
