package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// backoff spaces the retries of a task: capped exponential with jitter.
type backoff struct {
	initial, max time.Duration
}

var defaultBackoff = backoff{initial: 250 * time.Millisecond, max: 10 * time.Second}

// delay returns the wait before retry n (1-based): a random duration in [d/2, d], d doubling up to max.
func (b backoff) delay(n int) time.Duration {
	d := b.initial
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	return d/2 + rand.N(d/2+1)
}

// retry calls attempt until it succeeds, fails for good (again false), or ctx is done. It returns the
// number of attempts. When ctx ends the retries, the error carries ctx's cause and the last failure.
func (b backoff) retry(ctx context.Context, log *slog.Logger, attempt func() (again bool, err error)) (int, error) {
	var last error // the last failure not caused by ctx
	for n := 1; ; n++ {
		again, err := attempt()
		if err == nil {
			return n, nil
		}
		if expired(ctx) {
			// This attempt was most likely cut short by ctx (some clients report that as an i/o
			// timeout): the previous failure says more about why the task never got through.
			if last == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				last = err
			}
			return n, stopped(ctx, n, last)
		}
		if !again {
			return n, err
		}
		last = err
		d := max(b.delay(n), httpcall.WaitAtLeast(err))
		log.Warn("attempt failed, retrying", "attempt", n, "retry_in_ms", d.Milliseconds(), "err", err)
		if sleep(ctx, d) != nil {
			return n, stopped(ctx, n, last)
		}
	}
}

// stopped reports that ctx ended a task after n attempts: the cause, so that errors.Is finds it, then
// the last failure, if any.
func stopped(ctx context.Context, n int, last error) error {
	cause := context.Cause(ctx)
	if last == nil {
		return fmt.Errorf("stopped after %d attempt(s): %w", n, cause)
	}
	return fmt.Errorf("stopped after %d attempt(s): %w; last attempt: %v", n, cause, last)
}

// expired reports whether ctx is done. A socket deadline taken from ctx can fire a moment before ctx
// itself is marked done: once the deadline has passed, expired waits for ctx to catch up, so that
// context.Cause(ctx) is set when it returns true.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		<-ctx.Done()
		return true
	}
	return false
}

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
