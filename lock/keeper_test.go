package lock_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// gateClient is a client configured as the gate's writes are: context deadlines bound socket reads,
// and no retry of its own.
func gateClient(t *testing.T, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestKeeperMakesALastAttemptBeforeGivingUp(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 3 * time.Second
	// Redis answers nothing from a fifth of the TTL until 0.85 of it: the regular refreshes (at TTL/3,
	// then retried until 5/6 of the TTL) all wait past their deadline, and only an attempt made when the
	// keeper is about to give up, still before the lock could expire, finds Redis answering again.
	for try := 1; ; try++ {
		start := time.Now()
		lk := obtain(t, lock.New(gateClient(t, srv), key, fenceKey, ttl), "a")
		ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
		time.Sleep(time.Until(start.Add(ttl / 5)))
		if late := time.Since(start); late > ttl/4 {
			// A loaded machine started the pause too late for the case this test is about: again.
			stop()
			_ = srv.Client().Del(context.Background(), key).Err()
			if try < 5 {
				continue
			}
			t.Fatalf("could not start the pause in time in %d tries (last %s after obtain)", try, late)
		}
		if err := srv.Client().Do(context.Background(), "client", "pause", (ttl * 65 / 100).Milliseconds()).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("keeper gave up a lock that a last refresh would have kept: %v", context.Cause(ctx))
		case <-time.After(2 * ttl):
		}
		select {
		case <-lk.Lost():
			t.Fatal("Lost is closed although the lock is ours")
		default:
		}
		stop()
		return
	}
}

func TestKeeperKeepsTheLockAfterTheRunIsCancelledUntilStop(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = time.Second
	lk := obtain(t, lock.New(gateClient(t, srv), key, fenceKey, ttl), "a")
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop := lk.Keep(parent, slog.New(slog.DiscardHandler))
	defer stop()
	cancel() // a signal: the tasks wind down, and the lock must stay ours meanwhile
	waitDone(t, ctx, 3*ttl, "parent cancelled")
	time.Sleep(3 * ttl)
	if v, err := c.Get(context.Background(), key).Result(); err != nil || v != lk.Value() {
		t.Fatalf("3×TTL after the run was cancelled the lock holds %q (%v): the keeper stopped refreshing", v, err)
	}
	stop()
	redistest.Eventually(t, 3*ttl, func() bool { return c.Exists(context.Background(), key).Val() == 0 }, "the lock was refreshed after stop")
}

func TestLostIsClosedWhenTheLockIsTaken(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = time.Second
	lk := obtain(t, lock.New(gateClient(t, srv), key, fenceKey, ttl), "a")
	_, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	if err := c.Set(context.Background(), key, "another holder", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lk.Lost():
	case <-time.After(3 * ttl):
		t.Fatal("Lost was not closed within 3×TTL of the lock being taken")
	}
}

func TestTheKeeperGivesUpEarlyEnoughToKillTheTreeAtTheShortestTTL(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr)
	const ttl = time.Second // the shortest MAINTENANCE_LOCK_TTL
	c := redis.NewClient(&redis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	_, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	proxy.Stall() // no refresh gets through from now on
	select {
	case <-lk.Lost():
	case <-time.After(3 * ttl):
		t.Fatal("Lost was not closed within 3×TTL of Redis going silent")
	}
	pttl := srv.Client().PTTL(context.Background(), key).Val()
	// The run must be cancelled with time left to SIGKILL and reap the task's tree: well over TTL/12
	// (83ms here, less than one scheduling hiccup of a loaded node); the keeper aims at 250ms.
	if pttl <= ttl/6 {
		t.Errorf("the keeper gave the lock up %s before it expires, want more than twice TTL/12 (%s)", pttl, ttl/6)
	}
	proxy.Resume()
}
