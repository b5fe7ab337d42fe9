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

// pollInterval is the mean pause before a waiter tries again after Redis did not answer a look at the
// lock, and how often unlock looks at a lock it waits for.
func pollInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 100*time.Millisecond), time.Second)
}

func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// expiryGrace is how long after the lock's expiry, as last read, a waiter looks at it again: a little,
// and spread, so that many waiters do not all look at the same moment.
func expiryGrace(ttl time.Duration) time.Duration {
	return time.Millisecond + rand.N(min(ttl/20, 100*time.Millisecond)+1)
}

// elect is step 5: take the lock, or wait for the holder's notice and try again, until
// MAINTENANCE_WAIT_TIMEOUT. A replica looks at the lock before it tries it: a lock already held is not
// tried (an attempt is a script of three commands, a look one), and a lock found free is tried at once,
// without a subscription. A replica that is to wait subscribes to the notices and then reads the
// version and the lock again, so that a notice published after its look is not missed. A waiter reads
// the lock's TTL and sleeps until it would expire, unless a notice comes first: every way a holder gives
// the lock up publishes one (recorded, failed, released, lost), and a notice lost on the way costs one
// expiry, never the wait timeout. Its only other reads are the progress line every 10s, which also
// serves as a look at the lock.
func (r *Runner) elect(ctx context.Context, log *slog.Logger, start time.Time, recorded string) (Result, error) {
	waitCtx, cancel := context.WithTimeout(ctx, r.cfg.WaitTimeout)
	defer cancel()
	var (
		sub     *redis.PubSub
		notices <-chan *redis.Message
		again   <-chan struct{}
	)
	defer func() {
		if sub != nil {
			_ = sub.Close()
		}
	}()
	waitStart := time.Now()
	lastLog, lastWarn := waitStart, time.Time{}
	// The re-check of the version and the first look at the lock in one read. Its progress line is
	// written once a lock is seen held: a replica that finds the lock free takes it without one.
	l := r.firstLook(waitCtx)
	logged := l.holder != nil
	if logged {
		r.logLook(log, waitStart, l)
	}
	for {
		if v, verr := l.v, l.verr; !r.cfg.Force {
			switch rerr := refusal("read the recorded version", verr); {
			case verr == nil && version.Equal(v, r.cfg.Version):
				log.Info("another replica recorded the version, done", "waited_ms", time.Since(waitStart).Milliseconds())
				return Result{Outcome: "waited", Previous: recorded}, nil
			case verr == nil && v != recorded:
				// The recorded version changed while we wait: the downgrade guard and the constraints
				// are evaluated again against it (invariant 3), not against the version read at start.
				recorded = v
				if res, done, err := r.guardDowngrade(waitCtx, log.With("previous_version", recorded), recorded); done {
					return res, err
				}
				if _, err := r.skips(recorded); err != nil {
					return Result{}, err
				}
			case rerr != nil:
				return Result{}, rerr
			}
		}
		if sub == nil && (l.lerr != nil || l.ttl != -2) {
			// About to wait: subscribe, then look again, so that what changed before the subscription
			// is read and what changes after it is announced.
			if r.beforeSubscribe != nil {
				r.beforeSubscribe()
			}
			sub, notices, again = r.subscribe(ctx, waitCtx, log)
			l = r.recheck(waitCtx, l)
			continue
		}
		// At once when the look found no lock; else at its expiry, a notice, or a new subscription.
		res, done, err := r.waitForLock(waitCtx, log, notices, again, waitStart, &lastLog, recorded, l.ttl, l.lerr)
		if done {
			return res, err
		}
		if r.beforeObtain != nil {
			r.beforeObtain()
			r.beforeObtain = nil
		}
		holder := lock.Holder{Holder: r.cfg.Holder, Pod: r.cfg.Pod, Version: r.cfg.Version, Started: time.Now().UTC()}
		lk, err := r.locker.Obtain(waitCtx, holder)
		if err == nil {
			if sub != nil {
				_ = sub.Close()
				sub, notices, again = nil, nil, nil
			}
			sess := r.openSession(ctx, log, lk)
			defer sess.Close()
			return r.hold(sess, log, start, recorded)
		}
		switch rerr := refusal("take the lock", err); {
		case ctx.Err() != nil:
			return Result{}, context.Cause(ctx)
		case waitCtx.Err() != nil:
			return Result{}, r.waitTimeout(ctx, waitStart)
		case rerr != nil:
			// Refused credentials, a read-only or full Redis, a renamed EVAL: no holder will ever appear,
			// do not wait for one.
			return Result{}, rerr
		case !errors.Is(err, lock.ErrNotObtained) && time.Since(lastWarn) >= waitLogEvery:
			// Redis restarting or unreachable while we wait: say so now and then, keep trying.
			lastWarn = time.Now()
			log.Warn("could not try the lock, will retry", "err", err)
		}
		switch {
		case errors.Is(err, lock.ErrNotObtained) && !logged:
			// Another replica took the lock first: the first progress line, with what it holds.
			l, logged = r.firstLook(waitCtx), true
			r.logLook(log, waitStart, l)
		default:
			l = look{}
			if !r.cfg.Force {
				l.v, l.verr = r.rdb.Get(waitCtx, r.keys.Version).Result()
			}
			l.ttl, l.lerr = r.rdb.PTTL(waitCtx, r.keys.Lock).Result()
		}
	}
}

