package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// waitLogEvery is how often a waiting replica says what it waits for.
const waitLogEvery = 10 * time.Second

// pollInterval is the mean pause between two looks of a waiter at the lock (one PTTL): short enough
// that a lock released without a notice (a holder stopped by a signal) is taken within about a
// second, long enough that a hundred waiters cost Redis little. Waiters are woken at once by the
// completion notice, and a waiter that sees the lock expire before its next look sleeps only until
// then, so that a holder that died is taken over as soon as its lock expires.
func pollInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 100*time.Millisecond), time.Second)
}

func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// elect is step 5: take the lock, or wait for the holder's notice and try again, until
// MAINTENANCE_WAIT_TIMEOUT.
func (r *Runner) elect(ctx context.Context, log *slog.Logger, start time.Time, recorded string) (Result, error) {
	waitCtx, cancel := context.WithTimeout(ctx, r.cfg.WaitTimeout)
	defer cancel()
	var (
		sub       *redis.PubSub
		notices   <-chan *redis.Message
		waitStart time.Time
		lastLog   time.Time
		lastWarn  time.Time
	)
	defer func() {
		if sub != nil {
			_ = sub.Close()
		}
	}()
	interval := pollInterval(r.cfg.LockTTL)
	for {
		holder := lock.Holder{Holder: r.cfg.Holder, Pod: r.cfg.Pod, Version: r.cfg.Version, Started: time.Now().UTC()}
		lk, err := r.locker.Obtain(waitCtx, holder)
		if err == nil {
			if sub != nil {
				_ = sub.Close()
				sub, notices = nil, nil
			}
			sess := r.openSession(ctx, log, lk)
			defer sess.Close()
			return r.hold(sess, log, start, recorded)
		}
		switch perr := permanent("take the lock", err); {
		case ctx.Err() != nil:
			return Result{}, context.Cause(ctx)
		case waitCtx.Err() != nil:
			return Result{}, r.waitTimeout(ctx, waitStart)
		case redisconn.IsAuthError(err):
			return Result{}, fmt.Errorf("%w: %v", ErrAuth, err)
		case perr != nil:
			// A read-only or full Redis, a renamed EVAL: no holder will ever appear, do not wait for one.
			return Result{}, perr
		case !errors.Is(err, lock.ErrNotObtained) && time.Since(lastWarn) >= waitLogEvery:
			// Redis restarting or unreachable while we wait: say so now and then, keep trying.
			lastWarn = time.Now()
			log.Warn("could not try the lock, will retry", "err", err)
		}
		if sub == nil {
			// Subscribe before the re-check below, so that a notice published in between is not missed.
			sub = r.rdb.Subscribe(waitCtx, r.keys.Events)
			if _, err := sub.Receive(waitCtx); err != nil && ctx.Err() == nil && waitCtx.Err() == nil {
				log.Warn("could not subscribe to completion notices, polling only", "err", err)
			}
			notices = redisconn.Messages(sub)
			waitStart = time.Now()
			lastLog = waitStart
			if errors.Is(err, lock.ErrNotObtained) {
				r.logWaiting(waitCtx, log, waitStart, "another replica holds the lock, waiting")
			}
		}
		if !r.cfg.Force {
			v, err := r.rdb.Get(waitCtx, r.keys.Version).Result()
			switch perr := permanent("read the recorded version", err); {
			case err == nil && version.Equal(v, r.cfg.Version):
				log.Info("another replica recorded the version, done", "waited_ms", time.Since(waitStart).Milliseconds())
				return Result{Outcome: "waited", Previous: recorded}, nil
			case err == nil && v != recorded:
				// The recorded version changed while we wait: the downgrade guard and the constraints
				// are evaluated again against it (invariant 3), not against the version read at start.
				recorded = v
				if res, done, err := r.guardDowngrade(waitCtx, log.With("previous_version", recorded), recorded); done {
					return res, err
				}
				if _, err := r.skips(recorded); err != nil {
					return Result{}, err
				}
			case redisconn.IsAuthError(err):
				return Result{}, fmt.Errorf("%w: %v", ErrAuth, err)
			case perr != nil:
				return Result{}, perr
			}
		}
		// Wait until the lock is free, looking at it with one PTTL per poll: trying it (a script) and
		// re-reading the version would cost four commands a poll, for what the notice tells at once.
		ttl := time.Duration(-1) // unknown until the first look
		for waitCtx.Err() == nil {
			sleep := jitter(interval)
			if ttl >= 0 && ttl < sleep {
				sleep = ttl + time.Millisecond // the lock expires first: try it then
			}
			timer := time.NewTimer(sleep)
			select {
			case <-waitCtx.Done():
			case <-timer.C:
			case m := <-notices:
				if res, done, err := r.onNotice(log, m, waitStart, recorded); done {
					timer.Stop()
					return res, err
				}
			}
			timer.Stop()
			if time.Since(lastLog) >= waitLogEvery && waitCtx.Err() == nil {
				lastLog = time.Now()
				r.logWaiting(waitCtx, log, waitStart, "still waiting for the lock holder")
			}
			var err error
			ttl, err = r.rdb.PTTL(waitCtx, r.keys.Lock).Result()
			if err != nil || ttl == -2 { // -2: no lock key, expired or released; an error: let the lock attempt report it
				break
			}
		}
	}
}

