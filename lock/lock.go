// Package lock is the gate's mutual exclusion: a redislock lock taken once (never retried inside
// redislock), holder metadata in the lock value, a keeper that refreshes it every TTL/3 and cancels the
// run when it is lost, and a monotonic fencing token.
package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
)

var (
	// ErrNotObtained means another holder has the lock.
	ErrNotObtained = errors.New("lock: not obtained")
	// ErrRefreshRefused is wrapped, with ErrLost and Redis's error, by the cause of a run stopped because
	// Redis refused the lock's refresh whatever its state (NOPERM, an unknown command).
	ErrRefreshRefused = errors.New("lock: Redis refused the refresh")
	// ErrLost is the cause of a run's cancellation when the lock is no longer ours.
	ErrLost = errors.New("lock: lock lost")
	// ErrCorruptFence means the fencing counter holds something that is not a token: no token is taken
	// from it, since a wrong one could let a stale writer through.
	ErrCorruptFence = errors.New("lock: fencing counter corrupted")
)

// Holder is the metadata written into the lock value, so that status and waiters can tell who holds it.
type Holder struct {
	Holder  string    `json:"holder"`
	Pod     string    `json:"pod,omitempty"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// LockTTLMillis is the holder's MAINTENANCE_LOCK_TTL: unlock tells a live holder (refreshed within
	// the last keeper interval, TTL/3) from a stuck lock by it.
	LockTTLMillis int64 `json:"lock_ttl_ms,omitempty"`
}

// Locker takes the lock of one gate.
type Locker struct {
	client   redis.UniversalClient
	rl       *redislock.Client
	key      string
	fenceKey string
	ttl      time.Duration
	// channel and notice, when set, are the release notice: published whenever a Lock is given up.
	channel string
	notice  func(h Holder, lost bool) string
}

// NotifyOnRelease makes every Lock of l publish notice(holder, lost) on channel when it is given up:
// in the same script as the release, or, for a lock the keeper found lost, with a plain PUBLISH. Waiters
// listen for it instead of polling the lock; a notice that never arrives costs them one expiry of the
// lock, as they look at it again when it would expire.
func (l *Locker) NotifyOnRelease(channel string, notice func(h Holder, lost bool) string) {
	l.channel, l.notice = channel, notice
}

// New returns a Locker for the lock key and fencing counter key, with the given TTL.
func New(client redis.UniversalClient, key, fenceKey string, ttl time.Duration) *Locker {
	return &Locker{client: client, rl: redislock.New(client), key: key, fenceKey: fenceKey, ttl: ttl}
}

// ObtainThrough makes Obtain, and the refreshes of the locks it takes (redislock keeps the client it
// took a lock with), go through c instead of the Locker's client. Both are safe to retry: redislock's
// obtain sets the key again when it already holds this lock's token, and a refresh extends only its own
// token. So a waiter can try the lock on the connection it reads with, and never open a second one
// (each costs Redis a HELLO) unless it becomes the holder; the fencing token, release and the record
// stay on the Locker's own client.
func (l *Locker) ObtainThrough(c redis.UniversalClient) { l.rl = redislock.New(c) }

// Obtain tries once to take the lock. It returns ErrNotObtained when another holder has it.
func (l *Locker) Obtain(ctx context.Context, h Holder) (*Lock, error) {
	h.LockTTLMillis = l.ttl.Milliseconds()
	meta, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("lock: encode holder: %w", err)
	}
	// An explicit deadline: without one redislock caps its work at the TTL on its own.
	ctx, cancel := context.WithTimeout(ctx, l.ttl)
	defer cancel()
	// The TTL runs from when Redis sets the key, which is after this: the keeper counts from here.
	start := time.Now()
	lk, err := l.rl.Obtain(ctx, l.key, l.ttl, &redislock.Options{Metadata: string(meta), RetryStrategy: redislock.NoRetry()})
	switch {
	case errors.Is(err, redislock.ErrNotObtained):
		return nil, ErrNotObtained
	case err != nil:
		return nil, fmt.Errorf("lock: obtain: %w", err)
	}
	return &Lock{locker: l, lk: lk, Holder: h, obtained: start, lostCh: make(chan struct{}), nudge: make(chan struct{}, 1),
		leaseUntil: start.Add(l.ttl - lostMargin(l.ttl)), leaseCh: make(chan struct{})}, nil
}

// Read returns the current holder and the lock's remaining TTL; nil when nobody holds it.
func (l *Locker) Read(ctx context.Context) (*Holder, time.Duration, error) {
	v, pttl, err := l.ReadValue(ctx)
	if err != nil || v == "" {
		return nil, 0, err
	}
	h := ParseValue(v)
	return &h, max(pttl, 0), nil
}

// ReadValue returns the lock key's full value ("" when free) and its remaining TTL (negative when the key
// has none).
func (l *Locker) ReadValue(ctx context.Context) (string, time.Duration, error) {
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, l.key)
		pttl = p.PTTL(ctx, l.key)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("lock: read: %w", err)
	}
	return get.Val(), pttl.Val(), nil
}

// releaseIfScript deletes the lock key only while it still holds the given value.
var releaseIfScript = redis.NewScript(`
if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end
return 0
`)

// ReleaseIf deletes the lock only while it still holds value, and reports whether it did.
func (l *Locker) ReleaseIf(ctx context.Context, value string) (bool, error) {
	n, err := releaseIfScript.Run(ctx, l.client, []string{l.key}, value).Int()
	if err != nil {
		return false, fmt.Errorf("lock: release: %w", err)
	}
	return n == 1, nil
}

// ParseValue extracts the holder metadata from a lock value (redislock's token followed by JSON).
func ParseValue(v string) Holder {
	var h Holder
	if i := strings.IndexByte(v, '{'); i >= 0 {
		_ = json.Unmarshal([]byte(v[i:]), &h)
	}
	return h
}

// Lock is a lock this process holds.
type Lock struct {
	locker *Locker
	lk     *redislock.Lock
	// Holder is the metadata written with the lock.
	Holder Holder
	// obtained is when Obtain began: the lock is ours until TTL after it, unless refreshed.
	obtained time.Time
	// lost is set when the keeper cancels the run because the lock is no longer ours.
	lost atomic.Bool
	// lostCh is closed at the same moment (see Lost), or when the holder is asked to stop (Stop).
	lostCh   chan struct{}
	lostOnce sync.Once
	// cancelRun cancels the context Keep returned.
	cancelRun atomic.Pointer[context.CancelCauseFunc]
	// nudge asks the keeper to check the lock at once (CheckNow).
	nudge chan struct{}
	// leaseUntil is when the lock stops being surely held, as of the last refresh that worked; leaseCh
	// is closed (and replaced) when it moves.
	leaseMu    sync.Mutex
	leaseUntil time.Time
	leaseCh    chan struct{}
}

// Lease returns the time until which the lock is surely held (the start of the last refresh that worked,
// or of Obtain, plus the TTL less the keeper's margin) and a channel closed when it moves. An exec
// task's supervisor kills the task's tree at that time unless it has moved: the lease holds even when
// this process cannot act (paused, starved), since the keeper cannot move it then.
func (lk *Lock) Lease() (time.Time, <-chan struct{}) {
	lk.leaseMu.Lock()
	defer lk.leaseMu.Unlock()
	return lk.leaseUntil, lk.leaseCh
}

// extendLease moves the lease after a refresh that started at sent worked.
func (lk *Lock) extendLease(sent time.Time) {
	lk.leaseMu.Lock()
	defer lk.leaseMu.Unlock()
	if until := sent.Add(lk.locker.ttl - lostMargin(lk.locker.ttl)); until.After(lk.leaseUntil) && !lk.lost.Load() {
		lk.leaseUntil = until
		close(lk.leaseCh)
		lk.leaseCh = make(chan struct{})
	}
}

// CheckNow has the keeper refresh the lock at once rather than at its next interval: a connection to
// Redis dropped (a restart, a failover), and the lock may be gone. A lock found gone is lost at once.
func (lk *Lock) CheckNow() {
	select {
	case lk.nudge <- struct{}{}:
	default:
	}
}

// Stop ends the run at once as if the lock were lost (Lost is closed, the context Keep returned is
// cancelled with cause), but keeps the lock until Release: an operator asked this holder to stop, and
// it gives the lock up only once its tasks are gone.
func (lk *Lock) Stop(cause error) {
	lk.lostOnce.Do(func() { close(lk.lostCh) })
	if c := lk.cancelRun.Load(); c != nil {
		(*c)(cause)
	}
}

// Lost returns a channel closed when the keeper finds the lock lost, or no longer surely held: a
// task's process tree must then be killed at once, not given a grace period (invariant 1).
func (lk *Lock) Lost() <-chan struct{} { return lk.lostCh }

// markLost records that the lock is no longer ours and says so to Lost's readers.
func (lk *Lock) markLost() {
	lk.lost.Store(true)
	lk.lostOnce.Do(func() { close(lk.lostCh) })
}

// Value returns the full lock value. Fenced scripts compare it with the key's value to check that
// the lock is still ours.
func (lk *Lock) Value() string { return lk.lk.Token() + lk.lk.Metadata() }

// fenceScript takes the next fencing token: the larger of the last token + 1 and the Redis server's
// clock in microseconds (TIME's seconds and microseconds, joined as digits). A plain INCR would start
// again at 1 when Redis loses the counter (a restart without persistence, a failover to a replica that
// had not received it), handing a new holder a smaller token than a stale one still running; the clock
// keeps tokens growing across such a loss. It counts in microseconds, not milliseconds: after a loss the
// next token is the clock itself, and a millisecond clock could equal the token a stale holder took in
// the same millisecond. Tokens of earlier releases (the clock in milliseconds, about 10^12) stay below
// every token taken from the microsecond clock (about 10^15).
// Lua numbers are doubles, exact only below 2^53, so the script does its arithmetic on decimal strings
// (compare by length, then digit by digit; add one with a carry), and refuses a counter that is not a
// decimal number. The token is returned as a string and parsed as an int64 by the caller.
var fenceScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local cur = redis.call("get", KEYS[1]) or "0"
if not string.match(cur, "^[0-9]+$") or #cur > 19 then
  return redis.error_reply("FENCE the fencing counter " .. KEYS[1] .. " holds " .. string.format("%q", string.sub(cur, 1, 40)) .. ", not a token")
end
cur = string.gsub(cur, "^0+(%d)", "%1")
local digits, carry = {}, 1
for i = #cur, 1, -1 do
  local d = string.byte(cur, i) - 48 + carry
  if d == 10 then d, carry = 0, 1 else carry = 0 end
  digits[i] = string.char(48 + d)
end
local nextTok = table.concat(digits)
if carry == 1 then nextTok = "1" .. nextTok end
local t = redis.call("time")
local now = t[1] .. string.format("%06d", tonumber(t[2]))
local n = nextTok
if #now > #n or (#now == #n and now > n) then n = now end
redis.call("set", KEYS[1], n)
return n
`)