// look is what a replica read before it waits or tries the lock: the recorded version (v, or verr) and
// the lock's TTL (ttl, -2 for no lock, or lerr). The first look also reads the holder and its task.
type look struct {
	v      string
	verr   error
	ttl    time.Duration
	lerr   error
	value  string    // the lock's value as read, "" for none
	at     time.Time // when the look was sent: its ttl counts from then
	holder *lock.Holder
	cur    *Current
}

// firstLook reads the recorded version and the lock in one MGET (both keys share the gate's hash tag),
// the lock's remaining TTL and the holder's current task, in one round trip. Its ttl is what is left
// of the lock: a waiter that arrives when a holder that died without a notice has little left takes
// the lock when it expires, not a whole TTL (or a progress interval) later.
func (r *Runner) firstLook(ctx context.Context) look {
	var mget *redis.SliceCmd
	var cur *redis.StringCmd
	var pttl *redis.DurationCmd
	// A missing current task is redis.Nil, which Pipelined returns: each command's own error is read.
	at := time.Now()
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		mget = p.MGet(ctx, r.keys.Version, r.keys.Lock)
		pttl = p.PTTL(ctx, r.keys.Lock)
		cur = p.HGet(ctx, r.keys.Progress, "current")
		return nil
	})
	if err := mget.Err(); err != nil {
		return look{verr: err, lerr: err}
	}
	vals := mget.Val()
	l := look{ttl: -2, at: at}
	var ok bool
	if l.v, ok = vals[0].(string); !ok {
		l.verr = redis.Nil
	}
	lv, _ := vals[1].(string)
	if lv == "" {
		return l
	}
	h := lock.ParseValue(lv)
	l.value, l.holder, l.cur = lv, &h, parseCurrent(cur.Val())
	if l.ttl, l.lerr = pttl.Result(); l.lerr != nil {
		l.ttl = 0
	}
	return l
}

// recheck reads the version and the lock again in one MGET, after the subscription that follows look
// prev. The same lock keeps the expiry prev read, counted from when prev was sent: the subscription may
// have taken long (a stalled network), and the lock's TTL ran down meanwhile (refreshes only move the
// expiry later: the waiter looks again then). Another lock's TTL is read after a moment; no lock is
// tried at once.
func (r *Runner) recheck(ctx context.Context, prev look) look {
	vals, err := r.rdb.MGet(ctx, r.keys.Version, r.keys.Lock).Result()
	if err != nil {
		return look{verr: err, lerr: err}
	}
	l := look{ttl: -2}
	var ok bool
	if l.v, ok = vals[0].(string); !ok {
		l.verr = redis.Nil
	}
	switch l.value, _ = vals[1].(string); {
	case l.value == "":
	case l.value == prev.value && prev.lerr == nil && prev.ttl >= 0:
		l.ttl = max(prev.ttl-time.Since(prev.at), 0)
	case l.value == prev.value && prev.lerr == nil:
		l.ttl = prev.ttl // no expiry
	default:
		l.ttl = 0
	}
	return l
}

// logLook writes the first progress line of a wait from a first look.
func (r *Runner) logLook(log *slog.Logger, waitStart time.Time, l look) {
	const msg = "another replica holds the lock, waiting"
	switch {
	case l.lerr != nil && l.holder == nil:
		log.Warn(msg, "err", l.lerr, "waited", time.Since(waitStart).Round(time.Second).String())
	case l.holder == nil:
		log.Info(msg, "holder", "", "waited", time.Since(waitStart).Round(time.Second).String())
	default:
		ttl := l.ttl
		if l.lerr != nil {
			ttl = -1
		}
		r.logHolder(log, msg, waitStart, *l.holder, ttl, l.cur)
	}
}

// subscribe listens for the holders' notices. When the subscription cannot be confirmed, the waiter
// relies on its looks at the lock alone. again receives when the subscription was made again on a new
// connection (a Redis restart, a failover): the notices published meanwhile are lost, and a Redis that
// restarted empty has forgotten the lock, so the waiter looks at it then rather than at its expiry as
// read, up to a whole TTL later.
func (r *Runner) subscribe(ctx, waitCtx context.Context, log *slog.Logger) (*redis.PubSub, <-chan *redis.Message, <-chan struct{}) {
	sub := r.rdb.Subscribe(waitCtx, r.keys.Events)
	if err := redisconn.Confirm(waitCtx, sub); err != nil && ctx.Err() == nil && waitCtx.Err() == nil {
		log.Warn("could not subscribe to completion notices, polling only", "err", err)
	}
	again := make(chan struct{}, 1)
	return sub, redisconn.Messages(sub, func() {
		select {
		case again <- struct{}{}:
		default:
		}
	}), again
}

