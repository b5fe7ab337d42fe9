//go:build chaos

package chaos

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

// taskRun is one execution of one task, as its lines in the task log show it.
type taskRun struct {
	id              string
	first, last     int   // line numbers: the log's order is the order of the writes
	firstNS, lastNS int64 // wall clock of those lines
	token           int64
	version, task   string
	replica         string
	ended           bool
	def             int // generation of the task's definition
	pids            map[int]bool
	orphans         map[int]bool // pids of its orphan without the tree's mark
	lastPID         int          // the writer of its last line
}

func (r *taskRun) String() string {
	return fmt.Sprintf("task %s of version %s under token %d on %s", r.task, r.version, r.token, r.replica)
}

// readRuns parses the task log. Lines cut short by a kill are ignored.
func readRuns(path string) ([]*taskRun, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	runs := map[string]*taskRun{}
	var order []*taskRun
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		pid, _ := strconv.Atoi(f[2])
		ns, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		r := runs[f[1]]
		if r == nil {
			r = &taskRun{id: f[1], first: n, firstNS: ns, pids: map[int]bool{}, orphans: map[int]bool{}}
			runs[f[1]] = r
			order = append(order, r)
		}
		r.last, r.lastNS, r.lastPID, r.pids[pid] = n, ns, pid, true
		if f[0] == "orphan" {
			r.orphans[pid] = true
		}
		if (f[0] == "start" || f[0] == "end") && len(f) == 9 {
			r.token, _ = strconv.ParseInt(f[4], 10, 64)
			r.version, r.task, r.replica = f[5], f[6], f[7]
			r.def, _ = strconv.Atoi(f[8])
			r.ended = r.ended || f[0] == "end"
		}
	}
	return order, sc.Err()
}

// wipeBound is the overlap the README's residual-cases table states for Redis restarted without
// persistence while a task runs: the old holder's task runs on until its connection is made again and
// its check finds the lock gone, at most 1s.
const wipeBound = time.Second

// overlaps returns a violation for every task run that began before an earlier one's last sign of life.
// Across a restart of Redis without persistence (wipes: when each began, wall clock in nanoseconds), an
// overlap of a task that began before it with one that began after it is allowed up to wipeBound: those
// are returned as allowed, to be shown.
func overlaps(runs []*taskRun, wipes []int64) (violations, allowed []string) {
	var open *taskRun // the run whose last line is the latest so far
	for _, r := range runs {
		if open != nil && r.first < open.last {
			over := time.Duration(open.lastNS - r.firstNS)
			at := fmt.Sprintf("%s started while %s still ran (its last line %.0fms after that start%s)",
				r, open, float64(over)/1e6, open.lastLine())
			switch {
			case !across(open, r, wipes):
				violations = append(violations, "invariant 1: two tasks at once: "+at)
			case over > wipeBound:
				violations = append(violations, fmt.Sprintf("invariant 1: two tasks at once across a restart of Redis without persistence, for longer than the %s the README states: %s",
					wipeBound, at))
			default:
				allowed = append(allowed, fmt.Sprintf("overlap across the restart of Redis without persistence, within the README's %s: %s", wipeBound, at))
			}
		}
		if open == nil || r.last > open.last {
			open = r
		}
	}
	return violations, allowed
}

// across reports whether Redis was restarted without persistence after a began and before b began.
func across(a, b *taskRun, wipes []int64) bool {
	return slices.ContainsFunc(wipes, func(w int64) bool { return a.firstNS < w && w <= b.firstNS })
}

// lastLine says who wrote the run's last line when it was its orphan without the tree's mark.
func (r *taskRun) lastLine() string {
	if r.orphans[r.lastPID] {
		return fmt.Sprintf(", written by its orphan without the mark, pid %d", r.lastPID)
	}
	return ""
}

// orphans returns a violation for every task process still alive once every gate of the round has
// exited, and kills it.
func orphans(runs []*taskRun, logPath string) []string {
	var out []string
	for _, r := range runs {
		for pid := range r.pids {
			env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
			if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), "CHAOS_LOG="+logPath) {
				continue // gone, or the pid is another process's now
			}
			out = append(out, fmt.Sprintf("invariant 1: process %d of %s outlived every gate of the round", pid, r))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return out
}

