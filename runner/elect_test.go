package runner

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// waitForSubscriber waits until n replicas listen for completion notices.
func waitForSubscriber(t *testing.T, h *harness, n int64) {
	t.Helper()
	redistest.Eventually(t, 10*time.Second, func() bool {
		m, err := h.rdb.PubSubNumSub(context.Background(), h.keys.Events).Result()
		return err == nil && m[h.keys.Events] >= n
	}, "no replica subscribed to %s", h.keys.Events)
}

func (h *harness) publish(n Notice) {
	b, _ := json.Marshal(n)
	if err := h.rdb.Publish(context.Background(), h.keys.Events, b).Err(); err != nil {
		h.t.Fatal(err)
	}
}

func TestWaiterExitsWhenTheHolderRecords(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(0)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)})
	done := start(context.Background(), r)
	waitForSubscriber(t, h, 1)
	h.setVersion("1.1.0")
	h.publish(Notice{Event: "recorded", Version: "1.1.0", Holder: "other-pod"})
	out := wait(t, done)
	if out.err != nil || out.res.Outcome != "waited" {
		t.Fatalf("run = %+v, %v", out.res, out.err)
	}
	if c.get("migrate") != 0 {
		t.Error("a waiter ran the task")
	}
}

func TestWaiterIgnoresNoticesForOtherVersions(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(0)
	r, _ := h.runner(nil, "MAINTENANCE_WAIT_TIMEOUT", "3s", "MAINTENANCE_FAILURE_COOLDOWN", "30s")
	done := start(context.Background(), r)
	waitForSubscriber(t, h, 1)
	h.publish(Notice{Event: "recorded", Version: "9.9.9"})
	h.publish(Notice{Event: "failed", Version: "9.9.9", Task: "x", Error: "boom"})
	out := wait(t, done)
	if !errors.Is(out.err, ErrWaitTimeout) {
		t.Fatalf("err = %v, want the wait to time out", out.err)
	}
}

func TestWaiterTakesOverWhenTheLockIsFreedWithoutARecord(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(0)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)})
	done := start(context.Background(), r)
	waitForSubscriber(t, h, 1)
	if err := h.rdb.Del(context.Background(), h.keys.Lock).Err(); err != nil {
		t.Fatal(err)
	}
	out := wait(t, done)
	if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
		t.Fatalf("run = %+v, %v, task runs %d", out.res, out.err, c.get("migrate"))
	}
}

func TestWaitTimesOutNamingTheHolder(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(0)
	r, _ := h.runner(nil, "MAINTENANCE_WAIT_TIMEOUT", "1s")
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrWaitTimeout) || !strings.Contains(err.Error(), "other-pod") {
		t.Fatalf("err = %v, want a wait timeout naming other-pod", err)
	}
}

func TestFailureNoticeWithinCooldownEndsTheWaitWithTaskFailed(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(0)
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_FAILURE_COOLDOWN", "30s")
	done := start(context.Background(), r)
	waitForSubscriber(t, h, 1)
	h.publish(Notice{Event: "failed", Version: "1.1.0", Holder: "other-pod", Task: "catalog-schema", Error: "relation missing"})
	out := wait(t, done)
	if !errors.Is(out.err, ErrTaskFailed) || !strings.Contains(out.err.Error(), "catalog-schema") {
		t.Fatalf("err = %v, want a task failure naming catalog-schema", out.err)
	}
	if c.get("migrate") != 0 {
		t.Error("waiter ran the task after a failure notice")
	}
	if !strings.Contains(logs.String(), "relation missing") {
		t.Error("the holder's error is not in the waiter's log")
	}
}

func TestWaiterLogsWhoHoldsTheLockAndWhichTask(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	holder, _ := h.runner([]tasks.Spec{
		spec("quick", func(context.Context, tasks.Env) error { return nil }),
		spec("catalog-schema", func(ctx context.Context, _ tasks.Env) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}),
	}, "MAINTENANCE_HOLDER", "pod-a")
	hd := start(context.Background(), holder)
	redistest.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(h.get(h.keys.Lock), "pod-a") && h.rdb.HGet(context.Background(), h.keys.Progress, "current").Val() != ""
	}, "holder never published its current task")
	waiter, logs := h.runner(nil, "MAINTENANCE_HOLDER", "pod-b")
	wd := start(context.Background(), waiter)
	redistest.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "another replica holds the lock, waiting")
	}, "waiter did not log its wait")
	close(release)
	if out := wait(t, hd); out.err != nil {
		t.Fatal(out.err)
	}
	if out := wait(t, wd); out.err != nil || out.res.Outcome != "waited" {
		t.Fatalf("waiter = %+v, %v", out.res, out.err)
	}
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "another replica holds the lock, waiting") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line["holder"] != "pod-a" || line["task"] != "2/2 catalog-schema" || line["held_for"] == nil || line["waited"] == nil {
		t.Errorf("wait log line = %v, want holder pod-a, task 2/2 catalog-schema, held_for, waited", line)
	}
}

