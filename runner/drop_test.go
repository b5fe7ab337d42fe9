package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// A holder's own end of its subscription, at the end of a run, is no dropped connection: it neither
// logs one nor looks at a lock it is giving up.
func TestTheHoldersOwnCloseIsNoDroppedConnection(t *testing.T) {
	h := newHarness(t)
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)})
	out := wait(t, start(context.Background(), r))
	if out.err != nil || out.res.Outcome != "recorded" {
		t.Fatalf("run = %+v, %v", out.res, out.err)
	}
	// The listener's goroutine reads its subscription's end after the run returned.
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(logs.String(), "connection to Redis") {
		t.Fatalf("closing the holder's own subscription was taken for a dropped connection:\n%s", logs)
	}
}