// Fence takes the next fencing token: every holder gets a larger one than all before it, even after
// Redis lost the counter, as long as the server's clock does not go back. A counter that is not a
// token, or whose next token would not fit an int64, is ErrCorruptFence.
func (lk *Lock) Fence(ctx context.Context) (int64, error) {
	s, err := fenceScript.Run(ctx, lk.locker.client, []string{lk.locker.fenceKey}).Text()
	if err != nil {
		if strings.HasPrefix(err.Error(), "FENCE ") {
			return 0, fmt.Errorf("%w: %s (delete it only if no holder can be running: tokens restart from the server's clock)", ErrCorruptFence, strings.TrimPrefix(err.Error(), "FENCE "))
		}
		return 0, fmt.Errorf("lock: fencing token: %w", err)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: the next token %s of %s does not fit a 64-bit integer", ErrCorruptFence, s, lk.locker.fenceKey)
	}
	return n, nil
}

// releaseScript deletes the lock key only while it still holds the lock's value and, when ARGV[2] names
// a channel, publishes the release notice ARGV[3] there in the same step: a release is never without
// its notice.
var releaseScript = redis.NewScript(`
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("del", KEYS[1])
if ARGV[2] ~= "" then redis.call("publish", ARGV[2], ARGV[3]) end
return 1
`)