func TestOnlyOneOfManyConcurrentRunnersRunsTheTasks(t *testing.T) {
	h := newHarness(t)
	var c counter
	specs := []tasks.Spec{c.task("migrate", nil)}
	var outs []<-chan runResult
	for range 8 {
		r, _ := h.runner(specs)
		outs = append(outs, start(context.Background(), r))
	}
	recorded := 0
	for _, o := range outs {
		out := wait(t, o)
		if out.err != nil {
			t.Fatalf("a replica failed: %v", out.err)
		}
		if out.res.Outcome == "recorded" {
			recorded++
		}
	}
	if c.get("migrate") != 1 || recorded != 1 {
		t.Errorf("task ran %d times and %d replicas recorded, want 1 and 1", c.get("migrate"), recorded)
	}
	if n := len(h.history()); n != 1 {
		t.Errorf("history has %d entries, want 1", n)
	}
}

func TestWaiterLooksAtAHeldLockWithoutTryingIt(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := context.Background()
	if err := h.rdb.ConfigResetStat(bg).Err(); err != nil {
		t.Fatal(err)
	}
	r, _ := h.runner(nil)
	done := start(ctx, r)
	waitForSubscriber(t, h, 1)
	calls := func(cmd string) int {
		stats, err := h.rdb.Info(bg, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(stats, "\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	redistest.Eventually(t, 10*time.Second, func() bool { return calls("pttl") >= 3 }, "the waiter did not look at the lock")
	// One PTTL a poll: the lock is tried (a script) only once it is gone, not even once on arrival.
	if n := calls("evalsha") + calls("eval"); n != 0 {
		t.Errorf("the waiter tried a held lock %d times", n)
	}
	cancel()
	wait(t, done)
}

// TestAWaiterOpensNoWriteConnection: a waiter reads, tries the lock and listens on two connections;
// the third (the holder's writes, never retried) is opened only by the holder. Each connection costs
// Redis a HELLO, paid by every replica of a startup storm. The waiter here does try the lock: another
// replica's lock expires, and just before the waiter's attempt a third replica takes it and records.
func TestAWaiterOpensNoWriteConnection(t *testing.T) {
	h := newHarness(t)
	h.holdLockExternally(time.Second)
	// The waiter reaches Redis through a proxy of its own, which counts what it opens and nothing else.
	proxy := redistest.StartProxy(t, h.srv.Addr)
	waiter, _ := h.runner(nil, "MAINTENANCE_HOLDER", "pod-b", "REDIS_URL", proxy.URL())
	tried := false
	waiter.beforeObtain = func() {
		tried = true
		h.holdLockExternally(time.Minute)
		h.setVersion("1.1.0")
	}
	if out := wait(t, start(context.Background(), waiter)); out.err != nil || out.res.Outcome != "waited" {
		t.Fatalf("waiter = %+v, %v", out.res, out.err)
	}
	if !tried {
		t.Fatal("the waiter never tried the lock")
	}
	if opened := proxy.Accepted(); opened > 2 {
		t.Errorf("the waiter opened %d connections, want 2 (reads and lock attempts, notices)", opened)
	}
}

// TestWhatChangesBetweenTheLookAndTheSubscriptionIsRead: a replica that found the lock held subscribes
// and then reads the version and the lock again. The change here comes without a notice (it would have
// been published before the subscription anyway), and the lock's TTL is longer than the wait timeout:
// only that second read ends the wait.
func TestWhatChangesBetweenTheLookAndTheSubscriptionIsRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(h *harness)
		outcome string
	}{
		{"the version recorded", func(h *harness) { h.setVersion("1.1.0") }, "waited"},
		{"the lock released", func(h *harness) {
			if err := h.rdb.Del(context.Background(), h.keys.Lock).Err(); err != nil {
				t.Fatal(err)
			}
		}, "recorded"},
		// Invariant 4 against the version recorded now, not the one read at start.
		{"a newer version recorded", func(h *harness) { h.setVersion("1.2.0") }, "downgrade-skipped"},
		{"Redis restarted empty", func(h *harness) { h.srv.RestartEmpty() }, "recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.holdLockExternally(time.Minute)
			var c counter
			r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_WAIT_TIMEOUT", "5s")
			changed := false
			r.beforeSubscribe = func() {
				if !changed {
					changed = true
					tc.change(h)
				}
			}
			res, err := r.Run(context.Background())
			if err != nil || res.Outcome != tc.outcome {
				t.Fatalf("run = %+v, %v; want outcome %s", res, err, tc.outcome)
			}
			if !changed {
				t.Fatal("the replica never subscribed after its look")
			}
		})
	}
}

