package lock_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

const (
	key      = "{peerdb:maintenance:test}:lock"
	fenceKey = "{peerdb:maintenance:test}:fence"
)

func holder(name string) lock.Holder {
	return lock.Holder{Holder: name, Pod: name + "-pod", Version: "v0.30.1", Started: time.Now().UTC()}
}

func obtain(t *testing.T, l *lock.Locker, name string) *lock.Lock {
	t.Helper()
	lk, err := l.Obtain(context.Background(), holder(name))
	if err != nil {
		t.Fatalf("Obtain for %s: %v", name, err)
	}
	return lk
}

// waitDone waits for ctx to be cancelled, failing the test after guard (a hang guard, not a timing
// assertion), and returns when it happened.
func waitDone(t *testing.T, ctx context.Context, guard time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-ctx.Done():
		return time.Now()
	case <-time.After(guard):
		t.Fatalf("%s: the keeper's context was not cancelled within %s", what, guard)
		return time.Time{}
	}
}

func TestObtainTakesAFreeLockOnce(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 10 * time.Second
	l := lock.New(srv.Client(), key, fenceKey, ttl)
	obtain(t, l, "a")
	other := lock.New(srv.Client(), key, fenceKey, ttl)
	start := time.Now()
	_, err := other.Obtain(context.Background(), holder("b"))
	if !errors.Is(err, lock.ErrNotObtained) {
		t.Fatalf("second Obtain: %v, want ErrNotObtained", err)
	}
	// Retrying would go on until the TTL; one try is one round trip, far below half of it.
	if d := time.Since(start); d > ttl/2 {
		t.Errorf("second Obtain took %s: it must try once, not retry until the TTL (%s)", d, ttl)
	}
}

func TestObtainWithRedisDownIsNotNotObtained(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	srv.Kill()
	_, err := lock.New(c, key, fenceKey, time.Second).Obtain(context.Background(), holder("a"))
	if err == nil || errors.Is(err, lock.ErrNotObtained) {
		t.Fatalf("Obtain with Redis down: %v, want a connection error", err)
	}
}

func TestHolderMetadataRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	l := lock.New(c, key, fenceKey, 2*time.Second)

	h, ttl, err := l.Read(ctx)
	if err != nil || h != nil || ttl != 0 {
		t.Fatalf("Read of a free lock = %v, %s, %v; want nil, 0, nil", h, ttl, err)
	}

	want := holder("replica-1")
	lk, err := l.Obtain(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	h, ttl, err = l.Read(ctx)
	if err != nil || h == nil {
		t.Fatalf("Read of a held lock = %v, %v", h, err)
	}
	if h.Holder != want.Holder || h.Pod != want.Pod || h.Version != want.Version || !h.Started.Equal(want.Started) {
		t.Errorf("Read holder %+v, want %+v", *h, want)
	}
	if ttl <= 0 || ttl > 2*time.Second {
		t.Errorf("Read TTL %s, want within (0, 2s]", ttl)
	}

	raw, err := c.Get(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if lk.Value() != raw {
		t.Errorf("Value() = %q, the key holds %q", lk.Value(), raw)
	}
	if got := lock.ParseValue(raw); got.Holder != want.Holder || got.Version != want.Version || !got.Started.Equal(want.Started) {
		t.Errorf("ParseValue = %+v, want %+v", got, want)
	}
	if got := lock.ParseValue("not a lock value"); got != (lock.Holder{}) {
		t.Errorf("ParseValue of garbage = %+v, want the zero Holder", got)
	}
}

func TestFencingTokensIncreaseAcrossHolders(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l := lock.New(srv.Client(), key, fenceKey, time.Second)
	var prev int64
	for _, name := range []string{"a", "b", "a", "c"} {
		lk := obtain(t, l, name)
		n, err := lk.Fence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n <= prev {
			t.Errorf("holder %s got fencing token %d after %d: not strictly increasing", name, n, prev)
		}
		prev = n
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReleaseFreesTheLock(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	l := lock.New(c, key, fenceKey, 10*time.Second)

	t.Run("another holder can take it at once", func(t *testing.T) {
		lk := obtain(t, l, "a")
		if err := lk.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		obtain(t, l, "b").Release(ctx)
	})
	t.Run("releasing a lock taken over by another holder is not an error and leaves it alone", func(t *testing.T) {
		lk := obtain(t, l, "a")
		if err := c.Set(ctx, key, "someone-else", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Errorf("Release of a lost lock: %v", err)
		}
		if v, _ := c.Get(ctx, key).Result(); v != "someone-else" {
			t.Errorf("Release removed another holder's lock: key holds %q", v)
		}
		c.Del(ctx, key)
	})
	t.Run("releasing twice is not an error", func(t *testing.T) {
		lk := obtain(t, l, "a")
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Errorf("second Release: %v", err)
		}
	})
	t.Run("release works with an already cancelled context", func(t *testing.T) {
		lk := obtain(t, l, "a")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := lk.Release(cctx); err != nil {
			t.Errorf("Release with a cancelled context: %v", err)
		}
		if n, _ := c.Exists(ctx, key).Result(); n != 0 {
			t.Error("the lock key is still there")
		}
	})
}

func TestKeeperKeepsTheLockPastSeveralTTLs(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = time.Second
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()

	select {
	case <-ctx.Done():
		t.Fatalf("keeper gave up while Redis was fine: %v", context.Cause(ctx))
	case <-time.After(2 * ttl):
	}
	pttl, err := c.PTTL(context.Background(), key).Result()
	if err != nil || pttl <= 0 {
		t.Fatalf("after 2×TTL the lock has PTTL %s (%v): it was not refreshed", pttl, err)
	}
	if v, _ := c.Get(context.Background(), key).Result(); v != lk.Value() {
		t.Errorf("the key holds %q, not our value", v)
	}
}

func TestOverwrittenLockCancelsTheRunWithErrLost(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = time.Second
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()

	if err := c.Set(context.Background(), key, "another-holder", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, ctx, 3*ttl, "lock overwritten")
	if cause := context.Cause(ctx); !errors.Is(cause, lock.ErrLost) {
		t.Errorf("cause %v, want ErrLost", cause)
	}
}

func TestReleaseIfRemovesOnlyTheValueItWasGiven(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l := lock.New(srv.Client(), key, fenceKey, time.Second)

	if ok, err := l.ReleaseIf(ctx, "gone"); err != nil || ok {
		t.Fatalf("ReleaseIf of a free lock = %t, %v; want false, nil", ok, err)
	}
	lk := obtain(t, l, "stuck")
	kept, stop := lk.Keep(ctx, slog.New(slog.DiscardHandler))
	defer stop()
	if ok, err := l.ReleaseIf(ctx, "an older holder's value"); err != nil || ok {
		t.Fatalf("ReleaseIf of another value = %t, %v; want false, nil", ok, err)
	}
	if v, _, _ := l.ReadValue(ctx); v != lk.Value() {
		t.Fatalf("ReleaseIf of another value removed the holder's lock (now %q)", v)
	}
	if ok, err := l.ReleaseIf(ctx, lk.Value()); err != nil || !ok {
		t.Fatalf("ReleaseIf of the holder's value = %t, %v; want true, nil", ok, err)
	}
	obtain(t, l, "rescuer")
	waitDone(t, kept, 3*time.Second, "lock released by unlock")
	if cause := context.Cause(kept); !errors.Is(cause, lock.ErrLost) {
		t.Errorf("the old holder's run stopped with %v, want ErrLost", cause)
	}
}

func TestRedisDeathCancelsTheRunBeforeTheLockCanExpire(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = 2 * time.Second
	var logs bytes.Buffer
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.NewJSONHandler(&logs, nil)))
	defer stop()

	// Kill right after a refresh: the worst case, where the keeper has the longest to notice. A
	// refresh is seen as the TTL going up, however slowly this machine answers.
	last := ttl
	redistest.Eventually(t, 2*ttl, func() bool {
		pttl, err := c.PTTL(context.Background(), key).Result()
		refreshed := err == nil && pttl > last
		last = pttl
		return refreshed
	}, "no refresh seen")
	if ctx.Err() != nil {
		t.Fatalf("keeper gave up while Redis was fine: %v", context.Cause(ctx))
	}
	killed := time.Now()
	srv.Kill()

	cancelled := waitDone(t, ctx, 3*ttl, "Redis killed")
	if cause := context.Cause(ctx); !errors.Is(cause, lock.ErrLost) {
		t.Errorf("cause %v, want ErrLost", cause)
	}
	// The last refresh that worked started before the kill, so the lock may have expired TTL after
	// the kill at the latest: the run must have been cancelled by then.
	after := cancelled.Sub(killed)
	t.Logf("run cancelled %s after Redis died", after)
	if after >= ttl {
		t.Errorf("run cancelled %s after Redis died, when the lock (TTL %s) may already have expired", after, ttl)
	}
	if !bytes.Contains(logs.Bytes(), []byte("lock refresh failed")) {
		t.Errorf("failed refreshes were not logged:\n%s", logs.String())
	}
}

