package lock_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// The lease an exec task's supervisor enforces moves only with a refresh that worked, and to that
// refresh's start plus less than the TTL: never past the time Redis could expire the key.
func TestTheLeaseMovesWithEachRefreshThatWorkedAndNeverPastTheTTL(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 1500 * time.Millisecond
	before := time.Now()
	lk := obtain(t, lock.New(gateClient(t, srv), key, fenceKey, ttl), "a")
	until, changed := lk.Lease()
	if !until.After(before) || !until.Before(before.Add(ttl)) {
		t.Fatalf("the first lease ends %s after Obtain began, want within the TTL %s", until.Sub(before), ttl)
	}
	_, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	select {
	case <-changed:
	case <-time.After(5 * ttl):
		t.Fatal("a refresh that worked did not move the lease")
	}
	next, _ := lk.Lease()
	if !next.After(until) || !next.Before(time.Now().Add(ttl)) {
		t.Fatalf("the lease moved from %s to %s, want later and within a TTL from now", until, next)
	}
	// Refreshes that fail (the key is gone) never move it again.
	if err := srv.Client().Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 5*ttl, func() bool {
		select {
		case <-lk.Lost():
			return true
		default:
			return false
		}
	}, "the keeper did not find the lock gone")
	if last, _ := lk.Lease(); last.After(next.Add(ttl)) {
		t.Errorf("the lease moved to %s after the lock was lost", last)
	}
}

// A dropped connection is a reason to look now: CheckNow finds a lock Redis forgot at once, not at the
// next refresh a TTL/3 later.
func TestCheckNowFindsAForgottenLockAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 30 * time.Second
	lk := obtain(t, lock.New(gateClient(t, srv), key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	lk.CheckNow()
	select {
	case <-ctx.Done():
		if !errors.Is(context.Cause(ctx), lock.ErrLost) {
			t.Errorf("cause = %v, want ErrLost", context.Cause(ctx))
		}
	case <-time.After(ttl / 3):
		t.Fatal("CheckNow did not find the forgotten lock before the next regular refresh")
	}
}

// A check asked for by CheckNow that fails (Redis is restarting) is tried again at once, not interval/2
// later: a Redis back from a restart without persistence has forgotten the lock, and a new holder may
// take it as soon as it answers.
func TestAFailedCheckIsTriedAgainAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 60 * time.Second
	lk := obtain(t, lock.New(gateClient(t, srv), key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	srv.Kill()
	lk.CheckNow() // fails, once go-redis's own retries are spent: nothing listens
	time.Sleep(2500 * time.Millisecond)
	srv.StartAgain() // without persistence: the lock is forgotten
	select {
	case <-ctx.Done():
		if !errors.Is(context.Cause(ctx), lock.ErrLost) {
			t.Errorf("cause = %v, want ErrLost", context.Cause(ctx))
		}
	case <-time.After(ttl / 12): // the retry after an ordinary failed refresh comes ttl/6 later
		t.Fatal("the keeper did not look at the lock again soon after Redis came back")
	}
}

// A refresh Redis refuses whatever its state (the user may not PEXPIRE) stops the run at the first
// refresh, not when the lock is about to expire.
func TestARefusedRefreshStopsTheRunAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client().Do(ctx, "acl", "setuser", "nopexpire", "on", ">pw", "~*", "&*", "+@all", "-pexpire").Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "nopexpire", Password: "pw"})
	t.Cleanup(func() { _ = c.Close() })
	const ttl = 3 * time.Second
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	runCtx, stop := lk.Keep(ctx, slog.New(slog.DiscardHandler))
	defer stop()
	select {
	case <-runCtx.Done():
		if cause := context.Cause(runCtx); !errors.Is(cause, lock.ErrRefreshRefused) || !errors.Is(cause, lock.ErrLost) {
			t.Errorf("cause = %v, want ErrRefreshRefused and ErrLost", cause)
		}
	case <-time.After(ttl / 3 * 2): // the first refresh is at ttl/3; giving up would come near ttl
		t.Fatal("a refused refresh did not stop the run at once")
	}
}
