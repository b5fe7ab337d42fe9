package lock_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

func TestFencingTokensIncreaseAfterRedisLostTheCounter(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client()
	l := lock.New(c, key, fenceKey, time.Second)
	first := obtain(t, l, "a")
	before, err := first.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// A restart without persistence or a failover to a replica that had not received it: the counter
	// is gone while the holder that took the token may still run.
	if err := c.Del(ctx, fenceKey).Err(); err != nil {
		t.Fatal(err)
	}
	after, err := obtain(t, l, "b").Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("fencing token %d after Redis lost the counter, %d before: a stale holder's token would win", after, before)
	}
}

// A token taken by an earlier release (the server's clock in milliseconds) stays below the next one, so
// that an upgraded gate never hands out a token a stale holder of the old release could tie or beat.
func TestFencingTokensOfTheMillisecondClockStayBelow(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client()
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// An old token from a clock a day ahead of this one: still below.
	old := now.Add(24 * time.Hour).UnixMilli()
	if err := c.Set(ctx, fenceKey, old, 0).Err(); err != nil {
		t.Fatal(err)
	}
	tok, err := obtain(t, lock.New(c, key, fenceKey, time.Second), "a").Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok <= old || tok < now.UnixMicro() {
		t.Errorf("token %d after the millisecond-clock token %d (server clock %d µs), want above both", tok, old, now.UnixMicro())
	}
}

// scriptCalls returns how many scripts the server has run (EVAL and EVALSHA).
func scriptCalls(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "cmdstat_eval:") || strings.HasPrefix(l, "cmdstat_evalsha:") {
			v := strings.TrimPrefix(strings.SplitN(strings.SplitN(l, ":", 2)[1], ",", 2)[0], "calls=")
			k, _ := strconv.Atoi(v)
			n += k
		}
	}
	return n
}

func TestReleaseOfALockFoundLostSendsNothing(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const ttl = time.Second
	lk := obtain(t, lock.New(c, key, fenceKey, ttl), "a")
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	if err := c.Set(context.Background(), key, "another-holder", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, ctx, 3*ttl, "lock overwritten")
	stop()
	// A lock found lost may sit behind a Redis that does not answer: releasing it could keep the holder
	// waiting past its TTL, for a key that is someone else's anyway.
	before := scriptCalls(t, c)
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := scriptCalls(t, c); after != before {
		t.Errorf("Release of a lock found lost ran %d scripts on Redis, want none", after-before)
	}
}

func TestReleaseIfLeavesAnotherHoldersLock(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	l := lock.New(c, key, fenceKey, time.Second)
	// unlock read the stuck holder's value; meanwhile it went and another holder took the lock.
	if err := c.Set(ctx, key, "the-next-holder", 0).Err(); err != nil {
		t.Fatal(err)
	}
	removed, err := l.ReleaseIf(ctx, "the-stuck-holder")
	if err != nil || removed {
		t.Fatalf("ReleaseIf of a value the key no longer holds: removed %t, err %v; want false, nil", removed, err)
	}
	if v := c.Get(ctx, key).Val(); v != "the-next-holder" {
		t.Fatalf("the next holder's lock is %q after ReleaseIf, want it kept", v)
	}
	if removed, err := l.ReleaseIf(ctx, "the-next-holder"); err != nil || !removed {
		t.Errorf("ReleaseIf of the value the key holds: removed %t, err %v; want true, nil", removed, err)
	}
}