func TestKeeperCountsTheTTLFromObtainNotFromKeep(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = 2 * time.Second
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	// The holder is slow to start its keeper (double check, cooldown, fencing token): less than a
	// third of the TTL is left, so a first refresh TTL/3 after Keep would come too late.
	redistest.Eventually(t, ttl, func() bool {
		pttl, err := c.PTTL(context.Background(), key).Result()
		return err == nil && pttl < ttl*3/10
	}, "the lock's TTL did not run down")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	select {
	case <-ctx.Done():
		t.Fatalf("keeper lost a lock that was still ours: %v", context.Cause(ctx))
	case <-time.After(ttl):
	}
	if pttl, err := c.PTTL(context.Background(), key).Result(); err != nil || pttl <= 0 {
		t.Fatalf("the lock expired (PTTL %s, %v): the keeper refreshed too late", pttl, err)
	}
}

func TestStopEndsTheKeeper(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = time.Second
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	stop()
	stop() // a deferred stop after an explicit one must not panic

	if cause := context.Cause(ctx); ctx.Err() == nil || errors.Is(cause, lock.ErrLost) {
		t.Errorf("after stop the context is done=%v with cause %v, want cancelled without ErrLost", ctx.Err() != nil, cause)
	}
	redistest.Eventually(t, 3*ttl, func() bool {
		n, err := c.Exists(context.Background(), key).Result()
		return err == nil && n == 0
	}, "the lock was still refreshed after stop: it did not expire within 3×TTL")
}

func TestParentCancellationIsNotALostLock(t *testing.T) {
	srv := redistest.Start(t)
	lk := obtain(t, lock.New(srv.Client(), key, fenceKey, time.Second), "a")
	parent, cancel := context.WithCancelCause(context.Background())
	ctx, stop := lk.Keep(parent, slog.New(slog.DiscardHandler))
	defer stop()
	interrupted := errors.New("SIGTERM")
	cancel(interrupted)
	waitDone(t, ctx, 3*time.Second, "parent cancelled")
	if cause := context.Cause(ctx); !errors.Is(cause, interrupted) || errors.Is(cause, lock.ErrLost) {
		t.Errorf("cause %v, want the parent's cause", cause)
	}
}
