package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/safefile"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// session is the holder's ownership of the lock, from Obtain to release: the keeper, the listener for
// unlock --force, and the release, ended by one Close once the tasks are gone. Every invariant about
// the lock's lifetime is kept here rather than spread over the run.
type session struct {
	lk *lock.Lock
	// ctx is the run under the lock: cancelled by a signal (the parent's cause) or when the lock is lost
	// or the holder is asked to stop (a cause wrapping lock.ErrLost).
	ctx        context.Context
	stopKeeper func()
	stopListen func()
	log        *slog.Logger
	// treeAlive is set when a task's process tree could not be confirmed gone: the lock is then left
	// to expire rather than released, so that no next holder starts beside it at once.
	treeAlive bool
}

// openSession starts keeping the lock just taken, and listening for a stop notice.
func (r *Runner) openSession(ctx context.Context, log *slog.Logger, lk *lock.Lock) *session {
	runCtx, stopKeeper := lk.Keep(ctx, log)
	return &session{lk: lk, ctx: runCtx, stopKeeper: stopKeeper, stopListen: r.listenForStop(ctx, log, lk), log: log}
}

// Close ends the session: it must be called only once the tasks are gone. It stops listening, stops
// the keeper and releases the lock (unless it was lost: then it is someone else's).
func (s *session) Close() {
	s.stopListen()
	s.stopKeeper()
	if s.treeAlive {
		s.log.Error("a task's process tree may still run: the lock is not released, it expires by itself")
		return
	}
	if err := s.lk.Release(s.ctx); err != nil {
		s.log.Warn("could not release the lock; it expires by itself", "err", err)
	}
}

// hold is steps 5 (taken) to 9 under the session's lock: double check, cooldown, fencing token, tasks,
// record. The caller closes the session (release) after it.
func (r *Runner) hold(sess *session, log *slog.Logger, start time.Time, recorded string) (Result, error) {
	ctx, lk := sess.ctx, sess.lk
	target := r.cfg.Version
	v, err := r.rdb.Get(ctx, r.keys.Version).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Result{}, redisErr(ctx, "double-check version", err)
	}
	if version.Equal(v, target) && !r.cfg.Force {
		log.Info("version recorded by another replica meanwhile, releasing the lock")
		return Result{Outcome: "waited", Previous: recorded}, nil
	}
	if v != recorded {
		recorded = v
		if res, done, err := r.guardDowngrade(ctx, log.With("previous_version", recorded), recorded); done {
			return res, err
		}
	}
	// The constraints are evaluated here, under the lock, against the version just read: the only
	// evaluation the tasks follow (invariant 3).
	skips, err := r.skips(recorded)
	if err != nil {
		return Result{}, err
	}
	log = log.With("previous_version", recorded)
	if err := r.checkCooldown(ctx, log); err != nil {
		return Result{}, err
	}
	token, err := lk.Fence(ctx)
	if err != nil {
		return Result{}, redisErr(ctx, "take a fencing token", err)
	}
	log = log.With("holder", r.cfg.Holder, "fencing_token", token)
	runCtx := ctx

	done, err := r.resume(runCtx, log, lk, token)
	if err != nil {
		return Result{}, r.lostOr(runCtx, err)
	}
	log.Info("lock taken, running maintenance", "tasks", len(r.specs), "resumed", len(done))
	r.crashPoint(runCtx, "before-tasks")
	entry := Entry{Version: target, Previous: recorded, Holder: r.cfg.Holder, Pod: r.cfg.Pod, FencingToken: token, Started: lk.Holder.Started}
	env := tasks.Env{FromVersion: recorded, ToVersion: target, FencingToken: token, Getenv: r.getenv, Redis: r.rdb, GateTag: r.keys.Tag,
		LockTTL: r.cfg.LockTTL, LockLost: lk.Lost(), Lease: lk.Lease}
	for i, s := range r.specs {
		if err := r.runTask(runCtx, log, lk, env, i, s, done, skips[s.Name]); err != nil {
			var se *stateError
			if errors.Is(err, tasks.ErrTreeNotGone) {
				sess.treeAlive = true
				err = fmt.Errorf("%w: %w", lock.ErrLost, err)
				log.Error("run stopped, nothing recorded", "task", s.Name, "err", err)
				return Result{}, err
			}
			if errors.Is(err, tasks.ErrLeaseExpired) {
				// The supervisor killed the tree on its own deadline: this process did not run in time
				// (paused, starved), so the lock is no longer surely ours.
				// Also after a signal: the lock outlived by the grace period is what matters now.
				err = fmt.Errorf("%w: task %s: %w", lock.ErrLost, s.Name, err)
				log.Error("run stopped, nothing recorded", "task", s.Name, "err", err)
				return Result{}, err
			}
			if errors.Is(err, tasks.ErrSupervisorKilled) {
				// Killed from outside (the OOM killer, kill -9), its tree killed after it: not the
				// task's failure, so nothing in history and no cooldown for the other replicas.
				log.Error("task's supervisor killed, nothing recorded", "task", s.Name, "err", err)
				return Result{}, fmt.Errorf("%w: task %s: %w", ErrTaskFailed, s.Name, err)
			}
			if runCtx.Err() != nil || errors.As(err, &se) {
				// Stopped (lock lost, signal) or unable to write progress: not the task's fault.
				err = r.lostOr(runCtx, err)
				log.Error("run stopped, nothing recorded", "task", s.Name, "err", err)
				return Result{}, err
			}
			entry.Finished, entry.Outcome, entry.Task, entry.Error = time.Now().UTC(), OutcomeFailed, s.Name, err.Error()
			if ok, rerr := record(runCtx, r.wdb, r.keys, lk, entry); rerr != nil || !ok {
				log.Warn("could not write the failure to history", "err", rerr, "lock_held", ok)
			}
			log.Error("task failed, nothing recorded", "task", s.Name, "err", err)
			return Result{}, &TaskError{Task: s.Name, Err: err}
		}
	}
	r.crashPoint(runCtx, "before-record")
	entry.Finished, entry.Outcome = time.Now().UTC(), OutcomeSucceeded
	ok, err := record(runCtx, r.wdb, r.keys, lk, entry)
	if err != nil && refusal("record", err) == nil {
		// The outcome is unknown (a timeout, a broken connection, the run cancelled while waiting for the
		// reply): the record may have run. Never retried blindly; what Redis holds is the answer. (A
		// refusal is no unknown outcome: Redis ran nothing.)
		ok, err = r.recordedUnder(ctx, log, token, err)
	}
	if err == nil && !ok {
		err = fmt.Errorf("%w: the lock was no longer ours at the record", lock.ErrLost)
	}
	if err != nil {
		log.Error("version not recorded", "err", err)
		return Result{}, r.lostOr(runCtx, err)
	}
	log.Info("maintenance done, version recorded", "duration_ms", time.Since(start).Milliseconds())
	r.crashPoint(runCtx, "after-record")
	return Result{Outcome: "recorded", Previous: recorded}, nil
}

