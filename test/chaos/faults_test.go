//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// supervisorName is the name the gate gives the supervisor of an exec task (argv[0] of the gate's own
// binary started again): the process the OOM killer or a kill -9 may take away from under a task.
const supervisorName = "peerdb-maintenance-supervisor"

// sweepWait bounds how long the timeline waits for the gate to sweep an orphan once its supervisor
// is killed, before the next fault: generous for a loaded machine. An orphan still there after it is
// judged by the task log, like any other process.
const sweepWait = 5 * time.Second

// pause stops the holder's gate (not its task) for e.dur; with pauseGrace, during the grace period
// that a SIGTERM just began.
func (rr *roundRun) pause(e event) {
	i := rr.target(true)
	if i < 0 {
		rr.note("%s: no such replica now", e.kind)
		return
	}
	p := rr.slots[i]
	if e.kind == pauseGrace {
		rr.note("%s: SIGTERM to %s", e.kind, p.name)
		p.send(syscall.SIGTERM)
		time.Sleep(50 * time.Millisecond)
	}
	rr.note("%s: SIGSTOP %s's gate for %dms", e.kind, p.name, e.dur.Milliseconds())
	p.send(syscall.SIGSTOP)
	rr.at(time.Since(rr.start)+e.dur, func() { rr.note("SIGCONT %s", p.name); p.send(syscall.SIGCONT) })
	rr.restartWhenExited(i, p, e.dur+time.Duration(200+rr.rng.IntN(800))*time.Millisecond)
}

// again applies e once more shortly, without holding up the other faults, while a replica lives:
// for a fault that waits for a moment (a task running, an orphan adopted).
func (rr *roundRun) again(e event, why string) {
	if slices.ContainsFunc(rr.slots, func(p *replica) bool { return !p.exited() }) {
		rr.at(time.Since(rr.start)+20*time.Millisecond, func() { rr.apply(e) })
		return
	}
	rr.note("%s: %s", e.kind, why)
}

// running returns the slot of a live replica whose task runs now (by the task log), with that run.
func (rr *roundRun) running() (int, *taskRun) {
	runs, _ := readRuns(rr.log)
	for j := len(runs) - 1; j >= 0; j-- {
		if runs[j].ended {
			continue
		}
		for i, p := range rr.slots {
			if p.name == runs[j].replica && !p.exited() {
				return i, runs[j]
			}
		}
	}
	return -1, nil
}

// killSupervisor SIGKILLs the supervisor of the holder's exec task once the task's orphan without
// the mark is its child (adopted), with the holder's gate running (not stopped): only the gate's sweep
// of what it adopts can then stop the orphan before the lock goes to the next holder. The timeline
// waits for that sweep, so that no other fault (a SIGKILL or SIGSTOP of the same gate) makes it a
// double fault that no process of the host is left to handle.
func (rr *roundRun) killSupervisor(e event) {
	i, run := rr.running()
	if i < 0 {
		rr.again(e, "no task ran with an orphan while a replica lived")
		return
	}
	p := rr.slots[i]
	gatePid := p.cmd.Process.Pid
	if st, _ := procState(gatePid); st == "T" {
		rr.again(e, "no task ran with an orphan while a replica lived")
		return
	}
	sup, orphan := 0, 0
	for pid := range run.orphans {
		if st, ok := procState(pid); ok && st != "Z" && isSupervisor(ppid(pid)) && ppid(ppid(pid)) == gatePid {
			sup, orphan = ppid(pid), pid
		}
	}
	if sup == 0 {
		rr.again(e, "no task ran with an orphan while a replica lived")
		return
	}
	rr.note("%s: SIGKILL %s's supervisor (pid %d) while %s runs with its orphan without the mark (pid %d)", e.kind, p.name, sup, run, orphan)
	_ = syscall.Kill(sup, syscall.SIGKILL)
	began := time.Now()
	for time.Since(began) < sweepWait && !p.exited() {
		if st, ok := procState(orphan); !ok || st == "Z" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, ok := procState(orphan); ok && st != "Z" {
		rr.note("%s: the orphan (pid %d) still runs %s after its supervisor was killed", e.kind, orphan, time.Since(began).Round(time.Millisecond))
	} else {
		rr.note("%s: the orphan (pid %d) gone %s after its supervisor was killed", e.kind, orphan, time.Since(began).Round(time.Millisecond))
	}
	rr.restartWhenExited(i, p, time.Duration(200+rr.rng.IntN(800))*time.Millisecond)
}

// wipeRedis restarts redis-server on the same port without its data while a task runs, just after a
// refresh of the holder's lock and with that task to run on for longer than the refresh interval: a
// Redis that forgot the lock, the fencing counter, progress, the recorded version and history, at the
// moment a holder that waited for its next refresh would stay blind the longest. What the checker
// reads of Redis afterwards is what was written since; the overlap across the restart is judged by
// the task log against the README's bound (wipeBound).
func (rr *roundRun) wipeRedis(e event) {
	var i int
	var run *taskRun
	seen := "no refresh of the lock seen with a task to run on"
	for deadline := time.Now().Add(3 * rr.r.ttl); time.Now().Before(deadline); {
		if i, run = rr.running(); i < 0 {
			break
		}
		refreshed, ok := rr.refreshed()
		if !ok {
			continue
		}
		if i, run = rr.running(); i >= 0 && rr.left(run) > rr.r.ttl/3 {
			seen = refreshed
			break
		}
	}
	if i < 0 {
		rr.again(e, "no task ran while a replica lived")
		return
	}
	rr.note("%s: SIGKILL redis-server while %s runs, %s, start it again without its data", e.kind, run, seen)
	rr.wipes = append(rr.wipes, time.Now().UnixNano())
	rr.h.redis.RestartEmpty()
	n, err := rr.h.direct.DBSize(ctxTimeout(time.Second)).Result()
	rr.note("redis-server answers again: %d keys (%v)", n, err)
}

// left is how much longer run goes on by its plan (its beats from its start; more on a slow machine).
func (rr *roundRun) left(run *taskRun) time.Duration {
	for _, t := range rr.r.tasks {
		if t.name == run.task {
			return time.Until(time.Unix(0, run.firstNS).Add(time.Duration(t.beats) * 100 * time.Millisecond))
		}
	}
	return 0
}

// refreshed waits, up to the TTL, until the lock's remaining time grows (its holder refreshed it),
// and says what it saw.
func (rr *roundRun) refreshed() (string, bool) {
	last := time.Duration(-1)
	for deadline := time.Now().Add(rr.r.ttl); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		d, err := rr.h.direct.PTTL(ctxTimeout(300*time.Millisecond), gate.Lock).Result()
		if err != nil || d <= 0 {
			continue
		}
		if last >= 0 && d > last {
			return fmt.Sprintf("just after a refresh of the lock (PTTL %dms to %dms)", last.Milliseconds(), d.Milliseconds()), true
		}
		last = d
	}
	return "", false
}

// isSupervisor reports whether pid runs as an exec task's supervisor.
func isSupervisor(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.HasPrefix(string(b), supervisorName+"\x00")
}

// procState returns the state letter of pid from /proc (R, S, T, Z...), false when there is no such
// process.
func procState(pid int) (string, bool) {
	f := statFields(pid)
	if len(f) < 2 {
		return "", false
	}
	return f[0], true
}

// ppid returns pid's parent, 0 when unknown.
func ppid(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// statFields are the fields of /proc/<pid>/stat after the command name: state, ppid, ...
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}
