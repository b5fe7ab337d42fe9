package lock_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

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