// onNotice handles a holder's completion notice. done is true when the wait ends here.
func (r *Runner) onNotice(log *slog.Logger, m *redis.Message, waitStart time.Time, recorded string) (Result, bool, error) {
	if m == nil {
		return Result{}, false, nil
	}
	var n Notice
	if err := json.Unmarshal([]byte(m.Payload), &n); err != nil || !version.Equal(n.Version, r.cfg.Version) {
		return Result{}, false, nil
	}
	switch {
	case n.Event == "recorded" && !r.cfg.Force:
		log.Info("another replica recorded the version, done", "holder", n.Holder, "waited_ms", time.Since(waitStart).Milliseconds())
		return Result{Outcome: "waited", Previous: recorded}, true, nil
	case n.Event == "failed" && r.cfg.FailureCooldown > 0:
		log.Error("the lock holder failed a task for this version; not retrying until the failure cooldown has passed",
			"holder", n.Holder, "task", n.Task, "err", n.Error, "cooldown", r.cfg.FailureCooldown.String())
		return Result{}, true, fmt.Errorf("%w: holder %s failed task %s for version %s: %s (retried after MAINTENANCE_FAILURE_COOLDOWN=%s)",
			ErrTaskFailed, n.Holder, n.Task, n.Version, n.Error, r.cfg.FailureCooldown)
	}
	return Result{}, false, nil
}

// waitTimeout builds the error for a wait that ran out, naming the holder when there is one.
func (r *Runner) waitTimeout(ctx context.Context, waitStart time.Time) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	h, _, err := r.locker.Read(rctx)
	who := "no holder now"
	if err == nil && h != nil {
		who = fmt.Sprintf("holder %s (version %s, since %s)", h.Holder, h.Version, h.Started.Format(time.RFC3339))
	}
	return fmt.Errorf("%w: version %s not recorded within MAINTENANCE_WAIT_TIMEOUT=%s; %s", ErrWaitTimeout, r.cfg.Version, r.cfg.WaitTimeout, who)
}

// logWaiting says who holds the lock, which task it is on and for how long: the init container's
// progress bar in kubectl logs.
func (r *Runner) logWaiting(ctx context.Context, log *slog.Logger, waitStart time.Time, msg string) {
	h, ttl, err := r.locker.Read(ctx)
	if err != nil {
		log.Warn(msg, "err", err, "waited", time.Since(waitStart).Round(time.Second).String())
		return
	}
	if h == nil {
		log.Info(msg, "holder", "", "waited", time.Since(waitStart).Round(time.Second).String())
		return
	}
	cur := r.currentTask(ctx)
	attrs := []any{"holder", h.Holder, "holder_version", h.Version, "held_for", time.Since(h.Started).Round(time.Second).String(),
		"lock_ttl_ms", ttl.Milliseconds(), "waited", time.Since(waitStart).Round(time.Second).String()}
	if h.Pod != "" {
		attrs = append(attrs, "pod", h.Pod)
	}
	if cur != nil {
		attrs = append(attrs, "task", cur.Step+" "+cur.Task, "task_for", time.Since(cur.Started).Round(time.Second).String())
	}
	log.Info(msg, attrs...)
}
