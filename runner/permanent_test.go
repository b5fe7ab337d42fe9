package runner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// A permanent Redis error ends the run at once under its own name (invariant 6): never a wait for a
// holder that does not exist, never "unreachable" or "lock lost".
func TestPermanentRedisErrorsFailFastUnderTheirOwnName(t *testing.T) {
	cases := []struct {
		name  string
		extra []string                       // redis-server arguments
		setup func(t *testing.T, h *harness) // the gate's keys before the run
		want  error
		words string // the server's own words, in the error
	}{
		{"a read-only replica", nil, nil, ErrRedisUnwritable, "READONLY"},
		{"out of memory under noeviction", []string{"--maxmemory", "1", "--maxmemory-policy", "noeviction"}, nil, ErrRedisUnwritable, "OOM"},
		{"a master without the replicas min-replicas-to-write asks for", []string{"--min-replicas-to-write", "1"}, nil, ErrRedisUnwritable, "NOREPLICAS"},
		{"EVALSHA renamed away", []string{"--rename-command", "evalsha", ""}, nil, ErrRedisRefused, "unknown command"},
		{"the version key of the wrong type", nil, func(t *testing.T, h *harness) {
			if err := h.rdb.RPush(context.Background(), h.keys.Version, "x").Err(); err != nil {
				t.Fatal(err)
			}
		}, ErrRedisRefused, "WRONGTYPE"},
		{"the progress key of the wrong type", nil, func(t *testing.T, h *harness) {
			if err := h.rdb.Set(context.Background(), h.keys.Progress, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}, ErrRedisRefused, "WRONGTYPE"},
		{"the history key of the wrong type (no failure cooldown)", nil, func(t *testing.T, h *harness) {
			if err := h.rdb.Set(context.Background(), h.keys.History, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}, ErrRedisRefused, ":history: WRONGTYPE"},
		{"a corrupted fencing counter", nil, func(t *testing.T, h *harness) {
			if err := h.rdb.Set(context.Background(), h.keys.Fence, "-12", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}, ErrRedisRefused, "fencing counter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.name == "a read-only replica" {
				// A replica of a master that is not there: it serves reads and refuses every write.
				h.srv = redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
				h.rdb = h.srv.Client()
				h.env["REDIS_URL"] = h.srv.URL()
			} else if tc.extra != nil {
				h.srv = redistest.Start(t, tc.extra...)
				h.rdb = h.srv.Client()
				h.env["REDIS_URL"] = h.srv.URL()
			}
			if tc.setup != nil {
				tc.setup(t, h)
			}
			var c counter
			r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)})
			_, err := r.Run(context.Background())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v, want %v with the server's words %q", err, tc.want, tc.words)
			}
			if c.get("migrate") != 0 {
				t.Error("a task ran")
			}
			if strings.Contains(logs.String(), "another replica holds the lock") {
				t.Errorf("waited for a holder that does not exist:\n%s", logs)
			}
		})
	}
}

// A lock attempt that fails with a transient error (here BUSY: a long script) is retried, and is not
// taken for another replica holding the lock.
func TestAFailedLockAttemptIsNotLoggedAsAnotherHolder(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.rdb.ConfigSet(ctx, "busy-reply-threshold", "10").Err(); err != nil {
		t.Fatal(err)
	}
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)})
	busy := h.srv.Client()
	defer busy.Close()
	r.beforeObtain = func() {
		go busy.Eval(ctx, "while true do end", nil)
		redistest.Eventually(t, 10*time.Second, func() bool {
			return strings.HasPrefix(fmt.Sprint(h.rdb.Ping(ctx).Err()), "BUSY")
		}, "the long script did not make Redis busy")
	}
	go func() {
		// Ends the script once the gate met it (or after a while: the run then reports what it saw).
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), "could not try the lock") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		_ = h.rdb.ScriptKill(ctx).Err()
	}()
	res, err := r.Run(ctx)
	if err != nil || res.Outcome != "recorded" {
		t.Fatalf("run after a busy Redis: %+v, %v\n%s", res, err, logs)
	}
	if !strings.Contains(logs.String(), "could not try the lock") {
		t.Fatalf("the lock attempt never met the busy Redis:\n%s", logs)
	}
	if strings.Contains(logs.String(), "another replica holds the lock") {
		t.Errorf("a failed lock attempt was logged as another replica holding the lock:\n%s", logs)
	}
}

// A holder whose user may not refresh the lock (no PEXPIRE) stops its task at the first refresh and exits
// as refused credentials (exit 2), not as a lost lock when the lock is about to expire.
func TestARefusedRefreshEndsTheRunAsRefusedCredentials(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.rdb.Do(ctx, "acl", "setuser", "nopexpire", "on", ">pw", "~*", "&*", "+@all", "-pexpire").Err(); err != nil {
		t.Fatal(err)
	}
	const ttl = 3 * time.Second
	stopped := make(chan time.Time, 1)
	wait := spec("wait", func(ctx context.Context, _ tasks.Env) error {
		<-ctx.Done()
		stopped <- time.Now()
		return ctx.Err()
	})
	r, _ := h.runner([]tasks.Spec{wait}, "REDIS_URL", "redis://nopexpire:pw@"+h.srv.Addr+"/0", "MAINTENANCE_LOCK_TTL", ttl.String())
	start := time.Now()
	_, err := r.Run(ctx)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("run = %v, want refused credentials (exit 2)", err)
	}
	if at := <-stopped; at.Sub(start) > ttl*2/3 {
		t.Errorf("the task was stopped %s after the start, want at the first refresh (TTL/3 = %s)", at.Sub(start).Round(time.Millisecond), ttl/3)
	}
	if h.get(h.keys.Version) != "" {
		t.Error("a run that could not keep its lock recorded")
	}
}