// entry is one history entry, as the checker reads it from the stream.
type entry struct {
	id, version, previous, outcome, holder string
	token                                  int64
}

func readHistory(c *redis.Client, key string) ([]entry, error) {
	msgs, err := c.XRange(ctxTimeout(5*time.Second), key, "-", "+").Result()
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, m := range msgs {
		s := func(k string) string { v, _ := m.Values[k].(string); return v }
		tok, _ := strconv.ParseInt(s("fencing_token"), 10, 64)
		out = append(out, entry{id: m.ID, version: s("version"), previous: s("previous"), outcome: s("outcome"), holder: s("holder"), token: tok})
	}
	return out, nil
}

// checkHistory checks the entries written during round r (those not in seen): at most one entry per
// attempt (fencing token), and a succeeded entry only after every task of its version finished, each
// task either finished or skipped by a constraint that evaluated to false, and finished under the
// definition the task file held when the record's holder started (invariant 7): a task whose definition
// was edited before the version was recorded (r.tasks holds the generation in force) must have run again.
func checkHistory(r round, hist []entry, seen map[string]bool, runs []*taskRun) []string {
	var out []string
	perToken := map[int64][]entry{}
	for _, e := range hist {
		perToken[e.token] = append(perToken[e.token], e)
	}
	reported := map[int64]bool{}
	for _, e := range hist {
		if seen[e.id] {
			continue
		}
		if same := perToken[e.token]; len(same) > 1 && !reported[e.token] {
			reported[e.token] = true
			var outcomes []string
			for _, s := range same {
				outcomes = append(outcomes, s.outcome)
			}
			out = append(out, fmt.Sprintf("invariant 2: the attempt with fencing token %d (holder %s) has %d history entries: %s",
				e.token, e.holder, len(same), strings.Join(outcomes, ", ")))
		}
		if e.outcome != "succeeded" {
			continue
		}
		if e.version != r.version {
			out = append(out, fmt.Sprintf("version %s recorded by %s (token %d), which no replica of the round runs", e.version, e.holder, e.token))
			continue
		}
		for _, t := range r.tasks {
			evaluable := !t.when || e.previous == "" || validSemver(e.previous)
			if t.def > 0 && !slices.ContainsFunc(runs, func(x *taskRun) bool {
				return x.task == t.name && x.version == e.version && x.ended && x.token <= e.token && x.def == t.def
			}) && slices.ContainsFunc(runs, func(x *taskRun) bool {
				return x.task == t.name && x.version == e.version && x.ended && x.token <= e.token
			}) {
				out = append(out, fmt.Sprintf("invariant 7: version %s recorded with token %d by %s, but task %s never ran under its edited definition (generation %d): an earlier definition's run was taken as done",
					e.version, e.token, e.holder, t.name, t.def))
				continue
			}
			if !slices.ContainsFunc(runs, func(x *taskRun) bool {
				return x.task == t.name && x.version == e.version && x.ended && x.token <= e.token
			}) {
				if !evaluable {
					out = append(out, fmt.Sprintf("invariant 3: task %s skipped by a constraint that could not be evaluated (from <1000.0.0 against previous version %q); version %s recorded with token %d by %s",
						t.name, e.previous, e.version, e.token, e.holder))
				} else {
					out = append(out, fmt.Sprintf("invariant 2: version %s recorded with token %d by %s, but task %s never finished for it", e.version, e.token, e.holder, t.name))
				}
			}
		}
		for _, x := range runs {
			if x.token == e.token && !x.ended {
				out = append(out, fmt.Sprintf("invariant 2: version %s recorded with token %d while %s had not finished", e.version, e.token, x))
			}
		}
	}
	return out
}

// validSemver reports whether v parses as a semantic version, the way the gate reads versions.
func validSemver(v string) bool {
	_, ok := version.Parse(v)
	return ok
}
