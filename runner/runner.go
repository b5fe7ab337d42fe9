// Package runner is the run of DESIGN.md section 2: connect, fast path, downgrade guard, election and
// waiting, holding the lock while tasks run, the fenced record, and the read-only views (status,
// history) and unlock that operators use.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// Runner runs one gate once.
type Runner struct {
	cfg *config.Config
	rdb redis.UniversalClient
	// wdb is the client of every write whose outcome matters (lock, fencing token, progress, record): it
	// never retries on its own (invariant 2).
	wdb    redis.UniversalClient
	keys   keys.Keys
	specs  []tasks.Spec
	log    *slog.Logger
	locker *lock.Locker
	getenv func(string) string
	out    io.Writer
	pause  func(ctx context.Context, point string)

	// Tests only: afterFirstRead runs after the first read of the recorded version, beforeSubscribe
	// after the first look at the lock when it is held, and beforeObtain before the first attempt to
	// take the lock.
	afterFirstRead, beforeSubscribe, beforeObtain func()
}

// Options are the parts of a Runner that are not configuration.
type Options struct {
	// Specs is the task list, already loaded and validated.
	Specs []tasks.Spec
	// Logger receives every log line.
	Logger *slog.Logger
	// Getenv is handed to tasks.
	Getenv func(string) string
	// Out receives the dry-run plan.
	Out io.Writer
	// Pause, when set, is called at the holder's crash points ("before-tasks", "before-record",
	// "after-record") so that fault tests can kill a holder exactly there.
	Pause func(ctx context.Context, point string)
}

// New returns a Runner for a valid configuration. It opens no connection until used.
func New(cfg *config.Config, opt Options) *Runner {
	rdb, wdb := cfg.Redis.NewClient(), cfg.Redis.NewWriteClient()
	k := keys.For(cfg.KeyPrefix, cfg.Name)
	if opt.Getenv == nil {
		opt.Getenv = os.Getenv
	}
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	locker := lock.New(wdb, k.Lock, k.Fence, cfg.LockTTL)
	// A waiter then opens no write connection: only the holder does (fencing token, progress, record).
	locker.ObtainThrough(rdb)
	locker.NotifyOnRelease(k.Events, releaseNotice)
	return &Runner{
		cfg: cfg, rdb: rdb, wdb: wdb, keys: k, specs: opt.Specs, log: opt.Logger, getenv: opt.Getenv, out: opt.Out, pause: opt.Pause,
		locker: locker,
	}
}

// Close closes the Redis connections.
func (r *Runner) Close() error { return errors.Join(r.rdb.Close(), r.wdb.Close()) }

// Keys returns the gate's keys.
func (r *Runner) Keys() keys.Keys { return r.keys }

// Result says how a successful run ended.
type Result struct {
	// Outcome is one of "up-to-date", "recorded", "waited", "downgrade-skipped", "dry-run".
	Outcome  string
	Previous string
}

// Run performs the gate's run. A nil error means the main container may start. Its outcome is also
// written to the termination log when that path exists.
func (r *Runner) Run(ctx context.Context) (res Result, err error) {
	defer func() { r.terminationMessage(res, err) }()
	start := time.Now()
	base := r.log.With("version", r.cfg.Version)
	// Step 2 and 3 at once: the first read of the recorded version is also the connection check.
	recorded, err := r.readVersion(ctx)
	if err != nil {
		return Result{}, err
	}
	// The recorded version may change while waiting or at the double check: elect and hold name it
	// again then, so they get the logger without it (a key given twice is two keys on one JSON line).
	log := base.With("previous_version", recorded)
	if r.afterFirstRead != nil {
		r.afterFirstRead()
	}
	if version.Equal(recorded, r.cfg.Version) && !r.cfg.Force {
		log.Info("version already recorded, nothing to do", "duration_ms", time.Since(start).Milliseconds())
		return Result{Outcome: "up-to-date", Previous: recorded}, nil
	}
	if r.cfg.Force && r.cfg.InKubernetes {
		log.Warn("MAINTENANCE_FORCE is set in a Kubernetes pod: every replica that starts will run the tasks again; use it for one-shot Jobs only")
	}
	if res, done, err := r.guardDowngrade(ctx, log, recorded); done {
		return res, err
	}
	if _, err := r.skips(recorded); err != nil {
		return Result{}, err
	}
	if r.cfg.DryRun {
		return r.plan(ctx, recorded)
	}
	return r.elect(ctx, base, start, recorded)
}

