package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// ErrHolderAlive: unlock without --force found a holder that refreshed its lock within the last keeper
// interval (exit 2: the operator asked for what would make two holders).
var ErrHolderAlive = errors.New("runner: the lock holder is alive")

// errStopped is the cause of a run stopped by unlock --force: nothing is recorded, exit 4.
var errStopped = fmt.Errorf("%w: stopped by unlock --force", lock.ErrLost)

// UnlockResult says what unlock found and did.
type UnlockResult struct {
	// Holder is the holder whose lock was removed, nil when the lock was free.
	Holder *lock.Holder
	// Stopped is true when a live holder was asked to stop and released the lock itself.
	Stopped bool
	// Expired is true when the lock went away without being deleted: the holder did not answer and
	// its lock ran out (or the holder released it in the same moment).
	Expired bool
}

// Unlock removes a stuck lock (invariant 5). A lock refreshed within the last keeper interval belongs
// to a live holder: without force Unlock refuses (ErrHolderAlive); with force it publishes a stop
// notice, waits for the holder to stop its tasks and release, and deletes the key only once a full
// TTL has passed without that. A stuck lock (not refreshed lately, or with no TTL) is deleted at once.
// Progress is kept, so the next holder resumes.
func (r *Runner) Unlock(ctx context.Context, force bool) (UnlockResult, error) {
	if _, err := r.readVersion(ctx); err != nil {
		return UnlockResult{}, err
	}
	value, pttl, err := r.locker.ReadValue(ctx)
	if err != nil || value == "" {
		return UnlockResult{}, err
	}
	h := lock.ParseValue(value)
	ttl := time.Duration(h.LockTTLMillis) * time.Millisecond
	res := UnlockResult{Holder: &h}
	// Refreshed within the last keeper interval (TTL/3), with half an interval of slack for a refresh
	// that is late or retried. A lock value without the holder's TTL was not written by a keeper of
	// this version (an older gate, or by hand): it is treated as stuck, as unlock always did.
	alive := ttl > 0 && pttl > ttl/2
	if alive && !force {
		return res, fmt.Errorf("%w: holder %s refreshed its lock %s ago (TTL %s): removing it would let a second holder run beside it; "+
			"use unlock --force to ask it to stop first", ErrHolderAlive, h.Holder, (ttl - pttl).Round(time.Millisecond), ttl)
	}
	if alive {
		res.Stopped, res.Expired, err = r.stopHolder(ctx, h, value, ttl)
		if err != nil || res.Stopped || res.Expired {
			return res, err
		}
	}
	var removed bool
	if alive {
		// The holder did not answer: remove its lock only if it is still the same one.
		removed, err = r.locker.ReleaseIf(ctx, value)
	} else {
		var v string
		v, err = r.locker.ForceRelease(ctx)
		removed = v != ""
	}
	if err != nil {
		return res, err
	}
	res.Expired = !removed
	r.log.Warn("lock force-released", "holder", h.Holder, "holder_version", h.Version)
	return res, nil
}

// stopHolder publishes a stop notice for the holder of value and waits up to one TTL for its lock to go.
// stopped is true when it went while still refreshed (the holder released it); expired when it ran out.
func (r *Runner) stopHolder(ctx context.Context, h lock.Holder, value string, ttl time.Duration) (stopped, expired bool, err error) {
	msg, _ := json.Marshal(Notice{Event: "stop", Version: h.Version, Holder: h.Holder, Started: h.Started})
	if err := r.rdb.Publish(ctx, r.keys.Events, string(msg)).Err(); err != nil {
		return false, false, fmt.Errorf("publish the stop notice: %w", err)
	}
	r.log.Warn("asked the lock holder to stop", "holder", h.Holder, "holder_version", h.Version)
	deadline := time.Now().Add(ttl)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false, false, context.Cause(ctx)
		case <-time.After(pollInterval(ttl)):
		}
		v, _, err := r.locker.ReadValue(ctx)
		if err != nil {
			continue
		}
		if v != value {
			return true, false, nil
		}
	}
	// The holder did not answer for a whole TTL while its lock stayed: delete it (the caller does).
	return false, false, nil
}

// listenForStop makes the holder stop when unlock --force asks it to: its tasks are killed, nothing is
// recorded, and the lock is released once they are gone. The returned function ends the listening.
func (r *Runner) listenForStop(ctx context.Context, log *slog.Logger, lk *lock.Lock) func() {
	// By pattern (the channel's exact name, escaped), so that PUBSUB NUMSUB still counts the waiters only.
	sub := r.rdb.PSubscribe(ctx, globEscape(r.keys.Events))
	if _, err := sub.Receive(ctx); err != nil && ctx.Err() == nil {
		log.Warn("could not listen for unlock --force: a stop notice will not reach this holder", "err", err)
	}
	go func() {
		for m := range sub.Channel() {
			var n Notice
			if json.Unmarshal([]byte(m.Payload), &n) != nil || n.Event != "stop" {
				continue
			}
			if n.Holder == lk.Holder.Holder && n.Started.Equal(lk.Holder.Started) {
				log.Warn("unlock --force asked this holder to stop: stopping the tasks, recording nothing")
				lk.Stop(errStopped)
			}
		}
	}()
	return func() { _ = sub.Close() }
}

// globEscape escapes the glob characters of a channel name, so that it matches only itself as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