// TestAWaiterWhoseSubscriptionWasSlowStillTakesAnExpiredLockInTime: a holder died without a notice, its
// lock has 3s left at the waiter's look, and the network stalls for 2s while the waiter subscribes.
// The lock expires 3s after the look whatever the stall, and the waiter must take it then, within its
// 4.5s wait timeout: the TTL its look read counts from the look, not from the end of the subscription.
func TestAWaiterWhoseSubscriptionWasSlowStillTakesAnExpiredLockInTime(t *testing.T) {
	h := newHarness(t)
	proxy := redistest.StartProxy(t, h.srv.Addr)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "REDIS_URL", proxy.URL(), "MAINTENANCE_WAIT_TIMEOUT", "4500ms")
	h.holdLockExternally(3 * time.Second)
	stalled := false
	r.beforeSubscribe = func() {
		if !stalled {
			stalled = true
			proxy.Stall()
			time.AfterFunc(2*time.Second, proxy.Resume)
		}
	}
	out := wait(t, start(context.Background(), r))
	if !stalled {
		t.Fatal("the waiter never subscribed after its look")
	}
	if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
		t.Fatalf("run = %+v, %v, task ran %d times; want the dead holder's lock taken when it expired", out.res, out.err, c.get("migrate"))
	}
}

// A connection that takes the SUBSCRIBE and never answers (half open) must not hold the waiter until
// its wait timeout: the confirmation is waited for redisconn.SubscribeWait at most, and the lock of a
// holder that died meanwhile is taken when it expires.
func TestAWaiterWhoseSubscriptionNeverAnswersStillTakesAnExpiredLock(t *testing.T) {
	h := newHarness(t)
	proxy := redistest.StartProxy(t, h.srv.Addr)
	proxy.DeafAfter("SUBSCRIBE")
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "REDIS_URL", proxy.URL(), "MAINTENANCE_WAIT_TIMEOUT", "25s")
	h.holdLockExternally(2 * time.Second) // its holder is dead: nobody releases it or says so
	out := wait(t, start(context.Background(), r))
	if proxy.Deaf() == 0 {
		t.Fatal("the waiter never subscribed: the fault was not injected")
	}
	if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
		t.Fatalf("run = %+v, %v, task ran %d times; want the dead holder's lock taken after it expired, not the wait timeout", out.res, out.err, c.get("migrate"))
	}
}

// The holder listens for unlock --force's notice on a connection of its own. When that connection never
// confirms the subscription, the holder must go on with its tasks (the stop request is also read from
// its key) rather than sit on a lock its keeper keeps refreshing, deaf to signals.
func TestAHolderWhoseStopListenerNeverAnswersStillRunsItsTasks(t *testing.T) {
	h := newHarness(t)
	proxy := redistest.StartProxy(t, h.srv.Addr)
	proxy.DeafAfter("PSUBSCRIBE")
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "REDIS_URL", proxy.URL())
	out := wait(t, start(context.Background(), r))
	if proxy.Deaf() == 0 {
		t.Fatal("the holder never subscribed to stop notices: the fault was not injected")
	}
	if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
		t.Fatalf("run = %+v, %v, task ran %d times; want the tasks run and the version recorded", out.res, out.err, c.get("migrate"))
	}

	// Interrupted while it waits for that confirmation, it stops within the bound, lock released.
	r2, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "REDIS_URL", proxy.URL(), "PEERDB_DEPLOYMENT_VERSION", "9.9.9")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := proxy.Deaf()
	ch := start(ctx, r2)
	redistest.Eventually(t, 10*time.Second, func() bool { return proxy.Deaf() > before }, "the second holder never subscribed")
	cancel()
	select {
	case out := <-ch:
		if out.err == nil || c.get("migrate") != 1 {
			t.Fatalf("run = %+v, %v, task ran %d times; want it interrupted before its task", out.res, out.err, c.get("migrate"))
		}
	case <-time.After(redisconn.SubscribeWait + 10*time.Second):
		t.Fatal("the holder did not stop when interrupted while subscribing")
	}
	if n, _ := h.rdb.Exists(context.Background(), h.keys.Lock).Result(); n != 0 {
		t.Fatal("the interrupted holder left its lock behind")
	}
}
