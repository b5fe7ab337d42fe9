//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// Timeouts of every replica: short, so that a round ends in seconds, and the bounds the checker
// derives its waits from.
const (
	connectTimeout = 10 * time.Second
	waitTimeout    = 30 * time.Second
	readTimeout    = 500 * time.Millisecond
)

// roundRun is one round being run: its replicas, its timeline of faults and what happened.
type roundRun struct {
	h        *harness
	r        round
	rng      *rand.Rand // target picks, drawn in the order events happen
	dir, log string
	env      []string
	start    time.Time

	slots    []*replica // the current replica of each slot
	all      []*replica // every replica started
	gen      int
	timeline []step

	wipes []int64 // when Redis was restarted without its data (wall clock, ns)

	mu      sync.Mutex
	actions []string
	bg      sync.WaitGroup // unlock commands in flight
}

// step is something the timeline does at an offset from the round's start.
type step struct {
	at time.Duration
	do func()
}

// run runs round r and returns the violations found and what happened.
func (h *harness) run(r round) ([]string, []string) {
	rr := &roundRun{h: h, r: r, rng: rand.New(rand.NewPCG(*seedFlag, uint64(r.n)<<32|1)), dir: filepath.Join(h.work, fmt.Sprint(r.n))}
	if err := os.MkdirAll(rr.dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	rr.log = filepath.Join(rr.dir, "tasks.log")
	tasksFile, err := writeTaskFile(rr.dir, r)
	if err != nil {
		h.t.Fatal(err)
	}
	rr.env = []string{"PATH=" + os.Getenv("PATH"), "PEERDB_DEPLOYMENT_VERSION=" + r.version, "MAINTENANCE_NAME=chaos",
		"MAINTENANCE_TASKS_FILE=" + tasksFile, "MAINTENANCE_LOCK_TTL=" + r.ttl.String(), "MAINTENANCE_WAIT_TIMEOUT=" + waitTimeout.String(),
		"MAINTENANCE_CONNECT_TIMEOUT=" + connectTimeout.String(), "MAINTENANCE_FAILURE_COOLDOWN=0", "CHAOS_LOG=" + rr.log}
	rr.resetVersion()
	rr.start = time.Now()
	for i := range r.replicas {
		rr.slots = append(rr.slots, nil)
		rr.startSlot(i)
	}
	for _, e := range r.events {
		rr.at(e.at, func() { rr.apply(e) })
	}
	rr.play()
	rr.heal()
	var violations []string
	violations = append(violations, rr.waitAll()...)
	rr.bg.Wait()
	violations = append(violations, rr.converge()...)
	violations = append(violations, rr.check()...)
	return violations, rr.actions
}

// resetVersion puts back a semantic version that an earlier round replaced with a non-semver one, so
// that this round's constraints can be evaluated.
func (rr *roundRun) resetVersion() {
	v, _ := rr.h.direct.Get(ctxTimeout(5*time.Second), gate.Version).Result()
	if v != "" && !validSemver(v) {
		prev := fmt.Sprintf("1.%d.0", rr.r.n-1)
		rr.h.direct.Set(ctxTimeout(5*time.Second), gate.Version, prev, 0)
		rr.note("recorded version %q reset to %s before the round", v, prev)
	}
}

func (rr *roundRun) note(format string, args ...any) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.actions = append(rr.actions, fmt.Sprintf("%6dms ", time.Since(rr.start).Milliseconds())+fmt.Sprintf(format, args...))
}

// at schedules do at offset d of the round.
func (rr *roundRun) at(d time.Duration, do func()) {
	rr.timeline = append(rr.timeline, step{at: d, do: do})
	slices.SortStableFunc(rr.timeline, func(a, b step) int { return int(a.at - b.at) })
}

// play runs the timeline until it is empty.
func (rr *roundRun) play() {
	for len(rr.timeline) > 0 {
		s := rr.timeline[0]
		rr.timeline = rr.timeline[1:]
		time.Sleep(time.Until(rr.start.Add(s.at)))
		s.do()
	}
}