// lostOr returns the run's cancellation cause (lock lost, signal) when there is one, else err wrapped
// as a lost lock: a holder that cannot write its fenced state cannot prove it still holds the lock.
// A refused permission is what it is: a configuration problem.
func (r *Runner) lostOr(runCtx context.Context, err error) error {
	if runCtx.Err() != nil {
		cause := context.Cause(runCtx)
		if errors.Is(cause, lock.ErrRefreshRefused) {
			// Not a lost lock but a Redis that refuses the refresh whatever its state: exit 2.
			if rerr := refusal("refresh the lock", cause); rerr != nil {
				return rerr
			}
		}
		return cause
	}
	if errors.Is(err, lock.ErrLost) {
		return err
	}
	if rerr := refusal("write the gate's state", err); rerr != nil {
		return rerr
	}
	return fmt.Errorf("%w: %w", lock.ErrLost, err)
}

// runTask runs the i-th task unless progress says it is done or its constraints skip it (skip is the
// reason, "" when they do not).
func (r *Runner) runTask(ctx context.Context, log *slog.Logger, lk *lock.Lock, env tasks.Env, i int, s tasks.Spec, done map[string]bool, skip string) error {
	step := fmt.Sprintf("%d/%d", i+1, len(r.specs))
	tlog := log.With("task", s.Name, "step", step)
	if done[s.Name] {
		tlog.Info("task already done in an earlier attempt, skipping")
		return nil
	}
	if skip != "" {
		tlog.Info("task skipped, constraint not met", "reason", skip)
		return nil
	}
	cur, _ := json.Marshal(Current{Step: step, Task: s.Name, Started: time.Now().UTC(), Holder: r.cfg.Holder})
	if err := r.progress(ctx, lk, false, "current", string(cur)); err != nil {
		return err
	}
	tlog.Info("task started", "kind", s.Kind)
	started := time.Now()
	tctx, cancel := context.WithTimeoutCause(ctx, s.Timeout, fmt.Errorf("task timed out after %s", s.Timeout))
	env.Logger = tlog
	err := s.Task.Run(tctx, env)
	if err == nil && tctx.Err() != nil {
		err = context.Cause(tctx)
	}
	cancel()
	if err != nil {
		return err
	}
	tlog.Info("task finished", "duration_ms", time.Since(started).Milliseconds())
	mark, _ := json.Marshal(doneMark{Finished: time.Now().UTC(), FencingToken: env.FencingToken, Digest: s.Digest})
	return r.progress(ctx, lk, false, donePrefix+s.Name, string(mark))
}

