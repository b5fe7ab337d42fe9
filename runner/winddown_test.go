package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// stubbornTask is an exec task that ignores SIGTERM, writes its pid to dir/started and runs until killed.
func stubbornTask(t *testing.T, dir string, grace time.Duration) tasks.Spec {
	t.Helper()
	started := filepath.Join(dir, "started")
	yaml := "tasks:\n  - name: stubborn\n    exec:\n      command: [sh, -c, 'trap \"\" TERM; echo $$ > " + started + ".tmp; mv " + started + ".tmp " + started +
		"; while :; do sleep 0.05; done']\n      grace_period: " + grace.String() + "\n"
	specs, err := tasks.Parse([]byte(yaml), "test.yaml", tasks.LoadContext{})
	if err != nil {
		t.Fatal(err)
	}
	return specs[0]
}

// waitStarted waits until the task wrote dir/started (or the file named).
func waitStarted(t *testing.T, dir string, file ...string) {
	t.Helper()
	name := "started"
	if len(file) > 0 {
		name = file[0]
	}
	redistest.Eventually(t, 20*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }, "the task did not start")
}

func TestLockIsKeptWhileAnInterruptedTaskWindsDownAndReleasedAfter(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	ttl := 2 * time.Second // the harness's MAINTENANCE_LOCK_TTL
	grace := 2 * ttl
	r, _ := h.runner([]tasks.Spec{stubbornTask(t, dir, grace)})
	ctx, cancel := context.WithCancelCause(context.Background())
	done := start(ctx, r)
	waitStarted(t, dir)
	value := h.get(h.keys.Lock)
	interrupted := errors.New("interrupted by terminated")
	cancel(interrupted)
	// The task ignores SIGTERM for its whole grace period, longer than the TTL: the lock must still be ours
	// after more than a TTL, until the task is gone.
	time.Sleep(ttl + ttl/2)
	select {
	case out := <-done:
		t.Fatalf("run returned during the grace period: %v", out.err)
	default:
	}
	if got := h.get(h.keys.Lock); got != value {
		t.Fatalf("during the task's grace period the lock holds %q, want the holder's value: another holder could start", got)
	}
	out := wait(t, done)
	if !errors.Is(out.err, interrupted) {
		t.Fatalf("err = %v, want the interruption", out.err)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Version) {
		t.Error("the lock was kept, or a version recorded, after an interrupted run")
	}
}

func TestTaskWindingDownIsKilledAtOnceWhenTheLockIsLost(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	ttl := 6 * time.Second
	grace := 30 * ttl // far longer than the lock could be kept
	r, _ := h.runner([]tasks.Spec{stubbornTask(t, dir, grace)}, "MAINTENANCE_LOCK_TTL", ttl.String())
	ctx, cancel := context.WithCancelCause(context.Background())
	done := start(ctx, r)
	waitStarted(t, dir)
	cancel(errors.New("interrupted by terminated"))
	// Right after a refresh: the keeper finds the lock lost at the next one, TTL/3 later, while the
	// supervisor's own lease (the last refresh + TTL - margin) would end the tree only much later.
	redistest.Eventually(t, ttl, func() bool {
		pttl, err := h.rdb.PTTL(context.Background(), h.keys.Lock).Result()
		return err == nil && pttl > ttl-ttl/20
	}, "the lock was never refreshed")
	// Another holder takes the lock while the task winds down: the task must die as soon as the keeper
	// finds the lock lost, not at the end of its grace period, nor only when the lease runs out.
	if err := h.rdb.Set(context.Background(), h.keys.Lock, "someone-else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	select {
	case out := <-done:
		if since, bound := time.Since(lost), ttl/3+ttl/4; since >= bound {
			t.Errorf("the task was stopped %s after the lock was lost (more than the keeper's interval and slack, %s), with a grace period of %s", since, bound, grace)
		}
		if out.err == nil {
			t.Error("run succeeded")
		}
	case <-time.After(grace / 2):
		t.Fatalf("the task still ran %s after its lock was lost (grace period %s)", grace/2, grace)
	}
	if h.get(h.keys.Lock) != "someone-else" || h.exists(h.keys.Version) {
		t.Error("the other holder's lock was touched, or a version recorded")
	}
}