// guardDowngrade applies MAINTENANCE_DOWNGRADE when the recorded version is newer than ours (invariant 4).
// done is true when the run ends here.
func (r *Runner) guardDowngrade(ctx context.Context, log *slog.Logger, recorded string) (Result, bool, error) {
	older, err := r.older(ctx, recorded)
	if err != nil {
		return Result{}, true, redisErr(ctx, "read history for the downgrade guard", err)
	}
	if !older {
		return Result{}, false, nil
	}
	switch r.cfg.Downgrade {
	case config.DowngradeFail:
		log.Error("recorded version is newer, refusing to downgrade", "policy", r.cfg.Downgrade)
		return Result{}, true, fmt.Errorf("%w: recorded version %s is newer than %s (MAINTENANCE_DOWNGRADE=fail)", ErrDowngrade, recorded, r.cfg.Version)
	case config.DowngradeRun:
		log.Warn("recorded version is newer, running the tasks anyway", "policy", r.cfg.Downgrade)
		return Result{}, false, nil
	default:
		log.Warn("recorded version is newer, skipping: an old replica during a rolling update", "policy", r.cfg.Downgrade)
		return Result{Outcome: "downgrade-skipped", Previous: recorded}, true, nil
	}
}

// older reports whether our version is older than the recorded one: by semver when both parse, else by
// history (ours was attempted before the recorded one succeeded: an old replica). Only the slow path reads history.
func (r *Runner) older(ctx context.Context, recorded string) (bool, error) {
	if recorded == "" || version.Equal(r.cfg.Version, recorded) {
		return false, nil
	}
	_, ok1 := version.Parse(r.cfg.Version)
	_, ok2 := version.Parse(recorded)
	if ok1 && ok2 {
		return version.Older(r.cfg.Version, recorded), nil
	}
	entries, err := r.History(ctx, historyMaxLen)
	if err != nil {
		return false, err
	}
	attempts := make([]version.Attempt, 0, len(entries))
	for _, e := range entries {
		attempts = append(attempts, version.Attempt{Version: e.Version, Succeeded: e.Outcome == OutcomeSucceeded})
	}
	return version.OlderByHistory(r.cfg.Version, recorded, attempts), nil
}

// skips evaluates every task's constraints for the upgrade from recorded (invariant 3) and returns the
// reason of each task they skip. A constraint that cannot be evaluated (a version that is not semver) is
// a configuration error, never a skip.
func (r *Runner) skips(recorded string) (map[string]string, error) {
	var errs []error
	out := map[string]string{}
	for _, s := range r.specs {
		ok, reason, err := s.When.Match(recorded, r.cfg.Version)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("task %s: %w", s.Name, err))
		case !ok:
			if reason == "" {
				reason = "constraint not met"
			}
			out[s.Name] = reason
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return out, nil
}

// readVersion reads the recorded version, retrying with capped, jittered exponential backoff until
// MAINTENANCE_CONNECT_TIMEOUT. Refused credentials and an untrusted server certificate fail at once.
func (r *Runner) readVersion(ctx context.Context) (string, error) {
	deadline := time.Now().Add(r.cfg.ConnectTimeout)
	backoff := 100 * time.Millisecond
	// cause is the last error an attempt saw before the deadline cut it short: the final attempt
	// usually ends in "context deadline exceeded", which says nothing about what is wrong.
	var cause error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithDeadline(ctx, deadline)
		v, err := r.rdb.Get(actx, r.keys.Version).Result()
		cancel()
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, redis.Nil):
			return "", nil
		case redisconn.IsAuthError(err):
			return "", fmt.Errorf("%w: %v", ErrAuth, err)
		case redisconn.IsCertificateError(err):
			// The trusted CAs are read once: retrying until the connect timeout could not help, and
			// "unreachable" would send the operator looking at the network instead of REDIS_CA_FILE.
			return "", fmt.Errorf("%w: the TLS certificate of %s is not trusted (check REDIS_CA_FILE and the host name in REDIS_URL): %v",
				ErrConfig, r.cfg.Redis, err)
		case ctx.Err() != nil:
			return "", context.Cause(ctx)
		}
		if perr := permanent("read the recorded version", err); perr != nil {
			return "", perr
		}
		// redis:// to a TLS-only server, or rediss:// to a plain one: a configuration problem that no
		// retry cures, and "unreachable" would not say what is wrong.
		if merr := r.cfg.Redis.TLSMismatch(ctx, err); merr != nil {
			return "", fmt.Errorf("%w: %w (%v)", ErrConfig, merr, err)
		}
		if cause == nil || !errors.Is(err, context.DeadlineExceeded) {
			cause = err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return "", fmt.Errorf("%w: no answer from %s within MAINTENANCE_CONNECT_TIMEOUT=%s: %v", ErrUnreachable, r.cfg.Redis, r.cfg.ConnectTimeout, cause)
		}
		if attempt == 1 || attempt%10 == 0 {
			r.log.Warn("Redis not reachable yet, retrying", "redis", r.cfg.Redis.String(), "attempt", attempt,
				"left_ms", left.Milliseconds(), "err", err)
		}
		sleep := min(jitter(backoff), left)
		backoff = min(backoff*2, 5*time.Second)
		select {
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-time.After(sleep):
		}
	}
}

// crashPoint calls the Pause hook, if any, at a named point of the holder's run.
func (r *Runner) crashPoint(ctx context.Context, point string) {
	if r.pause != nil {
		r.pause(ctx, point)
	}
}