// progress writes progress fields, fenced; a lock that is no longer ours is ErrLost. Its errors are
// stateErrors, so that a failed write is never taken for a failed task.
func (r *Runner) progress(ctx context.Context, lk *lock.Lock, reset bool, kv ...string) error {
	ok, err := writeProgress(ctx, r.wdb, r.keys, lk, reset, kv...)
	if err == nil && !ok {
		err = fmt.Errorf("%w: the lock was no longer ours when writing progress", lock.ErrLost)
	}
	if err != nil {
		return &stateError{err: err}
	}
	return nil
}

// stateError is a failure to write the gate's own state while holding the lock.
type stateError struct{ err error }

func (e *stateError) Error() string { return e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

// redisErr classifies a Redis error met while holding the lock before any task ran: the run's own
// cancellation (a signal) when there is one, refused permissions, else Redis unreachable.
func redisErr(ctx context.Context, what string, err error) error {
	switch rerr := refusal(what, err); {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case rerr != nil:
		return rerr
	default:
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, what, err)
	}
}

// resume reads the progress of an earlier attempt for the same target version and returns the tasks
// it finished under their current definition (invariant 7): a task done under another digest runs
// again, and says so. Progress of another version is discarded.
func (r *Runner) resume(ctx context.Context, log *slog.Logger, lk *lock.Lock, token int64) (map[string]bool, error) {
	p, err := r.readProgress(ctx)
	if err != nil {
		return nil, err
	}
	tok := strconv.FormatInt(token, 10)
	if p == nil || !version.Equal(p.Version, r.cfg.Version) || r.cfg.Force {
		return map[string]bool{}, r.progress(ctx, lk, true, "version", r.cfg.Version, "fencing_token", tok)
	}
	done := map[string]bool{} // the tasks done in an earlier attempt, and only those
	for _, s := range r.specs {
		if p.IsDone(s.Name, s.Digest) {
			done[s.Name] = true
		}
	}
	for _, c := range p.changed(r.specs) {
		log.Info("task done in an earlier attempt under another definition: it changed, and runs again",
			"task", c.Task, "done_digest", c.DoneDigest, "digest", c.LoadedDigest)
	}
	return done, r.progress(ctx, lk, false, "fencing_token", tok)
}

// redisTimeScript returns Redis's TIME from the node that holds KEYS[1] (the history stream): on Redis
// Cluster a bare TIME goes to any node (go-redis picks one at random, even in a pipeline after a keyed
// command), whose clock may differ from the one that assigned the stream's entry IDs. It only reads,
// and needs nothing the gate's ACL user lacks (EVAL, TIME).
var redisTimeScript = redis.NewScript(`return redis.call("time")`)

