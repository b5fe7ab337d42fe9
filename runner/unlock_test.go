package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

func TestUnlockRefusesALiveHolder(t *testing.T) {
	h := newHarness(t)
	started, finish := make(chan struct{}), make(chan struct{})
	r, _ := h.runner([]tasks.Spec{spec("long", func(ctx context.Context, _ tasks.Env) error {
		close(started)
		select {
		case <-finish:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})})
	done := start(context.Background(), r)
	<-started
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), false)
	if !errors.Is(err, ErrHolderAlive) || res.Holder == nil || res.Holder.Holder != "test-holder" {
		t.Fatalf("unlock of a live holder = %+v, %v; want ErrHolderAlive naming it", res, err)
	}
	// Refused at once, from the lock's own TTL (when the holder last refreshed), not after waiting for
	// a refresh to show.
	if !strings.Contains(err.Error(), " ago (TTL ") {
		t.Errorf("unlock of a live holder: %v; want an immediate refusal saying when the holder refreshed", err)
	}
	if !h.exists(h.keys.Lock) {
		t.Fatal("unlock removed a live holder's lock")
	}
	close(finish)
	if out := wait(t, done); out.err != nil || out.res.Outcome != "recorded" {
		t.Fatalf("holder after a refused unlock: %+v, %v", out.res, out.err)
	}
}

func TestUnlockForceStopsTheHolderAndWaitsForItsRelease(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	ttl := 2 * time.Second
	// A task that ignores SIGTERM, with a grace period far longer than the test: only SIGKILL stops it.
	r, logs := h.runner([]tasks.Spec{stubbornTask(t, dir, 60*ttl)})
	done := start(context.Background(), r)
	waitStarted(t, dir)
	redistest.Eventually(t, 10*time.Second, func() bool { return h.rdb.PubSubNumPat(context.Background()).Val() >= 1 }, "the holder does not listen for a stop notice")
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), true)
	if err != nil || !res.Stopped || res.Holder == nil {
		t.Fatalf("unlock --force = %+v, %v; want the holder stopped\n%s", res, err, logs)
	}
	out := wait(t, done)
	if !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("stopped holder: %v, want lock lost (exit 4)", out.err)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Version) || len(h.history()) != 0 {
		t.Error("lock left, version recorded or history written by a stopped holder")
	}
}

func TestUnlockRemovesALockWithoutExpiryAtOnce(t *testing.T) {
	h := newHarness(t)
	v := `othertoken00000000000000{"holder":"dead-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":60000}`
	if err := h.rdb.Set(context.Background(), h.keys.Lock, v, 0).Err(); err != nil {
		t.Fatal(err)
	}
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), false)
	if err != nil || !res.Removed || res.Holder == nil || res.Holder.Holder != "dead-pod" || h.exists(h.keys.Lock) {
		t.Fatalf("unlock of a lock without expiry = %+v, %v; lock exists %t", res, err, h.exists(h.keys.Lock))
	}
}

// expiredKeys is Redis's count of keys that expired (not deleted).
func (h *harness) expiredKeys(t *testing.T) int64 {
	t.Helper()
	info := h.rdb.Info(context.Background(), "stats").Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "expired_keys:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no expired_keys in INFO stats:\n%s", info)
	return 0
}

func TestUnlockLetsAStuckLockExpireDeletingNothing(t *testing.T) {
	h := newHarness(t)
	// A holder that died: its lock was last refreshed long ago, only a little of its TTL is left.
	v := `othertoken00000000000000{"holder":"dead-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":60000}`
	if err := h.rdb.Set(context.Background(), h.keys.Lock, v, 1500*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	before := h.expiredKeys(t)
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), false)
	if err != nil || !res.Expired || res.Removed || res.Holder == nil || res.Holder.Holder != "dead-pod" || h.exists(h.keys.Lock) {
		t.Fatalf("unlock of a stuck lock = %+v, %v; lock exists %t", res, err, h.exists(h.keys.Lock))
	}
	if h.expiredKeys(t) != before+1 {
		t.Error("unlock deleted a lock with an expiry instead of letting it expire")
	}
}

// lateKeeper refreshes the lock key to ttl every interval, as a holder's keeper does, without listening
// for a stop notice; first after the given delay. It stops at the end of the test.
func lateKeeper(t *testing.T, h *harness, first, interval, ttl time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for d := first; ; d = interval {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			h.rdb.PExpire(ctx, h.keys.Lock, ttl)
		}
	}()
}