func (rr *roundRun) startSlot(i int) {
	rr.gen++
	name := fmt.Sprintf("r%d-s%d-g%d", rr.r.n, i, rr.gen)
	// A read timeout shorter than the TTL: a reply that is late makes the outcome of a write unknown
	// while the lock is still held, where a client that retries on its own writes twice.
	url := rr.h.proxies[i].URL() + "?read_timeout=" + readTimeout.String()
	p, err := startReplica(rr.h.bin, rr.dir, name, i, append(slices.Clone(rr.env), "REDIS_URL="+url))
	if err != nil {
		rr.h.t.Fatalf("start replica: %v", err)
	}
	rr.slots[i] = p
	rr.all = append(rr.all, p)
	rr.note("started %s (pid %d)", name, p.cmd.Process.Pid)
}

// restartWhenExited starts a new replica in the slot once its current one has exited, as a kubelet
// restarts a failed init container.
func (rr *roundRun) restartWhenExited(i int, p *replica, after time.Duration) {
	rr.at(time.Since(rr.start)+after, func() {
		switch {
		case rr.slots[i] != p:
		case !p.exited():
			rr.restartWhenExited(i, p, 100*time.Millisecond)
		case p.exit != 0 || p.signal != 0:
			rr.startSlot(i)
		}
	})
}

// holder returns the slot whose replica runs a task now (from the task log), else the one the lock
// names, else -1.
func (rr *roundRun) holder() int {
	if i, _ := rr.running(); i >= 0 {
		return i
	}
	v, err := rr.h.direct.Get(ctxTimeout(300*time.Millisecond), gate.Lock).Result()
	if err == nil {
		name := lock.ParseValue(v).Holder
		for i, p := range rr.slots {
			if p.name == name && !p.exited() {
				return i
			}
		}
	}
	return -1
}

// target picks the holder's slot (holder true) or another live replica's, -1 when there is none.
func (rr *roundRun) target(holder bool) int {
	h := rr.holder()
	if holder {
		return h
	}
	var live []int
	for i, p := range rr.slots {
		if i != h && !p.exited() {
			live = append(live, i)
		}
	}
	if len(live) == 0 {
		return -1
	}
	return live[rr.rng.IntN(len(live))]
}

