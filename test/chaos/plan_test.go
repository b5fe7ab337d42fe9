//go:build chaos

package chaos

import (
	"slices"
	"testing"
)

// The first rounds of every seed try the featured faults, one each, and a round that restarts Redis
// empty has no fault that keeps the holder from seeing it.
func TestPlanFeaturesTheNewestFaultsFirst(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		for n, k := range featured {
			if r := plan(seed, n+1, 3); !r.has(k) {
				t.Errorf("seed %d round %d does not inject %s:\n%s", seed, n+1, k, r)
			}
		}
		for n := 1; n <= 30; n++ {
			r := plan(seed, n, 3)
			if r.has(redisWipe) && slices.ContainsFunc(r.events, func(e event) bool { return slices.Contains(blinding, e.kind) }) {
				t.Errorf("seed %d round %d restarts Redis empty beside a fault that blinds the holder:\n%s", seed, n, r)
			}
			if r.has(killSupervisor) && slices.ContainsFunc(r.tasks, func(x taskPlan) bool { return !x.orphan }) {
				t.Errorf("seed %d round %d kills a supervisor, but not every task leaves an orphan:\n%s", seed, n, r)
			}
		}
	}
}

// Across a restart of Redis without persistence, an overlap is allowed up to wipeBound and only
// between a task that began before the restart and one that began after it.
func TestOverlapsAcrossARestartWithoutPersistence(t *testing.T) {
	ms := int64(1e6)
	run := func(id string, first, last int, firstMS, lastMS int64) *taskRun {
		return &taskRun{id: id, task: "t1", first: first, last: last, firstNS: firstMS * ms, lastNS: lastMS * ms, orphans: map[int]bool{}}
	}
	for _, c := range []struct {
		name                string
		wipe, bStart, aLast int64
		violations, allowed int
	}{
		{"within the bound", 1000, 1100, 1900, 0, 1},
		{"beyond the bound", 1000, 1100, 2200, 1, 0},
		{"no restart between", 1200, 1100, 1300, 1, 0},
	} {
		a, b := run("a", 0, 3, 0, c.aLast), run("b", 1, 2, c.bStart, c.bStart+500)
		v, ok := overlaps([]*taskRun{a, b}, []int64{c.wipe * ms})
		if len(v) != c.violations || len(ok) != c.allowed {
			t.Errorf("%s: violations %q, allowed %q", c.name, v, ok)
		}
	}
}
