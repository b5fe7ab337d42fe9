package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

func TestUnlockRefusesALiveHolder(t *testing.T) {
	h := newHarness(t)
	started, finish := make(chan struct{}), make(chan struct{})
	r, _ := h.runner([]tasks.Spec{spec("long", func(ctx context.Context, _ tasks.Env) error {
		close(started)
		select {
		case <-finish:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})})
	done := start(context.Background(), r)
	<-started
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), false)
	if !errors.Is(err, ErrHolderAlive) || res.Holder == nil || res.Holder.Holder != "test-holder" {
		t.Fatalf("unlock of a live holder = %+v, %v; want ErrHolderAlive naming it", res, err)
	}
	if !h.exists(h.keys.Lock) {
		t.Fatal("unlock removed a live holder's lock")
	}
	close(finish)
	if out := wait(t, done); out.err != nil || out.res.Outcome != "recorded" {
		t.Fatalf("holder after a refused unlock: %+v, %v", out.res, out.err)
	}
}

func TestUnlockForceStopsTheHolderAndWaitsForItsRelease(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	ttl := 2 * time.Second
	// A task that ignores SIGTERM, with a grace period far longer than the test: only SIGKILL stops it.
	r, logs := h.runner([]tasks.Spec{stubbornTask(t, dir, 60*ttl)})
	done := start(context.Background(), r)
	waitStarted(t, dir)
	redistest.Eventually(t, 10*time.Second, func() bool { return h.rdb.PubSubNumPat(context.Background()).Val() >= 1 }, "the holder does not listen for a stop notice")
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), true)
	if err != nil || !res.Stopped || res.Holder == nil {
		t.Fatalf("unlock --force = %+v, %v; want the holder stopped\n%s", res, err, logs)
	}
	out := wait(t, done)
	if !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("stopped holder: %v, want lock lost (exit 4)", out.err)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Version) || len(h.history()) != 0 {
		t.Error("lock left, version recorded or history written by a stopped holder")
	}
}

func TestUnlockRemovesAStuckLockAtOnce(t *testing.T) {
	h := newHarness(t)
	// A holder that died: its lock (TTL 2s) was last refreshed long ago, only a little is left.
	v := `othertoken00000000000000{"holder":"dead-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":60000}`
	if err := h.rdb.Set(context.Background(), h.keys.Lock, v, 20*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), false)
	if err != nil || res.Holder == nil || res.Holder.Holder != "dead-pod" || h.exists(h.keys.Lock) {
		t.Fatalf("unlock of a stuck lock = %+v, %v; lock exists %t", res, err, h.exists(h.keys.Lock))
	}
}

func TestGlobEscapeMatchesOnlyTheChannel(t *testing.T) {
	if got := globEscape(`{a*b?}[c]\d`); got != `{a\*b\?}\[c\]\\d` {
		t.Errorf("globEscape = %q", got)
	}
}
