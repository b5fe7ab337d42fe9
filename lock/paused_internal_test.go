package lock

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A keeper that did not run for longer than the lock allows (the process was paused) says so, rather
// than "no refresh succeeded: <nil>": no refresh was tried.
func TestAKeeperThatDidNotRunSaysSoWithoutNil(t *testing.T) {
	const ttl = 2 * time.Second
	lk := &Lock{locker: &Locker{ttl: ttl}, obtained: time.Now().Add(-5 * time.Second), lostCh: make(chan struct{}), nudge: make(chan struct{}, 1), leaseCh: make(chan struct{})}
	ctx, stop := lk.Keep(context.Background(), slog.New(slog.DiscardHandler))
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(10 * ttl):
		t.Fatal("the keeper did not give the lock up")
	}
	cause := context.Cause(ctx)
	if !errors.Is(cause, ErrLost) || strings.Contains(cause.Error(), "<nil>") || !strings.Contains(cause.Error(), "paused") {
		t.Errorf("cause = %v, want the lock lost because the keeper did not run (paused), without <nil>", cause)
	}
}
