package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// whenSpec is a counted task that runs only for upgrades from below 1.5.0.
func whenSpec(t *testing.T, c *counter, name string) tasks.Spec {
	t.Helper()
	s := c.task(name, nil)
	specs, err := tasks.Parse([]byte("tasks:\n  - name: "+name+"\n    exec: {command: [\"true\"]}\n    when: {from: \"<1.5.0\"}\n"), "test.yaml", tasks.LoadContext{})
	if err != nil {
		t.Fatal(err)
	}
	s.When = specs[0].When
	return s
}

func TestVersionsEqualBySemverTakeTheFastPath(t *testing.T) {
	for _, tc := range []struct{ recorded, current string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "v1.2.3"},
		{"1.2.3+build.1", "1.2.3+build.2"},
	} {
		h := newHarness(t)
		h.setVersion(tc.recorded)
		var c counter
		r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "PEERDB_DEPLOYMENT_VERSION", tc.current)
		res, err := r.Run(context.Background())
		if err != nil || res.Outcome != "up-to-date" || c.get("migrate") != 0 {
			t.Errorf("recorded %s, current %s: %+v, %v, task ran %d times; want up-to-date without running", tc.recorded, tc.current, res, err, c.get("migrate"))
		}
	}
}

func TestAlternatingOldAndNewShaVersionsNeverRollTheRecordBack(t *testing.T) {
	h := newHarness(t)
	var c counter
	run := func(v string) Result {
		t.Helper()
		r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "PEERDB_DEPLOYMENT_VERSION", v)
		res, err := r.Run(context.Background())
		if err != nil {
			t.Fatalf("version %s: %v", v, err)
		}
		return res
	}
	run("sha-old")
	run("sha-new")
	for i := 0; i < 3; i++ {
		if res := run("sha-old"); res.Outcome != "downgrade-skipped" {
			t.Fatalf("old replica (sha-old after sha-new) outcome %q, want downgrade-skipped", res.Outcome)
		}
		if res := run("sha-new"); res.Outcome != "up-to-date" {
			t.Fatalf("new replica outcome %q, want up-to-date", res.Outcome)
		}
	}
	if got := h.get(h.keys.Version); got != "sha-new" {
		t.Errorf("recorded %q, want sha-new", got)
	}
	if c.get("migrate") != 2 {
		t.Errorf("tasks ran %d times, want 2 (sha-old once, sha-new once)", c.get("migrate"))
	}
	// An old replica that refuses downgrades says so.
	r, _ := h.runner(nil, "PEERDB_DEPLOYMENT_VERSION", "sha-old", "MAINTENANCE_DOWNGRADE", "fail")
	if _, err := r.Run(context.Background()); !errors.Is(err, ErrDowngrade) {
		t.Errorf("sha-old with MAINTENANCE_DOWNGRADE=fail: %v, want ErrDowngrade", err)
	}
}

// The change is seen by the first look at the lock (after the first read) or by the double check under
// the lock (after the look, before the attempt): either way a configuration error.
func TestRecordedVersionChangedToNonSemverBeforeTheLockIsAConfigErrorNotASkip(t *testing.T) {
	for _, seenBy := range []string{"first look", "double check"} {
		t.Run(seenBy, func(t *testing.T) {
			h := newHarness(t)
			h.setVersion("1.0.0")
			var c counter
			r, _ := h.runner([]tasks.Spec{whenSpec(t, &c, "old-only")})
			change := func() { h.setVersion("sha-abc") }
			if seenBy == "first look" {
				r.afterFirstRead = change
			} else {
				r.beforeObtain = change
			}
			_, err := r.Run(context.Background())
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want a configuration error", err)
			}
			if c.get("old-only") != 0 || h.get(h.keys.Version) != "sha-abc" || len(h.history()) != 0 {
				t.Errorf("task ran %d times, recorded %q, %d history entries: want nothing run or recorded", c.get("old-only"), h.get(h.keys.Version), len(h.history()))
			}
			if h.exists(h.keys.Lock) {
				t.Error("lock left behind")
			}
		})
	}
}

func TestRecordedVersionChangedWhileWaitingIsEvaluatedAgain(t *testing.T) {
	h := newHarness(t)
	h.setVersion("1.0.0")
	h.holdLockExternally(time.Minute)
	var c counter
	r, _ := h.runner([]tasks.Spec{whenSpec(t, &c, "old-only")})
	r.afterFirstRead = func() { h.setVersion("sha-abc") }
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want a configuration error as soon as the waiter sees the new recorded version", err)
	}
	if c.get("old-only") != 0 {
		t.Error("task ran")
	}
}

// A SHA whose attempt failed before a newer one succeeded is just as old as one that succeeded: its
// replica must not run and roll the record back.
func TestAnOldShaThatOnlyFailedIsStillOld(t *testing.T) {
	h := newHarness(t)
	var bad, good counter
	r, _ := h.runner([]tasks.Spec{bad.task("migrate", errors.New("boom"))}, "PEERDB_DEPLOYMENT_VERSION", "sha-old", "MAINTENANCE_FAILURE_COOLDOWN", "0s")
	if _, err := r.Run(context.Background()); !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("sha-old with a failing task: %v, want a task failure", err)
	}
	r, _ = h.runner([]tasks.Spec{good.task("migrate", nil)}, "PEERDB_DEPLOYMENT_VERSION", "sha-new", "MAINTENANCE_FAILURE_COOLDOWN", "0s")
	if res, err := r.Run(context.Background()); err != nil || res.Outcome != "recorded" {
		t.Fatalf("sha-new: %+v, %v", res, err)
	}
	r, _ = h.runner([]tasks.Spec{good.task("migrate", nil)}, "PEERDB_DEPLOYMENT_VERSION", "sha-old", "MAINTENANCE_FAILURE_COOLDOWN", "0s")
	res, err := r.Run(context.Background())
	if err != nil || res.Outcome != "downgrade-skipped" {
		t.Errorf("old replica sha-old after sha-new: %+v, %v; want downgrade-skipped", res, err)
	}
	if got := h.get(h.keys.Version); got != "sha-new" || good.get("migrate") != 1 {
		t.Errorf("recorded %q (want sha-new), tasks ran %d times (want 1)", got, good.get("migrate"))
	}
}
