package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// A holder whose lock was taken over, and whose keeper has not noticed yet (between two refreshes, or
// behind a slow network), still writes: each write is fenced by the lock key in its script, and those
// fences are what keeps it from recording a version or erasing the next holder's progress.
func TestWritesOfAHolderWhoseLockIsNoLongerOursChangeNothing(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	stale, err := lock.New(h.rdb, h.keys.Lock, h.keys.Fence, 10*time.Second).Obtain(ctx,
		lock.Holder{Holder: "stale", Version: "1.1.0", Started: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	h.holdLockExternally(10 * time.Second)
	h.setVersion("1.0.0")
	if err := h.rdb.HSet(ctx, h.keys.Progress, "version", "1.1.0", donePrefix+"t1", "{}").Err(); err != nil {
		t.Fatal(err)
	}

	for _, outcome := range []string{OutcomeSucceeded, OutcomeFailed} {
		ok, err := record(ctx, h.rdb, h.keys, stale, Entry{Version: "1.1.0", Previous: "1.0.0", Outcome: outcome, Holder: "stale",
			FencingToken: 7, Started: time.Now(), Finished: time.Now(), Task: "t2"})
		if err != nil || ok {
			t.Errorf("record %s by a holder that lost its lock: ok %t, err %v; want false, nil", outcome, ok, err)
		}
	}
	if v := h.get(h.keys.Version); v != "1.0.0" {
		t.Errorf("recorded version %q after a stale holder's record, want 1.0.0 unchanged", v)
	}
	if n := len(h.history()); n != 0 {
		t.Errorf("%d history entries written by a stale holder, want none", n)
	}

	for _, reset := range []bool{true, false} {
		ok, err := writeProgress(ctx, h.rdb, h.keys, stale, reset, "current", "stale")
		if err != nil || ok {
			t.Errorf("progress (reset %t) by a holder that lost its lock: ok %t, err %v; want false, nil", reset, ok, err)
		}
	}
	got, err := h.rdb.HGetAll(ctx, h.keys.Progress).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[donePrefix+"t1"] != "{}" || got["current"] != "" {
		t.Errorf("progress %v after a stale holder's writes, want the next holder's unchanged", got)
	}
}

func TestARecordRefusedByTheFenceIsALostLockNotASuccess(t *testing.T) {
	h := newHarness(t)
	r, _ := h.runner([]tasks.Spec{spec("t1", func(context.Context, tasks.Env) error { return nil })}, "MAINTENANCE_LOCK_TTL", "30s")
	// Taken over after the last task, before the record, while the keeper (every 10s) has not looked.
	r.pause = func(_ context.Context, point string) {
		if point == "before-record" {
			h.holdLockExternally(30 * time.Second)
		}
	}
	res, err := r.Run(context.Background())
	if !errors.Is(err, lock.ErrLost) {
		t.Errorf("Run = %+v, %v; want ErrLost (exit 4): the record changed nothing", res, err)
	}
	if v := h.get(h.keys.Version); v != "" {
		t.Errorf("version %q recorded by a holder that lost its lock", v)
	}
}

func TestATaskThatReturnsNilAfterItsTimeoutIsATaskFailure(t *testing.T) {
	h := newHarness(t)
	// A task that stops when told to but reports success: what it did after its timeout is not a finish.
	slow := spec("slow", func(ctx context.Context, _ tasks.Env) error { <-ctx.Done(); return nil })
	slow.Timeout = 50 * time.Millisecond
	r, _ := h.runner([]tasks.Spec{slow})
	_, err := r.Run(context.Background())
	var te *TaskError
	if !errors.As(err, &te) || te.Task != "slow" {
		t.Fatalf("Run = %v, want the task slow failed (timed out)", err)
	}
	if v := h.get(h.keys.Version); v != "" {
		t.Errorf("version %q recorded after a task that ran past its timeout", v)
	}
}

func TestAProgressWriteRefusedByTheFenceStopsTheRunBeforeTheNextTask(t *testing.T) {
	h := newHarness(t)
	var secondRan bool
	r, _ := h.runner([]tasks.Spec{
		// Taken over while the first task runs, before the keeper (every 10s) looks.
		spec("t1", func(context.Context, tasks.Env) error { h.holdLockExternally(30 * time.Second); return nil }),
		spec("t2", func(context.Context, tasks.Env) error { secondRan = true; return nil }),
	}, "MAINTENANCE_LOCK_TTL", "30s")
	_, err := r.Run(context.Background())
	if !errors.Is(err, lock.ErrLost) {
		t.Errorf("Run = %v, want ErrLost (exit 4): the progress write was refused", err)
	}
	if secondRan {
		t.Error("t2 ran after the lock was taken over: a refused progress write must stop the run")
	}
}
