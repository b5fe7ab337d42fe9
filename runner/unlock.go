package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// ErrHolderAlive: unlock without --force found a holder that refreshed its lock within the last keeper
// interval (exit 2: the operator asked for what would make two holders).
var ErrHolderAlive = errors.New("runner: the lock holder is alive")

// errStopped is the cause of a run stopped by unlock --force: nothing is recorded, exit 4.
var errStopped = fmt.Errorf("%w: stopped by unlock --force", lock.ErrLost)

// afterLockRead, when set (by tests only), runs between unlock's read of the lock and its delete.
var afterLockRead func()

// UnlockResult says what unlock found and did.
type UnlockResult struct {
	// Holder is the holder whose lock was found, nil when the lock was free.
	Holder *lock.Holder
	// Stopped is true when a holder was asked to stop and released the lock itself.
	Stopped bool
	// Expired is true when the lock went away without being deleted: it ran out on its own.
	Expired bool
	// Removed is true when unlock deleted the lock: only a lock with no expiry, which would never go.
	Removed bool
}

// Unlock removes a stuck lock without ever making two holders (invariant 5). A lock with an expiry is
// never deleted: while its holder is alive (refreshed within the last keeper interval, TTL/3) Unlock
// refuses (ErrHolderAlive) unless force; otherwise it waits for the lock to run out on its own, and
// refuses after all if the holder refreshes it meanwhile (its refresh was late, not dead). With force it
// first asks the holder to stop (the stop key, then a notice) and waits for it to release; a holder that
// keeps refreshing without answering is refused too, since deleting its lock would let a second holder
// run beside it. Only a lock with no expiry is deleted at once, and only while it still holds the value read.
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
	res := UnlockResult{Holder: &h}
	if pttl < 0 {
		// No expiry: no keeper wrote it so (by hand, or a PERSIST), and it would never go by itself.
		if afterLockRead != nil {
			afterLockRead()
		}
		// Only the lock that was read, never whoever holds it now.
		res.Removed, err = r.locker.ReleaseIf(ctx, value)
		if err != nil {
			return res, err
		}
		res.Expired = !res.Removed
		if res.Removed {
			r.log.Warn("lock without expiry removed", "holder", h.Holder, "holder_version", h.Version)
		}
		return res, nil
	}
	ttl := time.Duration(h.LockTTLMillis) * time.Millisecond
	// A lock value without the holder's TTL was not written by a keeper of this version: whether its
	// holder is alive shows only in the wait below.
	if ttl > 0 && pttl >= ttl-ttl/3 && !force {
		return res, fmt.Errorf("%w: holder %s refreshed its lock %s ago (TTL %s): removing it would let a second holder run beside it; "+
			"use unlock --force to ask it to stop first", ErrHolderAlive, h.Holder, (ttl - pttl).Round(time.Millisecond), ttl)
	}
	var acks <-chan *redis.Message
	if force {
		sub := r.rdb.PSubscribe(ctx, globEscape(r.keys.Events))
		defer sub.Close()
		if err := redisconn.Confirm(ctx, sub); err == nil {
			acks = redisconn.Messages(sub, nil)
		}
		// The request in the stop key first (read by the holder every keeper interval), then the notice.
		if err := r.rdb.Set(ctx, r.keys.Stop, value, 2*max(ttl, pttl)+time.Second).Err(); err != nil {
			return res, fmt.Errorf("write the stop request: %w", err)
		}
		msg, _ := json.Marshal(Notice{Event: "stop", Version: h.Version, Holder: h.Holder, Started: h.Started})
		if err := r.rdb.Publish(ctx, r.keys.Events, string(msg)).Err(); err != nil {
			return res, fmt.Errorf("publish the stop notice: %w", err)
		}
		r.log.Warn("asked the lock holder to stop", "holder", h.Holder, "holder_version", h.Version)
	} else {
		r.log.Warn("the lock holder has not refreshed lately: waiting for its lock to expire on its own",
			"holder", h.Holder, "holder_version", h.Version, "expires_in_ms", pttl.Milliseconds())
	}
	res.Stopped, res.Expired, err = r.waitForLockToGo(ctx, h, value, pttl, ttl, force, acks)
	return res, err
}