func TestUnlockRefusesAHolderWhoseRefreshIsLate(t *testing.T) {
	h := newHarness(t)
	ttl := 6 * time.Second
	v := `othertoken00000000000000{"holder":"slow-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":6000}`
	// The holder's refresh is late (a stalled connection): less than half its TTL is left, then it refreshes.
	if err := h.rdb.Set(context.Background(), h.keys.Lock, v, ttl*2/5).Err(); err != nil {
		t.Fatal(err)
	}
	lateKeeper(t, h, ttl/10, ttl/3, ttl)
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), false)
	if !errors.Is(err, ErrHolderAlive) || res.Removed || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("unlock of a holder with a late refresh = %+v, %v; want ErrHolderAlive pointing to --force", res, err)
	}
	if h.rdb.Get(context.Background(), h.keys.Lock).Val() != v {
		t.Fatal("unlock removed the lock of a holder whose refresh was late")
	}
}

func TestUnlockForceRefusesAHolderThatDoesNotAnswerTheStopNotice(t *testing.T) {
	h := newHarness(t)
	ttl := 2 * time.Second
	v := `othertoken00000000000000{"holder":"deaf-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":2000}`
	if err := h.rdb.Set(context.Background(), h.keys.Lock, v, ttl).Err(); err != nil {
		t.Fatal(err)
	}
	// A holder that keeps refreshing but never hears the stop notice (no PSUBSCRIBE permission).
	lateKeeper(t, h, ttl/3, ttl/3, ttl)
	u, _ := h.runner(nil)
	res, err := u.Unlock(context.Background(), true)
	if !errors.Is(err, ErrHolderAlive) || res.Removed || !strings.Contains(err.Error(), "stop notice") && strings.Contains(err.Error(), "stop request") {
		t.Fatalf("unlock --force of a holder that does not answer = %+v, %v; want ErrHolderAlive naming the stop notice", res, err)
	}
	if h.rdb.Get(context.Background(), h.keys.Lock).Val() != v {
		t.Fatal("unlock --force removed the lock of a live holder that did not answer")
	}
}

func TestUnlockOfAStuckLockLeavesANewHoldersLock(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	stuck := `othertoken00000000000000{"holder":"dead-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":60000}`
	if err := h.rdb.Set(ctx, h.keys.Lock, stuck, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Between unlock's read and its delete the stuck lock goes and a waiter takes the lock.
	fresh := `newtoken0000000000000000{"holder":"new-pod","version":"1.2.0","started":"2026-01-01T00:00:00Z","lock_ttl_ms":60000}`
	afterLockRead = func() { h.rdb.Set(ctx, h.keys.Lock, fresh, time.Minute) }
	t.Cleanup(func() { afterLockRead = nil })
	u, _ := h.runner(nil)
	if _, err := u.Unlock(ctx, false); err != nil {
		t.Fatal(err)
	}
	if v := h.rdb.Get(ctx, h.keys.Lock).Val(); v != fresh {
		t.Fatalf("unlock deleted the new holder's lock (lock now %q)", v)
	}
}

func TestGlobEscapeMatchesOnlyTheChannel(t *testing.T) {
	if got := globEscape(`{a*b?}[c]\d`); got != `{a\*b\?}\[c\]\\d` {
		t.Errorf("globEscape = %q", got)
	}
}

func TestUnlockForceStopsAHolderThatCannotHearTheNotice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// A holder whose user may neither PSUBSCRIBE nor SUBSCRIBE: the stop notice never reaches it, the stop
	// key does.
	if err := h.rdb.Do(ctx, "acl", "setuser", "deaf", "on", ">pw", "~*", "&*", "+@all", "-psubscribe", "-subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, logs := h.runner([]tasks.Spec{stubbornTask(t, dir, time.Minute)}, "REDIS_URL", "redis://deaf:pw@"+h.srv.Addr+"/0")
	done := start(ctx, r)
	waitStarted(t, dir)
	u, _ := h.runner(nil)
	res, err := u.Unlock(ctx, true)
	if err != nil || !res.Stopped {
		t.Fatalf("unlock --force of a holder that cannot hear the notice = %+v, %v; want it stopped\n%s", res, err, logs)
	}
	if out := wait(t, done); !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("stopped holder: %v, want lock lost (exit 4)", out.err)
	}
	if h.exists(h.keys.Version) || len(h.history()) != 0 {
		t.Error("a stopped holder recorded")
	}
}

