package runner

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redistest"
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
