package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

const channel = "{test}:events"

func noticeOf(h lock.Holder, lost bool) string {
	if lost {
		return "lost " + h.Holder
	}
	return "released " + h.Holder
}

// Waiters sleep until the lock would expire unless a notice wakes them: every way of giving the lock
// up must send one, in the same step as the release.
func TestReleaseSendsTheReleaseNotice(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client()
	sub := c.Subscribe(ctx, channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	l := lock.New(c, key, fenceKey, time.Minute)
	l.NotifyOnRelease(channel, noticeOf)
	lk := obtain(t, l, "a")
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("the lock is still there after its release")
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second) // a hang guard: the notice is sent before Release returns
	defer rcancel()
	m, err := sub.ReceiveMessage(rctx)
	if err != nil || m.Payload != "released a" {
		t.Fatalf("notice = %v, %v; want released a", m, err)
	}
	// A lock that is someone else's by now is neither deleted nor announced.
	other := obtain(t, l, "b")
	if err := c.Set(ctx, key, "someone else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, key).Result(); v != "someone else" {
		t.Fatalf("lock = %q, want another holder's lock left alone", v)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if m, err := sub.ReceiveMessage(tctx); err == nil {
		t.Fatalf("notice %q for a lock that was not released", m.Payload)
	}
}

func TestALostLockStillSendsItsReleaseNotice(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client()
	sub := c.Subscribe(ctx, channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	l := lock.New(c, key, fenceKey, time.Second)
	l.NotifyOnRelease(channel, noticeOf)
	lk := obtain(t, l, "a")
	_, stop := lk.Keep(ctx, nil)
	defer stop()
	if err := c.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lk.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the keeper did not find the lock lost")
	}
	stop()
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second) // a hang guard: the notice is sent before Release returns
	defer rcancel()
	m, err := sub.ReceiveMessage(rctx)
	if err != nil || m.Payload != "lost a" {
		t.Fatalf("notice = %v, %v; want lost a", m, err)
	}
}