// unlock --force listens for the holder's answer on a connection of its own; when that connection takes
// the PSUBSCRIBE and never answers, it must still stop the holder (the answer is also in the stop key)
// rather than hang.
func TestUnlockForceWhoseListenerNeverAnswersStillStopsTheHolder(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	r, logs := h.runner([]tasks.Spec{stubbornTask(t, dir, time.Minute)})
	done := start(context.Background(), r)
	waitStarted(t, dir)
	proxy := redistest.StartProxy(t, h.srv.Addr)
	proxy.DeafAfter("PSUBSCRIBE")
	u, _ := h.runner(nil, "REDIS_URL", proxy.URL())
	type unlocked struct {
		res UnlockResult
		err error
	}
	ch := make(chan unlocked, 1)
	go func() {
		res, err := u.Unlock(context.Background(), true)
		ch <- unlocked{res, err}
	}()
	select {
	case got := <-ch:
		if proxy.Deaf() == 0 {
			t.Fatal("unlock never subscribed: the fault was not injected")
		}
		if got.err != nil || !got.res.Stopped {
			t.Fatalf("unlock --force = %+v, %v; want the holder stopped\n%s", got.res, got.err, logs)
		}
	case <-time.After(redisconn.SubscribeWait + 25*time.Second):
		t.Fatal("unlock --force hung on a subscription that never answered")
	}
	if out := wait(t, done); !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("stopped holder: %v, want lock lost (exit 4)", out.err)
	}
}

// documentedUserArgs returns redis-server arguments that create the gate's least-privilege user exactly
// as docs/security.md states it (its first ACL SETUSER line), with password pw. As configuration rather
// than ACL SETUSER, the user survives a restart of the server.
func documentedUserArgs(t *testing.T, pw string) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(line, "ACL SETUSER peerdb-maintenance "); ok {
			return append([]string{"--user", "peerdb-maintenance"}, strings.Fields(strings.ReplaceAll(rest, ">PASSWORD", ">"+pw))...)
		}
	}
	t.Fatal("docs/security.md has no 'ACL SETUSER peerdb-maintenance' line")
	return nil
}

// The documented user may SUBSCRIBE to the events channel but not PSUBSCRIBE it (Redis checks a pattern
// literally against the user's channel rules): the holder must still listen, so that a Redis restarted
// empty makes it look at its lock as soon as its subscription is made again, not at its next refresh
// (TTL/3 after the last one).
func TestAHolderWithTheDocumentedUserLooksAtItsLockWhenRedisRestarts(t *testing.T) {
	h := newHarness(t)
	h.srv = redistest.Start(t, documentedUserArgs(t, "gate-pw")...)
	h.rdb = h.srv.Client()
	h.env["REDIS_URL"] = "redis://peerdb-maintenance:gate-pw@" + h.srv.Addr + "/0"
	ttl := 30 * time.Second
	started := make(chan struct{})
	r, logs := h.runner([]tasks.Spec{spec("wait", func(ctx context.Context, _ tasks.Env) error {
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	})}, "MAINTENANCE_LOCK_TTL", ttl.String())
	ctx := context.Background()
	done := start(ctx, r)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatalf("the task did not start:\n%s", logs)
	}
	// Subscribed by name (there is no waiter): PUBSUB NUMSUB counts the holder.
	subscribed := false
	for end := time.Now().Add(redisconn.SubscribeWait + 2*time.Second); !subscribed && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		m, err := h.rdb.PubSubNumSub(ctx, h.keys.Events).Result()
		subscribed = err == nil && m[h.keys.Events] == 1
	}
	if !subscribed || strings.Contains(logs.String(), "could not listen for unlock --force's notice") {
		t.Errorf("the holder did not subscribe to %s with the documented user:\n%s", h.keys.Events, logs)
	}
	// Right after a refresh, so that the next one is a whole keeper interval away.
	redistest.Eventually(t, ttl, func() bool {
		pttl, err := h.rdb.PTTL(ctx, h.keys.Lock).Result()
		return err == nil && pttl > ttl-ttl/20
	}, "the lock was never refreshed")
	restarted := time.Now()
	h.srv.Restart()
	out := wait(t, done)
	took := time.Since(restarted)
	t.Logf("the holder found its lock gone %s after the restart", took)
	if !errors.Is(out.err, lock.ErrLost) {
		t.Fatalf("run = %+v, %v; want the lock lost (exit 4)\n%s", out.res, out.err, logs)
	}
	// The next refresh would find the lock gone about TTL/3 - TTL/20 after the restart.
	if bound := ttl / 6; took > bound {
		t.Errorf("the holder found its lock gone %s after the restart (more than %s): it waited for its next refresh\n%s", took, bound, logs)
	}
	if !strings.Contains(logs.String(), "the connection to Redis dropped and was made again: checking the lock now") {
		t.Errorf("the holder did not look at its lock when its subscription was made again:\n%s", logs)
	}
}