// apply injects one fault.
func (rr *roundRun) apply(e event) {
	switch e.kind {
	case killHolder, killWaiter, termHolder, termWaiter:
		i := rr.target(e.kind == killHolder || e.kind == termHolder)
		if i < 0 {
			rr.note("%s: no such replica now", e.kind)
			return
		}
		sig, name := syscall.SIGKILL, "SIGKILL"
		if e.kind == termHolder || e.kind == termWaiter {
			sig, name = syscall.SIGTERM, "SIGTERM"
		}
		p := rr.slots[i]
		rr.note("%s: %s to %s", e.kind, name, p.name)
		p.send(sig)
		rr.restartWhenExited(i, p, time.Duration(200+rr.rng.IntN(800))*time.Millisecond)
	case pauseHolder, pauseGrace:
		rr.pause(e)
	case killSupervisor:
		rr.killSupervisor(e)
	case redisWipe:
		rr.wipeRedis(e)
	case redisStop:
		rr.note("%s: SIGSTOP redis-server for %dms", e.kind, e.dur.Milliseconds())
		rr.h.redis.Signal(syscall.SIGSTOP)
		rr.at(time.Since(rr.start)+e.dur, func() { rr.note("SIGCONT redis-server"); rr.h.redis.Signal(syscall.SIGCONT) })
	case redisRestart:
		rr.note("%s: SIGKILL redis-server and start it again on its append-only file", e.kind)
		rr.h.redis.Restart()
		rr.note("redis-server answers again")
	case clientPause:
		err := rr.h.direct.Do(ctxTimeout(time.Second), "CLIENT", "PAUSE", e.dur.Milliseconds(), "ALL").Err()
		rr.note("%s: CLIENT PAUSE %d ALL: %v", e.kind, e.dur.Milliseconds(), err)
	case proxyDelay, proxyDrop:
		i := rr.target(true)
		if i < 0 {
			i = rr.rng.IntN(len(rr.slots))
		}
		rr.note("%s: connection of %s for %dms", e.kind, rr.slots[i].name, e.dur.Milliseconds())
		if e.kind == proxyDelay {
			rr.h.proxies[i].Stall()
		} else {
			rr.h.proxies[i].DropReplies()
		}
		rr.at(time.Since(rr.start)+e.dur, func() { rr.note("connection of slot %d flows again", i); rr.h.proxies[i].Resume() })
	case slowRecord, lostRecord:
		i, ok := rr.lastTaskEnded()
		if !ok {
			// Looked at again shortly, without holding up the other faults, while a replica lives.
			if slices.ContainsFunc(rr.slots, func(p *replica) bool { return !p.exited() }) {
				rr.at(time.Since(rr.start)+20*time.Millisecond, func() { rr.apply(e) })
			} else {
				rr.note("%s: no live holder finished its last task", e.kind)
			}
			return
		}
		rr.note("%s: replies to %s for %dms", e.kind, rr.slots[i].name, e.dur.Milliseconds())
		if e.kind == slowRecord {
			rr.h.proxies[i].StallReplies()
		} else {
			rr.h.proxies[i].DropReplies()
		}
		rr.at(time.Since(rr.start)+e.dur, func() { rr.note("connection of slot %d flows again", i); rr.h.proxies[i].Resume() })
	case unlock, unlockForce:
		args := []string{"unlock"}
		if e.kind == unlockForce {
			args = append(args, "--force")
		}
		rr.bg.Add(1)
		go func() {
			defer rr.bg.Done()
			rr.note("%s: peerdb-maintenance %s", e.kind, strings.Join(args, " "))
			cmd := exec.Command(rr.h.bin, args...)
			cmd.Env = append(slices.Clone(rr.env), "REDIS_URL="+rr.h.redis.URL())
			out, _ := cmd.CombinedOutput()
			rr.note("%s: exit %d: %s", e.kind, cmd.ProcessState.ExitCode(), strings.TrimSpace(string(out)))
		}()
	case editTasks:
		rr.editTasks(e)
	case versionSHA, versionNewer:
		v := fmt.Sprintf("sha-%08x", rr.rng.Uint32())
		if e.kind == versionNewer {
			v = fmt.Sprintf("1.%d.5", rr.r.n)
		}
		err := rr.h.direct.Set(ctxTimeout(time.Second), gate.Version, v, 0).Err()
		rr.note("%s: SET version %s from outside: %v", e.kind, v, err)
		if e.kind == versionSHA {
			// A waiter takes over after the change: it must evaluate the constraints again.
			rr.at(time.Since(rr.start)+100*time.Millisecond, func() { rr.apply(event{kind: killHolder}) })
		}
	}
}

// editTasks waits until the first task has finished under its current definition, then does what a
// ConfigMap edit and a rollout do between two attempts: every replica is SIGKILLed, the first task's
// definition changes in the task file, and the replicas start again on the new file. When the version is
// recorded by then, the edit is left out: no later attempt runs.
func (rr *roundRun) editTasks(e event) {
	first := &rr.r.tasks[0]
	runs, _ := readRuns(rr.log)
	if !slices.ContainsFunc(runs, func(x *taskRun) bool {
		return x.task == first.name && x.version == rr.r.version && x.ended && x.def == first.def
	}) {
		if slices.ContainsFunc(rr.slots, func(p *replica) bool { return !p.exited() }) {
			rr.at(time.Since(rr.start)+20*time.Millisecond, func() { rr.apply(e) })
		} else {
			rr.note("%s: no live replica finished %s", e.kind, first.name)
		}
		return
	}
	for _, p := range rr.slots {
		if p.send(syscall.SIGKILL) {
			rr.note("%s: SIGKILL to %s", e.kind, p.name)
		}
	}
	for _, p := range rr.slots {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			rr.h.t.Fatalf("replica %s did not end within 10s of SIGKILL", p.name)
		}
	}
	if v, _ := rr.h.direct.Get(ctxTimeout(5*time.Second), gate.Version).Result(); v == rr.r.version {
		rr.note("%s: version %s already recorded, task file left as it is", e.kind, v)
	} else {
		first.def++
		if _, err := writeTaskFile(rr.dir, rr.r); err != nil {
			rr.h.t.Fatal(err)
		}
		rr.note("%s: task %s now runs definition %d", e.kind, first.name, first.def)
	}
	for i, p := range rr.slots {
		rr.restartWhenExited(i, p, time.Duration(100+rr.rng.IntN(400))*time.Millisecond)
	}
}

