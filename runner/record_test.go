package runner

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// commandsSeen is how many commands clients have sent that a gate sends to write or re-read: scripts, and
// the handshake of a new connection (commands run inside scripts are counted too, so they are left out).
func commandsSeen(t *testing.T, h *harness) int {
	t.Helper()
	info, err := h.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(line, ":calls=")
		if ok && (name == "cmdstat_evalsha" || name == "cmdstat_eval" || name == "cmdstat_hello") {
			c, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			n += c
		}
	}
	return n
}

func TestRecordWithASlowReplyIsWrittenOnceAndReportedAsRecorded(t *testing.T) {
	h := newHarness(t)
	proxy := redistest.StartProxy(t, h.srv.Addr)
	ctx := context.Background()
	// Scripts already in the server's cache run with one EVALSHA each.
	if err := recordScript.Load(ctx, h.rdb).Err(); err != nil {
		t.Fatal(err)
	}
	if err := truthScript.Load(ctx, h.rdb).Err(); err != nil {
		t.Fatal(err)
	}
	var c counter
	// A TTL long enough that the keeper has no refresh to make while replies are held.
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)}, "REDIS_URL", proxy.URL(), "MAINTENANCE_LOCK_TTL", "60s")
	r.pause = func(_ context.Context, point string) {
		if point != "before-record" {
			return
		}
		base := commandsSeen(t, h)
		proxy.StallReplies()
		// The record runs on the server, its reply is held past the client's read timeout; replies
		// flow again once the server has seen what the client sends next (a retry, or a re-read, or the
		// handshake of a new connection for either).
		go func() {
			redistest.Eventually(t, 30*time.Second, func() bool { return commandsSeen(t, h) >= base+2 }, "no command after the record")
			proxy.Resume()
		}()
	}
	res, err := r.Run(ctx)
	if err != nil || res.Outcome != "recorded" {
		t.Fatalf("run = %+v, %v; want recorded (the version was recorded under our token)\n%s", res, err, logs)
	}
	if got := len(h.history()); got != 1 {
		t.Errorf("%d history entries, want 1: the record ran more than once", got)
	}
	if h.get(h.keys.Version) != "1.1.0" {
		t.Errorf("recorded %q", h.get(h.keys.Version))
	}
}

func TestRecordIsIdempotentPerFencingToken(t *testing.T) {
	h := newHarness(t)
	r, _ := h.runner(nil)
	ctx := context.Background()
	lk, err := r.locker.Obtain(ctx, lock.Holder{Holder: "a", Version: "1.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Version: "1.1.0", Outcome: OutcomeSucceeded, Holder: "a", FencingToken: 42, Started: time.Now(), Finished: time.Now()}
	for i := 0; i < 3; i++ {
		if ok, err := record(ctx, r.wdb, r.keys, lk, e); err != nil || !ok {
			t.Fatalf("record %d: %t, %v", i+1, ok, err)
		}
	}
	if got := len(h.history()); got != 1 {
		t.Errorf("%d history entries after three records under one token, want 1", got)
	}
	e.FencingToken = 43
	if ok, err := record(ctx, r.wdb, r.keys, lk, e); err != nil || !ok {
		t.Fatalf("record under a new token: %t, %v", ok, err)
	}
	if got := len(h.history()); got != 2 {
		t.Errorf("%d history entries after a record under a new token, want 2", got)
	}
}
