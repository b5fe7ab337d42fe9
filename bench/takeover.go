package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// takeoverRun is one takeover: a holder SIGKILLed while it holds the lock, a waiter that records.
type takeoverRun struct {
	record  time.Duration // from the kill to the waiter's record (history "finished")
	exit    time.Duration // from the kill to the waiter's exit
	ttlLeft time.Duration // the lock's remaining TTL just before the kill
	failed  bool          // the waiter exited non-zero
	history int
}

// takeoverResult is figure 3.
type takeoverResult struct {
	ttl  time.Duration
	runs []takeoverRun
}

func (r *takeoverResult) records() (s sample) {
	for _, run := range r.runs {
		s = append(s, ms(run.record))
	}
	return s
}

// benchTakeover starts a holder that stops at the crash point "before-tasks" (it holds the lock and
// its keeper refreshes it), starts a waiter, SIGKILLs the holder once the waiter waits, and times the
// waiter's record.
func benchTakeover(ctx context.Context, b *binaries, srv *redisServer, dir string, runs int, ttl time.Duration) (*takeoverResult, error) {
	res := &takeoverResult{ttl: ttl}
	for i := range runs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		run, err := takeoverOnce(ctx, b, srv, filepath.Join(dir, "paused-"+strconv.Itoa(i)), ttl)
		if err != nil {
			return nil, fmt.Errorf("takeover %d: %w", i+1, err)
		}
		res.runs = append(res.runs, *run)
	}
	return res, nil
}

func takeoverOnce(ctx context.Context, b *binaries, srv *redisServer, pauseFile string, ttl time.Duration) (*takeoverRun, error) {
	if err := srv.reset(ctx); err != nil {
		return nil, err
	}
	if err := srv.client.Set(ctx, gateKeys.Version, "1.0.0", 0).Err(); err != nil {
		return nil, err
	}
	env := []string{"PEERDB_DEPLOYMENT_VERSION=2.0.0", "REDIS_URL=" + srv.url(), "MAINTENANCE_LOCK_TTL=" + ttl.String()}
	holder, err := startProc(b.faults, append(env, "MAINTENANCE_HOLDER=holder-a",
		"MAINTENANCE_TEST_PAUSE_AT=before-tasks", "MAINTENANCE_TEST_PAUSE_FILE="+pauseFile), "--", "true")
	if err != nil {
		return nil, err
	}
	defer holder.kill()
	if err := await(ctx, 20*time.Second, func() bool { _, err := os.Stat(pauseFile); return err == nil }); err != nil {
		return nil, fmt.Errorf("the holder never reached before-tasks: %w\n%s", err, holder.stderr)
	}
	waiter, err := startProc(b.gate, append(env, "MAINTENANCE_HOLDER=holder-b"), "--", "true")
	if err != nil {
		return nil, err
	}
	defer waiter.kill()
	if err := await(ctx, 20*time.Second, func() bool { return waiter.stderr.has("another replica holds the lock, waiting") }); err != nil {
		return nil, fmt.Errorf("the waiter never started waiting: %w\n%s", err, waiter.stderr)
	}
	pttl, _ := srv.client.PTTL(ctx, gateKeys.Lock).Result()
	killed := time.Now()
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, err
	}
	if err := waiter.wait(ctx, 3*ttl+30*time.Second); err != nil {
		return nil, err
	}
	run := &takeoverRun{exit: waiter.ended.Sub(killed), ttlLeft: pttl, failed: waiter.code != 0}
	if run.failed {
		return run, nil
	}
	recorded, entries, err := recordTime(ctx, srv)
	run.history = entries
	if err != nil {
		return nil, err
	}
	run.record = recorded.Sub(killed)
	return run, nil
}

// await polls cond every 5 ms until it holds.
func await(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return errors.New("timed out")
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