// lastTaskEnded returns the slot of a live replica whose last task has ended: its record comes next.
func (rr *roundRun) lastTaskEnded() (int, bool) {
	last := rr.r.tasks[len(rr.r.tasks)-1].name
	runs, _ := readRuns(rr.log)
	for _, x := range runs {
		if x.task != last || !x.ended {
			continue
		}
		for i, p := range rr.slots {
			if p.name == x.replica && !p.exited() {
				return i, true
			}
		}
	}
	return -1, false
}

// heal ends every fault still in force.
func (rr *roundRun) heal() {
	rr.h.redis.Signal(syscall.SIGCONT)
	for _, p := range rr.slots {
		p.send(syscall.SIGCONT)
	}
	for _, p := range rr.h.proxies {
		p.Resume()
	}
	_ = rr.h.direct.Do(ctxTimeout(5*time.Second), "CLIENT", "UNPAUSE").Err()
}

// exitBound is how long a replica may take to exit once the faults are over: it may wait for Redis,
// then for a holder, then run every task and its grace period; a generous margin for a loaded machine.
func (rr *roundRun) exitBound() time.Duration {
	d := connectTimeout + waitTimeout + 30*time.Second
	for _, t := range rr.r.tasks {
		d += time.Duration(t.beats)*300*time.Millisecond + rr.r.grace
	}
	return d
}

// waitAll waits for every replica to exit; one that does not within the bound is a violation (and
// is killed).
func (rr *roundRun) waitAll() []string {
	var out []string
	deadline := time.Now().Add(rr.exitBound())
	for _, p := range rr.all {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			out = append(out, fmt.Sprintf("replica %s still running %s after the faults ended (connect %s, wait %s)",
				p.name, rr.exitBound(), connectTimeout, waitTimeout))
			p.send(syscall.SIGKILL)
			<-p.done
		}
	}
	for _, p := range rr.all {
		rr.note("%s", p)
	}
	return out
}

// converge runs one more replica without faults when the round's version is not recorded yet: the
// gate must recover from whatever the faults left.
func (rr *roundRun) converge() []string {
	if rr.r.tampered() {
		return nil
	}
	if v, _ := rr.h.direct.Get(ctxTimeout(5*time.Second), gate.Version).Result(); v == rr.r.version {
		return nil
	}
	rr.startSlot(0)
	p := rr.slots[0]
	select {
	case <-p.done:
	case <-time.After(rr.exitBound()):
		p.send(syscall.SIGKILL)
		<-p.done
	}
	rr.note("%s", p)
	v, _ := rr.h.direct.Get(ctxTimeout(5*time.Second), gate.Version).Result()
	if v != rr.r.version || p.exit != 0 {
		return []string{fmt.Sprintf("no recovery: a replica started after the faults ended %s, and the recorded version is %q, want %s", p, v, rr.r.version)}
	}
	return nil
}

// check judges the round from the task log, the processes left and Redis.
func (rr *roundRun) check() []string {
	var out []string
	for _, p := range rr.all {
		if msg := p.exitProblem(); msg != "" {
			out = append(out, msg)
		}
	}
	runs, err := readRuns(rr.log)
	if err != nil {
		rr.h.t.Fatalf("read the task log: %v", err)
	}
	over, allowed := overlaps(runs, rr.wipes)
	out = append(out, over...)
	for _, a := range allowed {
		rr.note("%s", a)
	}
	out = append(out, orphans(runs, rr.log)...)
	hist, err := readHistory(rr.h.direct, gate.History)
	if err != nil {
		rr.h.t.Fatalf("read history: %v", err)
	}
	out = append(out, checkHistory(rr.r, hist, rr.h.seen, runs)...)
	for _, e := range hist {
		rr.h.seen[e.id] = true
	}
	return out
}