// waitForLockToGo waits until the lock no longer holds value, deleting nothing. stopped is true when it
// went before its expiry (the holder released it), expired when it ran out. A refresh seen meanwhile
// (the PTTL went back up) means the holder is alive: ErrHolderAlive, unless the holder answered the stop
// request (acks, or the stop key), in which case it is winding its tasks down and is given one more TTL
// to release; with force, a refresh within the first keeper interval is not yet a refusal to answer.
func (r *Runner) waitForLockToGo(ctx context.Context, h lock.Holder, value string, pttl, ttl time.Duration, force bool, acks <-chan *redis.Message) (stopped, expired bool, err error) {
	poll := pollInterval(ttl)
	prev, seen := pttl, time.Now()
	expiresAt := seen.Add(pttl)
	deadline := expiresAt.Add(time.Second + poll)
	acked := false
	// A holder that cannot hear the notice reads the stop key within one keeper interval: a refresh before
	// then is not yet a refusal to answer.
	answerBy := seen.Add(ttl/3 + poll)
	for {
		select {
		case <-ctx.Done():
			return false, false, context.Cause(ctx)
		case m, ok := <-acks:
			if !ok {
				acks = nil
			} else if isAck(m, h) {
				acked = true
				deadline = time.Now().Add(max(ttl, pttl) + time.Second + poll)
			}
			continue
		case <-time.After(max(min(poll, time.Until(expiresAt)+5*time.Millisecond), time.Millisecond)):
		}
		v, p, err := r.locker.ReadValue(ctx)
		now := time.Now()
		switch {
		case err != nil && now.After(deadline):
			return false, false, err
		case err != nil:
			continue
		case v != value:
			stopped = force && now.Before(expiresAt)
			return stopped, !stopped, nil
		case force && !acked && r.rdb.Get(ctx, r.keys.Stop).Val() == stoppingPrefix+value:
			acked = true
			deadline = now.Add(max(ttl, p) + time.Second + poll)
		case p > prev && !acked && force && now.Before(answerBy):
			deadline = now.Add(p + time.Second + poll)
		case p > prev && !acked:
			if force {
				return false, false, fmt.Errorf("%w: holder %s refreshed its lock but answered neither the stop notice on %s nor the stop request in %s "+
					"within a keeper interval (an older gate? permissions missing?): its lock is left in place, since deleting it would let a second holder run beside it",
					ErrHolderAlive, h.Holder, r.keys.Events, r.keys.Stop)
			}
			return false, false, fmt.Errorf("%w: holder %s refreshed its lock while unlock waited for it to expire (its refresh was late, it is not dead): "+
				"use unlock --force to ask it to stop first", ErrHolderAlive, h.Holder)
		case p < 0 || now.After(deadline):
			return false, false, fmt.Errorf("%w: the lock of holder %s is still there (remaining TTL %s): nothing deleted", ErrHolderAlive, h.Holder, p)
		}
		prev, expiresAt = p, now.Add(p)
	}
}

// isAck reports whether m is holder h's answer to a stop notice.
func isAck(m *redis.Message, h lock.Holder) bool {
	var n Notice
	return json.Unmarshal([]byte(m.Payload), &n) == nil && n.Event == "stopping" && n.Holder == h.Holder && n.Started.Equal(h.Started)
}

// stoppingPrefix marks the holder's answer in the stop key: "stopping:" + its lock value.
const stoppingPrefix = "stopping:"

// listenForStop makes the holder stop when unlock --force asks it to: its tasks are killed, nothing is
// recorded, and the lock is released once they are gone. The request comes as a notice on the events
// channel (at once) and in the stop key, read every keeper interval, for a holder that cannot hear the
// notice (neither PSUBSCRIBE nor SUBSCRIBE permission, a reconnect). The holder answers both ways. The
// returned function ends the listening.
func (r *Runner) listenForStop(ctx context.Context, log *slog.Logger, lk *lock.Lock) func() {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			log.Warn("unlock --force asked this holder to stop: stopping the tasks, recording nothing")
			lk.Stop(errStopped)
			// The answer: unlock then knows that refreshes until the release are the wind-down.
			bg := context.WithoutCancel(ctx)
			ack, _ := json.Marshal(Notice{Event: "stopping", Version: lk.Holder.Version, Holder: lk.Holder.Holder, Started: lk.Holder.Started})
			_ = r.rdb.Publish(bg, r.keys.Events, string(ack)).Err()
			_ = r.rdb.Set(bg, r.keys.Stop, stoppingPrefix+lk.Value(), 2*r.cfg.LockTTL).Err()
		})
	}
	// By pattern first (the channel's exact name, escaped), so that PUBSUB NUMSUB counts the waiters only.
	// Redis checks a PSUBSCRIBE pattern literally against the user's channel rules, so the documented
	// user (`&{peerdb:maintenance:*}*`) is refused it (NOPERM): the holder then subscribes to the channel
	// by name, which the rule allows. Without a subscription it would hear no notice and, worse, miss the
	// look at the lock when its connection is made again (below).
	sub := r.rdb.PSubscribe(ctx, globEscape(r.keys.Events))
	err := redisconn.Confirm(ctx, sub)
	if err != nil && ctx.Err() == nil && redisconn.Classify(err) == redisconn.Refused {
		log.Debug("PSUBSCRIBE refused: listening for unlock --force's notice with SUBSCRIBE instead", "err", err)
		_ = sub.Close()
		sub = r.rdb.Subscribe(ctx, r.keys.Events)
		err = redisconn.Confirm(ctx, sub)
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("could not listen for unlock --force's notice: its stop request is read every keeper interval instead", "err", err)
	}
	go func() {
		// A dropped connection (a Redis restart, a failover) is a reason to look at the lock as soon as
		// the subscription is made again rather than at the next refresh (up to TTL/3 later): a Redis
		// that restarted empty has forgotten it, and the tree must be killed before another holder's
		// task starts beside it.
		reconnected := func() {
			log.Warn("the connection to Redis dropped and was made again: checking the lock now")
			lk.CheckNow()
		}
		for m := range redisconn.Messages(sub, reconnected) {
			var n Notice
			if json.Unmarshal([]byte(m.Payload), &n) == nil && n.Event == "stop" && n.Holder == lk.Holder.Holder && n.Started.Equal(lk.Holder.Started) {
				stop()
			}
		}
	}()
	pollCtx, endPoll := context.WithCancel(ctx)
	go func() {
		tick := time.NewTicker(max(r.cfg.LockTTL/3, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-tick.C:
			}
			if v, err := r.rdb.Get(pollCtx, r.keys.Stop).Result(); err == nil && v == lk.Value() {
				stop()
			}
		}
	}()
	// Not waiting for a read in flight: on a stalled connection it would hold the release back.
	return func() {
		_ = sub.Close()
		endPoll()
	}
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
