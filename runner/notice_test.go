package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// A waiter is woken by the notice of every way a holder gives its lock up, and proceeds at once: the
// holder's lock TTL and the waiter's progress interval are longer than its wait timeout, so a waiter
// that waited for its next look at the lock would time out instead. (The notice of a lock found lost is lock's TestALostLockStillSendsItsReleaseNotice.)
func TestAWaiterProceedsOnTheNoticeOfEveryWayTheLockIsGivenUp(t *testing.T) {
	for _, way := range []string{"record", "failure", "signal"} {
		t.Run(way, func(t *testing.T) {
			h := newHarness(t)
			const ttl, waitTimeout = "1m", "8s"
			proceed := make(chan error, 1)
			holder, _ := h.runner([]tasks.Spec{spec("migrate", func(ctx context.Context, _ tasks.Env) error {
				select {
				case err := <-proceed:
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			})}, "MAINTENANCE_HOLDER", "pod-a", "MAINTENANCE_LOCK_TTL", ttl)
			hctx, stopHolder := context.WithCancel(context.Background())
			defer stopHolder()
			hd := start(hctx, holder)
			redistest.Eventually(t, 10*time.Second, func() bool {
				return h.rdb.HGet(context.Background(), h.keys.Progress, "current").Val() != ""
			}, "the holder never started its task")
			var c counter
			waiter, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_HOLDER", "pod-b",
				"MAINTENANCE_LOCK_TTL", ttl, "MAINTENANCE_WAIT_TIMEOUT", waitTimeout)
			if waiter.cfg.WaitTimeout >= min(waiter.cfg.LockTTL, waitLogEvery) {
				// The progress line every 10s is also a look at the lock: it must not come first either.
				t.Fatal("the wait timeout must be shorter than the lock TTL and the progress interval for this test to mean anything")
			}
			wd := start(context.Background(), waiter)
			waitForSubscriber(t, h, 1)
			want := "recorded"
			switch way {
			case "record":
				proceed <- nil
				want = "waited"
			case "failure":
				proceed <- errors.New("boom")
			case "signal":
				stopHolder()
			}
			out := wait(t, wd)
			if out.err != nil || out.res.Outcome != want {
				t.Fatalf("waiter = %+v, %v; want outcome %s", out.res, out.err, want)
			}
			wait(t, hd)
		})
	}
}

// A notice that never arrives (the holder was SIGKILLed, or the notice was lost with the subscriber's
// connection) costs a waiter one expiry of the lock, never its wait timeout: it looks at the lock again
// when the lock would expire. The wait timeout is three lock TTLs, the lock is freed without a notice
// (deleted, or left to expire), and the waiter must run the task rather than time out.
func TestALostNoticeCostsOneExpiryNotTheWaitTimeout(t *testing.T) {
	for _, way := range []string{"deleted", "expired"} {
		t.Run(way, func(t *testing.T) {
			h := newHarness(t)
			var c counter
			r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_LOCK_TTL", "2s", "MAINTENANCE_WAIT_TIMEOUT", "6s")
			// The external holder's lock lives one TTL: the waiter's look at it shows at most that.
			h.holdLockExternally(r.cfg.LockTTL)
			done := start(context.Background(), r)
			waitForSubscriber(t, h, 1)
			if way == "deleted" {
				if err := h.rdb.Del(context.Background(), h.keys.Lock).Err(); err != nil {
					t.Fatal(err)
				}
			}
			out := wait(t, done)
			if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
				t.Fatalf("run = %+v, %v, task runs %d; want the lock taken after one expiry, within MAINTENANCE_WAIT_TIMEOUT=%s",
					out.res, out.err, c.get("migrate"), r.cfg.WaitTimeout)
			}
		})
	}
}

// A Redis that restarted without persistence forgot the lock, and the notices published while a
// waiter's subscription was down are lost: once its subscription is made again, the waiter looks at the
// lock at once. The lock it read lives longer than its wait timeout and than its progress interval (its
// only other look), so a waiter that waited for the lock's expiry as read would time out instead.
func TestAWaiterLooksAtTheLockWhenItsSubscriptionIsMadeAgain(t *testing.T) {
	h := newHarness(t)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_LOCK_TTL", "1m", "MAINTENANCE_WAIT_TIMEOUT", "8s")
	if r.cfg.WaitTimeout >= min(r.cfg.LockTTL, waitLogEvery) {
		t.Fatal("the wait timeout must be shorter than the lock TTL and the progress interval for this test to mean anything")
	}
	h.holdLockExternally(r.cfg.LockTTL)
	done := start(context.Background(), r)
	waitForSubscriber(t, h, 1)
	h.srv.Restart()
	out := wait(t, done)
	if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
		t.Fatalf("run = %+v, %v, task runs %d; want the lock Redis forgot taken after the restart, within MAINTENANCE_WAIT_TIMEOUT=%s",
			out.res, out.err, c.get("migrate"), r.cfg.WaitTimeout)
	}
}

// A waiter that arrives late, when the lock of a holder that died without a notice has little left to
// live, takes it when it expires, not a whole TTL (or a progress interval) later: its first look reads
// what is left of the lock, not the holder's TTL. The lock has one second left; the gate's TTL and its
// progress interval are longer than the wait timeout.
func TestALateWaiterTakesADeadHoldersLockWhenItExpires(t *testing.T) {
	h := newHarness(t)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_LOCK_TTL", "1m", "MAINTENANCE_WAIT_TIMEOUT", "8s")
	if r.cfg.WaitTimeout >= min(r.cfg.LockTTL, waitLogEvery) {
		t.Fatal("the wait timeout must be shorter than the lock TTL and the progress interval for this test to mean anything")
	}
	h.holdLockExternally(time.Second)
	out := wait(t, start(context.Background(), r))
	if out.err != nil || out.res.Outcome != "recorded" || c.get("migrate") != 1 {
		t.Fatalf("run = %+v, %v, task runs %d; want the lock taken when it expired, within MAINTENANCE_WAIT_TIMEOUT=%s",
			out.res, out.err, c.get("migrate"), r.cfg.WaitTimeout)
	}
}