// Release gives the lock up, publishing the release notice (NotifyOnRelease). Releasing a lock that is
// no longer ours is not an error. It works even when ctx is already cancelled (an interrupted run still
// frees its lock). A lock the keeper found lost is not released at all: it is someone else's, or
// expiring while Redis does not answer, and waiting up to 5s on an unreachable Redis would keep the
// holder alive past its lock; only its notice is sent, bounded by the keeper's margin.
func (lk *Lock) Release(ctx context.Context) error {
	l := lk.locker
	var msg string
	if l.notice != nil {
		msg = l.notice(lk.Holder, lk.lost.Load())
	}
	if lk.lost.Load() {
		// Only while the lock could not yet have expired (its last lease): a holder cut off from Redis
		// must not outlive its lock waiting on a notice that a waiter does without (it looks at the
		// lock when it would expire).
		if until, _ := lk.Lease(); l.channel != "" && time.Until(until) > 0 {
			pctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), until)
			defer cancel()
			_ = l.client.Publish(pctx, l.channel, msg).Err()
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := releaseScript.Run(ctx, l.client, []string{l.key}, lk.Value(), l.channel, msg).Err(); err != nil {
		return fmt.Errorf("lock: release: %w", err)
	}
	return nil
}

// Keep starts the keeper: it refreshes the lock every TTL/3 until stop is called, also after ctx is
// cancelled: a holder interrupted by a signal keeps its lock while its tasks wind down, and releases
// it only after they are gone (invariant 1). The returned context is cancelled with ctx's cause when
// ctx is, and with a cause wrapping ErrLost (Lost is closed too) when a refresh finds the lock gone or
// taken by another holder, or when no refresh has succeeded for most of a TTL. Failed refreshes cancel
// the run before the lock can expire, not after: a holder never runs on past its TTL. Before giving up,
// the keeper makes a last attempt, so that a Redis that answers again in time keeps the lock. The TTL
// is counted from Obtain (or the last refresh that worked), not from the call to Keep. stop may be
// called more than once.
func (lk *Lock) Keep(ctx context.Context, log *slog.Logger) (context.Context, func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	lk.cancelRun.Store(&cancel)
	// The keeper's own context ignores ctx: only stop or a lost lock end it.
	kctx, kcancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	lost := func(cause error) {
		lk.markLost()
		cancel(cause)
	}
	ttl := lk.locker.ttl
	interval := ttl / 3
	// No refresh starts later than giveUp, and none runs past end: the run is cancelled while the lock
	// is still ours, even when the cancellation itself takes a moment.
	margin := 2 * lostMargin(ttl)
	go func() {
		defer close(done)
		// last is the start of the last refresh that worked (or of Obtain): the lock is ours until
		// TTL after it at the latest.
		last := lk.obtained
		var lastErr error
		// checking: the last attempt was asked for by CheckNow (a connection dropped and was made again),
		// or follows one that failed. Redis may have just restarted and forgotten the lock, so a new holder
		// may take it any moment: a failed check is tried again within recheckDelay, not interval/2 later
		// (a cluster node back from a restart answers CLUSTERDOWN for a second or two).
		checking := false
		timer := time.NewTimer(time.Until(last.Add(interval)))
		defer timer.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-timer.C:
			case <-lk.nudge:
				checking = true
			}
			giveUp, end := last.Add(ttl-margin), last.Add(ttl-margin/2)
			start := time.Now()
			if !start.Before(end) {
				if lastErr == nil {
					// No refresh failed: none was tried, the keeper itself did not run in time.
					lost(fmt.Errorf("%w: the keeper did not run for %s, more than the lock's TTL (%s) allows: the process was paused or starved (SIGSTOP, a frozen cgroup, CPU throttling)",
						ErrLost, start.Sub(last).Round(time.Millisecond), ttl))
				} else {
					lost(fmt.Errorf("%w: no refresh succeeded within the lock's TTL (%s): %v", ErrLost, ttl, lastErr))
				}
				return
			}
			final := !start.Before(giveUp)
			rctx, rcancel := context.WithDeadline(kctx, earlier(start.Add(interval), end))
			err := lk.lk.Refresh(rctx, ttl, nil)
			rcancel()
			switch {
			case err == nil:
				last, lastErr, checking = start, nil, false
				lk.extendLease(start)
				timer.Reset(time.Until(start.Add(interval)))
			case errors.Is(err, redislock.ErrNotObtained):
				lost(fmt.Errorf("%w: the lock key no longer holds our value (expired, or taken by another holder)", ErrLost))
				return
			case kctx.Err() != nil:
				return
			case redisconn.Classify(err) == redisconn.Refused || redisconn.IsAuthError(err):
				// NOPERM (also inside the refresh script), refused credentials, an unknown or renamed
				// command: no later attempt can work, so the run stops now rather than when the lock is
				// about to expire (invariant 6).
				lost(fmt.Errorf("%w: %w: %w", ErrLost, ErrRefreshRefused, err))
				return
			case final:
				lost(fmt.Errorf("%w: no refresh succeeded within the lock's TTL (%s), the last attempt included: %v", ErrLost, ttl, err))
				return
			default:
				lastErr = err
				log.Warn("lock refresh failed", "err", err, "expires_in_ms", time.Until(last.Add(ttl)).Milliseconds())
				// Try again sooner than usual (at once after a failed check); the last attempt starts at
				// giveUp at the latest.
				again := interval / 2
				if checking {
					again = min(again, recheckDelay)
				}
				timer.Reset(time.Until(earlier(start.Add(again), giveUp)))
			}
		}
	}()
	var once sync.Once
	return runCtx, func() {
		once.Do(func() {
			kcancel()
			<-done
			cancel(nil)
		})
	}
}

// recheckDelay is how soon a check asked for by CheckNow is tried again when it failed.
const recheckDelay = 100 * time.Millisecond

// lostMargin is how long before the lock can expire the keeper gives it up (closes Lost and cancels the
// run) when no refresh has worked: TTL/12, but at least 250ms and at most TTL/3. In that time the task's
// tree gets SIGKILL and is reaped, and the gate's clock may differ from Redis's: at the shortest TTL (1s)
// TTL/12 would be 83ms, less than one scheduling hiccup of a loaded node (a GC pause, a CPU-throttled
// container frozen for the rest of its 100ms CFS period). The last refresh attempt starts one more
// margin earlier, so it still has that long to get an answer.
func lostMargin(ttl time.Duration) time.Duration {
	return min(max(ttl/12, 250*time.Millisecond), ttl/3)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