// checkCooldown refuses to run when the last attempt for this version failed less than
// MAINTENANCE_FAILURE_COOLDOWN ago, by Redis's clock: the age of a failure is Redis's TIME now minus the
// milliseconds of the history entry's ID (assigned by the same Redis at XADD), both read in one round
// trip. The entry's "finished" is the failing replica's own clock: a replica running an hour ahead would
// otherwise block every other one for an hour. It stays in history, for people.
// Without a cooldown it still reads the newest entry: a history key of the wrong type must fail the run
// before any task runs, not at the record after all of them.
func (r *Runner) checkCooldown(ctx context.Context, log *slog.Logger) error {
	if r.cfg.FailureCooldown <= 0 {
		if err := r.rdb.XRevRangeN(ctx, r.keys.History, "+", "-", 1).Err(); err != nil {
			return redisErr(ctx, "read history "+r.keys.History, err)
		}
		return nil
	}
	// One pipeline, one round trip, both commands keyed by the history stream: on Redis Cluster, TIME comes
	// from the node that holds the stream and assigned its IDs (a bare TIME may go to any node, whose clock
	// may differ).
	pipe := r.rdb.Pipeline()
	hist := pipe.XRevRangeN(ctx, r.keys.History, "+", "-", 50)
	clock := redisTimeScript.Eval(ctx, pipe, []string{r.keys.History})
	_, _ = pipe.Exec(ctx)
	msgs, err := hist.Result()
	if err != nil {
		return redisErr(ctx, "read history "+r.keys.History, err)
	}
	now, err := redisNow(clock)
	if err != nil {
		return redisErr(ctx, "read the Redis clock (TIME)", err)
	}
	for _, m := range msgs {
		e := entryFromStream(m)
		if !version.Equal(e.Version, r.cfg.Version) {
			continue
		}
		if e.Outcome != OutcomeFailed {
			return nil
		}
		added, ok := entryTime(e.ID)
		if !ok || added.After(now) {
			// An ID that is not <ms>-<seq>, or one in Redis's future (its clock went back, or a failover to
			// a node behind): the failure's age cannot be measured. No cooldown then, rather than a wait of
			// unknown length, which is the safe side here: the cooldown only spares a failing task being
			// run from every replica at once and guards no invariant (every attempt runs under the lock,
			// fenced, resuming from progress; 0 disables it), while refusing would block the upgrade for as
			// long as the clocks disagree, or for good for an ID that never parses, since a refusal writes
			// no newer entry that could end it.
			log.Warn("the newest failure for this version has a history ID not in Redis's past; no failure cooldown applied",
				"history_id", e.ID, "redis_time", now.UTC().Format(time.RFC3339Nano), "holder", e.Holder, "task", e.Task)
			return nil
		}
		if age := now.Sub(added); age < r.cfg.FailureCooldown {
			left := (r.cfg.FailureCooldown - age).Round(time.Second)
			log.Error("an attempt for this version failed recently; not retrying until the failure cooldown has passed",
				"holder", e.Holder, "task", e.Task, "err", e.Error, "failed_at", added.UTC().Format(time.RFC3339Nano),
				"finished", e.Finished.UTC().Format(time.RFC3339Nano), "retry_in", left.String())
			return fmt.Errorf("%w: task %s failed for version %s on %s at %s (Redis's clock): %s (retry in %s, MAINTENANCE_FAILURE_COOLDOWN=%s)",
				ErrTaskFailed, e.Task, e.Version, e.Holder, added.UTC().Format(time.RFC3339), e.Error, left, r.cfg.FailureCooldown)
		}
		return nil
	}
	return nil
}

// redisNow is the reply of redisTimeScript (TIME: seconds, microseconds) as a time.
func redisNow(c *redis.Cmd) (time.Time, error) {
	v, err := c.StringSlice()
	if err != nil {
		return time.Time{}, err
	}
	if len(v) != 2 {
		return time.Time{}, fmt.Errorf("TIME replied %q, want seconds and microseconds", v)
	}
	s, err1 := strconv.ParseInt(v[0], 10, 64)
	us, err2 := strconv.ParseInt(v[1], 10, 64)
	if err1 != nil || err2 != nil || s < 0 || us < 0 || us >= 1e6 {
		return time.Time{}, fmt.Errorf("TIME replied %q, want seconds and microseconds", v)
	}
	return time.Unix(s, us*1000), nil
}

// entryTime is when Redis added a stream entry, by its clock: the milliseconds of the ID <ms>-<seq>.
// ok is false for an ID not of that form.
func entryTime(id string) (time.Time, bool) {
	ms, seq, found := strings.Cut(id, "-")
	if !found {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(ms, "+") {
		return time.Time{}, false
	}
	if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// terminationMessage writes a one-line summary where Kubernetes reads it, when that path exists.
func (r *Runner) terminationMessage(res Result, err error) {
	path := r.cfg.TerminationLog
	if path == "" {
		return
	}
	msg := fmt.Sprintf("version %s: %s (previous %q)", r.cfg.Version, res.Outcome, res.Previous)
	if err != nil {
		msg = fmt.Sprintf("version %s: %v", r.cfg.Version, err)
	}
	// A FIFO there (or anything but a file or a device) would block the exit of a gate that is done.
	werr := safefile.WriteLog(context.Background(), path, []byte(msg+"\n"))
	switch {
	case werr == nil:
	case errors.Is(werr, fs.ErrNotExist), errors.Is(werr, fs.ErrPermission), errors.Is(werr, syscall.EROFS):
		// Outside Kubernetes, or the gate copied into another image run by a user of its own: there is
		// no termination log to write, which is no fault of the run.
		r.log.Debug("no termination log written", "path", path, "err", werr)
	default:
		r.log.Warn("could not write the termination message", "path", path, "err", werr)
	}
}