// waitForLock waits until the lock may be free: a release notice, the lock's expiry as last read (ttl,
// from a look that failed with lerr), or a subscription made again (again: notices may have been lost),
// whichever comes first. It returns (done) when a notice ends the wait, else when it is time to try the
// lock again.
func (r *Runner) waitForLock(ctx context.Context, log *slog.Logger, notices <-chan *redis.Message, again <-chan struct{}, waitStart time.Time,
	lastLog *time.Time, recorded string, ttl time.Duration, lerr error) (Result, bool, error) {
	for ctx.Err() == nil {
		var sleep time.Duration
		switch {
		case lerr != nil:
			// Redis did not answer: pause, then let the lock attempt report it.
			sleep = jitter(pollInterval(r.cfg.LockTTL))
		case ttl == -2:
			return Result{}, false, nil // no lock key: expired or released
		case ttl < 0:
			// A lock without expiry (set by hand): only a notice or an operator frees it.
			sleep = jitter(r.cfg.LockTTL)
		default:
			sleep = ttl + expiryGrace(r.cfg.LockTTL)
		}
		logDue := false
		if untilLog := waitLogEvery - time.Since(*lastLog); untilLog < sleep {
			sleep, logDue = max(untilLog, 0), true
		}
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-again:
			logDue = false // a look at the lock now, as at its expiry
		case m, ok := <-notices:
			if !ok {
				notices = nil
				break
			}
			res, done, wake, err := r.onNotice(log, m, waitStart, recorded)
			if done || wake {
				timer.Stop()
				return res, done, err
			}
			timer.Stop()
			continue // the lock's expiry is still as read
		}
		timer.Stop()
		switch {
		case ctx.Err() != nil:
		case lerr != nil:
			return Result{}, false, nil
		case logDue:
			*lastLog = time.Now()
			ttl, lerr = r.logWaiting(ctx, log, waitStart, "still waiting for the lock holder")
		default:
			ttl, lerr = r.rdb.PTTL(ctx, r.keys.Lock).Result()
		}
	}
	return Result{}, false, nil
}

// onNotice handles a holder's notice. done is true when the wait ends here; wake when the lock was
// given up and is worth trying at once.
func (r *Runner) onNotice(log *slog.Logger, m *redis.Message, waitStart time.Time, recorded string) (Result, bool, bool, error) {
	var n Notice
	if err := json.Unmarshal([]byte(m.Payload), &n); err != nil {
		return Result{}, false, false, nil
	}
	if n.Event == "released" {
		// Whoever held the lock, for whichever version: it is free now, or someone else's already.
		return Result{}, false, true, nil
	}
	if !version.Equal(n.Version, r.cfg.Version) {
		return Result{}, false, false, nil
	}
	switch {
	case n.Event == "recorded" && !r.cfg.Force:
		log.Info("another replica recorded the version, done", "holder", n.Holder, "waited_ms", time.Since(waitStart).Milliseconds())
		return Result{Outcome: "waited", Previous: recorded}, true, false, nil
	case n.Event == "failed" && r.cfg.FailureCooldown > 0:
		log.Error("the lock holder failed a task for this version; not retrying until the failure cooldown has passed",
			"holder", n.Holder, "task", n.Task, "err", n.Error, "cooldown", r.cfg.FailureCooldown.String())
		return Result{}, true, false, fmt.Errorf("%w: holder %s failed task %s for version %s: %s (retried after MAINTENANCE_FAILURE_COOLDOWN=%s)",
			ErrTaskFailed, n.Holder, n.Task, n.Version, n.Error, r.cfg.FailureCooldown)
	}
	return Result{}, false, false, nil
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
// progress bar in kubectl logs. It returns the lock's TTL as read (-2 when there is no lock), so that
// the line is also a look at the lock.
func (r *Runner) logWaiting(ctx context.Context, log *slog.Logger, waitStart time.Time, msg string) (time.Duration, error) {
	v, ttl, err := r.locker.ReadValue(ctx)
	if err != nil {
		log.Warn(msg, "err", err, "waited", time.Since(waitStart).Round(time.Second).String())
		return 0, err
	}
	if v == "" {
		log.Info(msg, "holder", "", "waited", time.Since(waitStart).Round(time.Second).String())
		return -2, nil
	}
	r.logHolder(log, msg, waitStart, lock.ParseValue(v), ttl, r.currentTask(ctx))
	return ttl, nil
}

// logHolder writes a progress line about holder h; ttl is the lock's remaining TTL, negative when not read.
func (r *Runner) logHolder(log *slog.Logger, msg string, waitStart time.Time, h lock.Holder, ttl time.Duration, cur *Current) {
	attrs := []any{"holder", h.Holder, "holder_version", h.Version, "held_for", time.Since(h.Started).Round(time.Second).String(),
		"waited", time.Since(waitStart).Round(time.Second).String()}
	if ttl >= 0 {
		attrs = append(attrs, "lock_ttl_ms", ttl.Milliseconds())
	}
	if h.Pod != "" {
		attrs = append(attrs, "pod", h.Pod)
	}
	if cur != nil {
		attrs = append(attrs, "task", cur.Step+" "+cur.Task, "task_for", time.Since(cur.Started).Round(time.Second).String())
	}
	log.Info(msg, attrs...)
}
