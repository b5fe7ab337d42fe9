package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Targets.
const (
	targetFastRatio   = 1.1
	targetStormSlack  = 100 * time.Millisecond // beyond the task
	targetCmdsReplica = 10.0
	targetWaitCost    = 0.5         // Redis commands per waiter-second
	targetTakeover    = time.Second // beyond the lock TTL
	targetSize        = 10 << 20
	targetRSS         = 20 << 20
)

// report is everything measured in one run of the bench.
type report struct {
	command     string
	started     time.Time
	took        time.Duration
	machine     machine
	floorSize   int64
	fast        *fastPathResult
	gateInit    sample
	floorInit   sample
	gateInitTop []initCost
	storm       *stormResult
	waiting     *waitResult
	plot        string // the waiting plot's file name, beside the report
	takeover    *takeoverResult
	size        *sizeResult
	whatIfs     []whatIf
}

// row is one line of the summary table.
type row struct {
	figure, median, min, max, target, met string
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// metBy judges a median against its target and says when the worst run missed it.
func metBy(s sample, target float64) string {
	switch {
	case s.median() > target:
		return "**no**"
	case s.max() > target:
		return "yes (median; the worst run did not)"
	default:
		return "yes"
	}
}

func (r *report) stormTarget() time.Duration    { return r.storm.task + targetStormSlack }
func (r *report) takeoverTarget() time.Duration { return r.takeover.ttl + targetTakeover }

func (r *report) rows() []row {
	f, s, t, z := r.fast, r.storm, r.takeover, r.size
	pairs := f.pairRatios()
	totals, cmds, delays := s.totals(), s.perReplica(), s.delays()
	records := t.records()
	once, failed := 0, 0
	for _, run := range s.runs {
		if run.taskRuns == 1 && run.history == 1 {
			once++
		}
		failed += run.failed
	}
	peerRow := row{"fast path: peer, " + f.peer.name, "not measured: " + strings.ReplaceAll(f.peer.missing, "|", "\\|"), "", "", "", ""}
	if f.peer.missing == "" {
		peerRow = row{fmt.Sprintf("fast path: peer, %s (%d runs; %.2f times the floor)", f.peer.name, f.runs, f.peerWall.median()/f.floor.median()),
			fmtMS(f.peerWall.median()), fmtMS(f.peerWall.min()), fmtMS(f.peerWall.max()), "", ""}
	}
	waitCost, measured := r.waiting.worstPerWaiterSecond()
	waitRow := row{"waiting: Redis commands per waiter-second (worst over " + fmtCounts(r.waiting.counts) + " replicas)", "not measured", "", "", fmt.Sprintf("≤ %.1f", targetWaitCost), "**no**"}
	if measured {
		waitRow = row{"waiting: Redis commands per waiter-second (worst over " + fmtCounts(r.waiting.counts) + " replicas; section 5)", fmt.Sprintf("%.2f", waitCost), "", "", fmt.Sprintf("≤ %.1f", targetWaitCost), yes(waitCost <= targetWaitCost)}
	}
	return []row{
		{fmt.Sprintf("fast path: gate, whole process (%d runs)", f.runs), fmtMS(f.gate.median()), fmtMS(f.gate.min()), fmtMS(f.gate.max()), "", ""},
		{fmt.Sprintf("fast path: floor program, whole process (%d runs)", f.runs), fmtMS(f.floor.median()), fmtMS(f.floor.min()), fmtMS(f.floor.max()), "", ""},
		peerRow,
		{"fast path: gate / floor (ratio of medians; min, max of run-by-run ratios)", fmt.Sprintf("%.2f", f.ratio()),
			fmt.Sprintf("%.2f", pairs.min()), fmt.Sprintf("%.2f", pairs.max()), fmt.Sprintf("≤ %.2f", targetFastRatio), yes(f.ratio() <= targetFastRatio)},
		{fmt.Sprintf("storm: first start to last exit, %d replicas, task %s (%d runs)", s.replicas, s.task, len(s.runs)),
			fmtMS(totals.median()), fmtMS(totals.min()), fmtMS(totals.max()), "≤ " + fmtMS(ms(r.stormTarget())), metBy(totals, ms(r.stormTarget()))},
		{fmt.Sprintf("storm: floor program, same storm, run after each of the gate's (section 2; %d runs)", len(s.floor)),
			fmtMS(s.floor.median()), fmtMS(s.floor.min()), fmtMS(s.floor.max()), "", ""},
		{"storm: Redis commands per replica", fmt.Sprintf("%.1f", cmds.median()), fmt.Sprintf("%.1f", cmds.min()), fmt.Sprintf("%.1f", cmds.max()),
			fmt.Sprintf("≤ %.0f", targetCmdsReplica), metBy(cmds, targetCmdsReplica)},
		waitRow,
		{"storm: runs where the task ran once and the version was recorded once", fmt.Sprintf("%d of %d", once, len(s.runs)), "", "", "all", yes(once == len(s.runs))},
		{"storm: replicas that exited non-zero", fmt.Sprint(failed), "", "", "0", yes(failed == 0)},
		{fmt.Sprintf("storm: record to waiter exit (%d waiters)", len(delays)), fmtMS(delays.median()), fmtMS(delays.min()), fmtMS(delays.max()), "", ""},
		{fmt.Sprintf("takeover: SIGKILL of the holder to the waiter's record, TTL %s (%d runs)", t.ttl, len(t.runs)),
			fmtMS(records.median()), fmtMS(records.min()), fmtMS(records.max()), "≤ " + fmtMS(ms(r.takeoverTarget())), metBy(records, ms(r.takeoverTarget()))},
		{"size: stripped static binary", fmtMiB(float64(z.stripped)), "", "", "≤ " + fmtMiB(targetSize), yes(z.stripped <= targetSize)},
		{fmt.Sprintf("memory: fast path peak RSS (%d runs)", f.runs), fmtMiB(f.gateRSS.median()), fmtMiB(f.gateRSS.min()), fmtMiB(f.gateRSS.max()),
			"≤ " + fmtMiB(targetRSS), metBy(f.gateRSS, targetRSS)},
	}
}

// broken lists what makes the run a failure rather than a figure.
func (r *report) broken() []string {
	var b []string
	for i, run := range r.storm.runs {
		if run.failed > 0 {
			b = append(b, fmt.Sprintf("storm %d: %d replicas exited non-zero", i+1, run.failed))
		}
		if run.taskRuns != 1 {
			b = append(b, fmt.Sprintf("storm %d: the task ran %d times", i+1, run.taskRuns))
		}
		if run.history != 1 {
			b = append(b, fmt.Sprintf("storm %d: %d history entries, want one record", i+1, run.history))
		}
	}
	for _, c := range r.waiting.cells {
		if c.failed > 0 || c.taskRuns != 1 || c.history != 1 {
			b = append(b, fmt.Sprintf("waiting, %d replicas, wait %s: %d non-zero exits, %d task runs, %d history entries",
				c.replicas, c.wait, c.failed, c.taskRuns, c.history))
		}
	}
	for i, run := range r.takeover.runs {
		if run.failed {
			b = append(b, fmt.Sprintf("takeover %d: the waiter exited non-zero", i+1))
		} else if run.history != 1 {
			b = append(b, fmt.Sprintf("takeover %d: %d history entries, want one record", i+1, run.history))
		}
	}
	return b
}

func (r *report) markdown() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	m := r.machine
	p("# Benchmarks")
	p("")
	p("Written on %s by the command below, which `make bench` runs; the bench took %s. Reproduce with `make bench`.",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second))
	p("")
	p("```sh\n%s\n```", r.command)
	p("")
	p("It builds the gate as `make build` does (`CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\"`) and the floor")
	p("program of [bench/floor](bench/floor/main.go), starts its own `redis-server` processes on free loopback ports and")
	p("stops them. Figures are medians over repeated runs, with min and max; ratios compare runs taken side by side,")
	p("because absolute times on a shared machine drift. The bench exits 0 whether or not a target is met, and 1 when")
	p("something is broken (a replica exiting non-zero, the task running more than once).")
	p("")
	p("## Summary")
	p("")
	p("| figure | median | min | max | target | met |")
	p("|---|---:|---:|---:|---|---|")
	for _, x := range r.rows() {
		p("| %s | %s | %s | %s | %s | %s |", x.figure, x.median, x.min, x.max, x.target, x.met)
	}
	p("")
	if notes := r.notMet(); len(notes) > 0 {
		p("### Targets not met")
		p("")
		for _, n := range notes {
			p("* %s", n)
		}
		p("")
	}
	p("## Machine")
	p("")
	if m.loaded() {
		p("**The machine was loaded during this run** (a 1-minute load average above its %d cores at the start or the end):", m.cores)
		p("absolute times are inflated and noisy, and the storm's first start to last exit includes forking every replica")
		p("on a busy machine. Ratios of runs taken side by side are the figures to trust.")
		p("")
	}
	p("* CPU: %s, %d cores", m.cpu, m.cores)
	p("* load average (1, 5, 15 min) at the start: %s; at the end: %s. The machine is shared: other processes may run", m.loadStart, m.loadEnd)
	p("  during the bench, which is why targets are ratios or generous bounds and every figure has its min and max.")
	p("* Linux %s, %s, Redis %s", m.kernel, m.goVersion, m.redis)
	p("* source: commit %s, working tree %s", m.commit, m.tree)
	p("* gate as built: %s stripped; the floor program %s", fmtMiB(float64(r.size.stripped)), fmtMiB(float64(r.floorSize)))
	p("")
	r.fastPathSection(p)
	r.stormSection(p)
	r.takeoverSection(p)
	r.sizeSection(p)
	r.waitingSection(p)
	return w.String()
}

func (r *report) fastPathSection(p func(string, ...any)) {
	f := r.fast
	p("## 1. Fast path")
	p("")
	p("The version is already recorded. The floor program (%s, stripped) creates a go-redis client with the gate's", fmtMiB(float64(r.floorSize)))
	p("options (RESP2, no `CLIENT SETINFO`), GETs the version key and exits. Floor and gate run alternately, %d times each", f.runs)
	p("after three uncounted rounds; wall time is from fork to `wait4`.")
	p("")
	p("CPU time of the child (user + system, from `wait4`), less sensitive to other load than wall time: the gate %s,",
		fmtMS(f.gateCPU.median()))
	p("the floor %s (medians), %.2f times. Minor page faults: the gate %.0f, the floor %.0f (medians).", fmtMS(f.floorCPU.median()),
		f.gateCPU.median()/f.floorCPU.median(), f.gateFlt.median(), f.floorFlt.median())
	p("")
	if f.peer.missing == "" {
		p("The peer, %s, runs in the same rounds: `migrate -path DIR -database postgres://... up` against the local", f.peer.name)
		p("PostgreSQL, whose one migration is already applied, so it connects, reads its version table and exits 0.")
		p("It is %.2f times the floor (medians; CPU %s). It waits on PostgreSQL where the gate waits on Redis: a", f.peerWall.median()/f.floor.median(), fmtMS(f.peerCPU.median()))
		p("reference for what a no-op run of a migration tool costs, not a like-for-like race.")
	} else {
		p("The peer (%s) was not measured: %s.", f.peer.name, f.peer.missing)
	}
	p("")
	p("Commands one fast-path run sends (`INFO commandstats` after `CONFIG RESETSTAT`): %s.", fmtCommands(f.commands))
	p("")
	p("Package initialization (`GODEBUG=inittrace=1`, %d runs): the gate %s (median; min %s, max %s), the floor %s.",
		len(r.gateInit), fmtMS(r.gateInit.median()), fmtMS(r.gateInit.min()), fmtMS(r.gateInit.max()), fmtMS(r.floorInit.median()))
	p("The gate's costliest initializers (median):")
	p("")
	p("| package | init time | allocated |")
	p("|---|---:|---:|")
	for _, c := range r.gateInitTop[:min(6, len(r.gateInitTop))] {
		p("| `%s` | %s | %.0f KiB |", c.pkg, fmtMS(c.ms), c.bytes/1024)
	}
	p("")
}

func (r *report) stormSection(p func(string, ...any)) {
	s := r.storm
	p("## 2. Startup storm")
	p("")
	p("%d replicas of version 2.0.0 started at once (one after the other as fast as the bench can fork) against one", s.replicas)
	p("redis-server that recorded 1.0.0, each with the task `-- sleep %s` and the default configuration", strings.TrimSuffix(s.task.String(), "s"))
	p("(`MAINTENANCE_LOCK_TTL=30s`). Total time runs from the first fork to the last exit; the record time is the")
	p("history entry's `finished` field; a waiter's exit is when the bench's `wait4` returns.")
	p("")
	p("The total is the holder's way to its task (first start to its `task started` line), the task (its `task started`")
	p("to its `task finished` line: the command under its supervisor), the way from there to the record, and the record")
	p("to the last exit.")
	p("")
	p("| run | all started after | first start to last exit | first start to task start | task | task end to record | commands per replica | task runs | non-zero exits | record to holder exit | record to waiter exit: median | max |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, run := range s.runs {
		d := sample(run.delays)
		p("| %d | %s | %s | %s | %s | %s | %.1f | %d | %d | %s | %s | %s |", i+1, fmtMS(ms(run.launch)), fmtMS(ms(run.total)),
			fmtMS(run.taskStart), fmtMS(run.taskTime), fmtMS(run.taskEnd), run.perReplica, run.taskRuns, run.failed, fmtMS(run.holderExit), fmtMS(d.median()), fmtMS(d.max()))
	}
	p("")
	d := s.delays()
	p("Record to waiter exit, all %d waiters of all runs: min %s, p10 %s, p50 %s, p90 %s, p99 %s, max %s.", len(d),
		fmtMS(d.min()), fmtMS(d.quantile(0.1)), fmtMS(d.quantile(0.5)), fmtMS(d.quantile(0.9)), fmtMS(d.quantile(0.99)), fmtMS(d.max()))
	w := s.woken()
	p("")
	p("Record to the waiter's own log line `another replica recorded the version, done` (the notice's latency, before")
	p("the process exits and the bench reaps it), %d waiters: min %s, p50 %s, p90 %s, max %s. The rest of the delay to", len(w),
		fmtMS(w.min()), fmtMS(w.quantile(0.5)), fmtMS(w.quantile(0.9)), fmtMS(w.max()))
	p("the exit is %d processes and the bench itself sharing %d cores at the same moment.", s.replicas, r.machine.cores)
	p("")
	p("After each storm of the gate, the bench runs the same storm of the floor program ([bench/floor](bench/floor/main.go)):")
	p("%d processes started the same way, the same task, and the least protocol that runs it once and wakes the others.", s.replicas)
	p("The replica whose `SET NX` takes a lock key runs `sleep %s` under `os/exec`, then sets the version and publishes", strings.TrimSuffix(s.task.String(), "s"))
	p("it; every other replica subscribes, reads the version once and exits on the notice. It has none of the gate's")
	p("safeguards (supervisor, lock refresh, fencing, progress, history): it is what such a storm costs on this machine.")
	p("")
	p("| run | gate: first start to last exit | floor program: first start to last exit | gate − floor |")
	p("|---:|---:|---:|---:|")
	for i, run := range s.runs {
		if i < len(s.floor) {
			p("| %d | %s | %s | %s |", i+1, fmtMS(ms(run.total)), fmtMS(s.floor[i]), fmtMS(ms(run.total)-s.floor[i]))
		}
	}
	p("")
	p("Commands per replica, by command (mean over all runs). Redis counts the commands a Lua script runs as well:")
	p("each EVALSHA of redislock's obtain script adds a SET and, when the lock is taken, a GETRANGE; the holder's")
	p("fenced writes (progress, record, refresh, release) are scripts too.")
	p("")
	p("| command | per replica |")
	p("|---|---:|")
	per := s.commandsPerReplica()
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if per[a] != per[b] {
			if per[a] > per[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	total := 0.0
	for _, n := range names {
		p("| %s | %.2f |", strings.ToUpper(n), per[n])
		total += per[n]
	}
	p("| total | %.2f |", total)
	p("")
}

func (r *report) takeoverSection(p func(string, ...any)) {
	t := r.takeover
	p("## 3. Takeover")
	p("")
	p("`MAINTENANCE_LOCK_TTL=%s` for both replicas. The holder stops at the crash point `before-tasks`", t.ttl)
	p("(`MAINTENANCE_TEST_PAUSE_AT`, `MAINTENANCE_TEST_PAUSE_FILE`): it holds the lock and its keeper refreshes it. A second")
	p("replica starts and logs that it waits; the holder is SIGKILLed; the figure is the time from the kill to the waiter's")
	p("record (history `finished`). The lock's TTL left at the kill (its PTTL, read just before) is what any waiter")
	p("must sit out.")
	p("")
	p("| run | TTL left at the kill | kill to record | kill to waiter exit |")
	p("|---:|---:|---:|---:|")
	for i, run := range t.runs {
		p("| %d | %s | %s | %s |", i+1, fmtMS(ms(run.ttlLeft)), fmtMS(ms(run.record)), fmtMS(ms(run.exit)))
	}
	p("")
}

func (r *report) sizeSection(p func(string, ...any)) {
	z := r.size
	p("## 4. Size and memory")
	p("")
	p("Peak RSS (`wait4` rusage `Maxrss` of the child): the gate %s (median; min %s, max %s), the floor %s.",
		fmtMiB(r.fast.gateRSS.median()), fmtMiB(r.fast.gateRSS.min()), fmtMiB(r.fast.gateRSS.max()), fmtMiB(r.fast.floorRSS.median()))
	p("")
	p("The stripped binary is %s (%d bytes). Its sections:", fmtMiB(float64(z.stripped)), z.stripped)
	p("")
	p("| section | size |")
	p("|---|---:|")
	for _, s := range z.sections {
		if s.size >= 4096 {
			p("| `%s` | %s |", s.name, fmtKiB(s.size))
		}
	}
	p("")
	p("What each module and package adds: symbol sizes (code, read-only data, data; not `.bss`, which takes no room")
	p("in the file) from `go tool nm -size -sort size` on an unstripped build of the same source, %s in all. The", fmtKiB(z.symbols))
	p("`.gopclntab` table (function names and line tables) is not in these sums; it grows with the code roughly in proportion.")
	p("")
	p("| module | symbols |")
	p("|---|---:|")
	for _, c := range z.modules {
		if c.bytes >= 2048 {
			p("| `%s` | %s |", c.name, fmtKiB(c.bytes))
		}
	}
	p("")
	p("What leaving one thing out would save (stripped size of a build of the same source with `go build -overlay`")
	p("or a build tag; nothing is removed from the product):")
	p("")
	p("| build | size | saves |")
	p("|---|---:|---:|")
	for _, w := range r.whatIfs {
		if w.size == 0 {
			p("| %s | does not build: %s | |", w.what, strings.ReplaceAll(w.note, "|", "\\|"))
			continue
		}
		p("| %s | %s | %s |", w.what, fmtMiB(float64(w.size)), fmtKiB(z.stripped-w.size))
	}
	p("")
	p("| package (top 25) | symbols |")
	p("|---|---:|")
	for _, c := range z.packages[:min(25, len(z.packages))] {
		p("| `%s` | %s |", c.name, fmtKiB(c.bytes))
	}
	p("")
}

// notMet explains, from what was measured, each target that is not met.
func (r *report) notMet() []string {
	var n []string
	if f := r.fast; f.ratio() > targetFastRatio {
		var top []string
		for _, c := range r.gateInitTop[:min(3, len(r.gateInitTop))] {
			top = append(top, fmt.Sprintf("`%s` %s", c.pkg, fmtMS(c.ms)))
		}
		n = append(n, fmt.Sprintf("Fast path: the gate takes %s, %.2f times the floor's %s. Package initialization alone is %s in the gate and %s in the floor; the costliest initializers are %s. The rest is the larger binary and heap to fault in (%.0f minor page faults against %.0f), the configuration, the logger and the signal handler the floor does without. The fast path itself sends what the floor sends: one HELLO and one GET.",
			fmtMS(f.gate.median()), f.ratio(), fmtMS(f.floor.median()), fmtMS(r.gateInit.median()), fmtMS(r.floorInit.median()),
			strings.Join(top, ", "), f.gateFlt.median(), f.floorFlt.median()))
	}
	if s := r.storm; s.totals().median() > ms(r.stormTarget()) {
		n = append(n, fmt.Sprintf("Startup storm: %s from the first start to the last exit, over task time plus %s; starting the %d processes alone took %s (median) on %d cores. "+
			"Of the time beyond the task (medians): %s until the holder started its task, %s of the task's %s spent starting and ending the command under its supervisor, "+
			"%s from its end to the record and %s from the record to the last exit: %d processes sharing %d cores at start and at the wake-up. "+
			"The floor program's storm, run the same way, took %s (median): %s of it beyond the task with no safeguard at all.",
			fmtMS(s.totals().median()), targetStormSlack, s.replicas, fmtMS(s.launches().median()), r.machine.cores,
			fmtMS(s.field(func(x stormRun) float64 { return x.taskStart }).median()),
			fmtMS(s.field(func(x stormRun) float64 { return x.taskTime }).median()-ms(s.task)), fmtMS(s.field(func(x stormRun) float64 { return x.taskTime }).median()),
			fmtMS(s.field(func(x stormRun) float64 { return x.taskEnd }).median()),
			fmtMS(s.field(func(x stormRun) float64 { return ms(x.total) - x.taskStart - x.taskTime - x.taskEnd }).median()),
			s.replicas, r.machine.cores, fmtMS(s.floor.median()), fmtMS(s.floor.median()-ms(s.task))))
	}
	if s := r.storm; s.perReplica().median() > targetCmdsReplica {
		n = append(n, fmt.Sprintf("Startup storm: %.1f Redis commands per replica, over %.0f; section 2 breaks them down by command.", s.perReplica().median(), targetCmdsReplica))
	}
	if c, ok := r.waiting.worstPerWaiterSecond(); !ok || c > targetWaitCost {
		n = append(n, fmt.Sprintf("Waiting: %.2f Redis commands per waiter-second at worst, over %.1f; section 5 gives each replica count and wait.", c, targetWaitCost))
	}
	if t := r.takeover; t.records().median() > ms(r.takeoverTarget()) {
		n = append(n, fmt.Sprintf("Takeover: %s from the kill to the record, over TTL + %s.", fmtMS(t.records().median()), targetTakeover))
	}
	if z := r.size; z.stripped > targetSize {
		var top []string
		for _, c := range z.modules[:min(6, len(z.modules))] {
			top = append(top, fmt.Sprintf("`%s` %s", c.name, fmtKiB(c.bytes)))
		}
		var saves []string
		for _, w := range r.whatIfs {
			if w.size > 0 {
				saves = append(saves, fmt.Sprintf("%s: %s", w.what, fmtKiB(z.stripped-w.size)))
			}
		}
		n = append(n, fmt.Sprintf("Size: the binary is %s, %s over %s. The largest contributors by module (symbol bytes; `.gopclntab` adds roughly as much again to code): %s. Measured savings: %s. See section 4.",
			fmtMiB(float64(z.stripped)), fmtKiB(z.stripped-targetSize), fmtMiB(targetSize), strings.Join(top, ", "), strings.Join(saves, "; ")))
	}
	if f := r.fast; f.gateRSS.median() > targetRSS {
		n = append(n, fmt.Sprintf("Memory: the fast path's peak RSS is %s, over %s.", fmtMiB(f.gateRSS.median()), fmtMiB(targetRSS)))
	}
	return n
}

func fmtKiB(b int64) string { return fmt.Sprintf("%d KiB", (b+512)/1024) }

// fmtCommands lists commands with their calls, most frequent first.
func fmtCommands(c map[string]int) string {
	names := make([]string, 0, len(c))
	total := 0
	for n, k := range c {
		names = append(names, n)
		total += k
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s × %d", strings.ToUpper(n), c[n]))
	}
	return fmt.Sprintf("%d in all (%s)", total, strings.Join(parts, ", "))
}

func fmtCounts(c []int) string {
	var s []string
	for _, n := range c {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ")
}

func (r *report) waitingSection(p func(string, ...any)) {
	w := r.waiting
	p("## 5. What waiting costs Redis")
	p("")
	p("For each replica count and wait: a holder of version 2.0.0 starts a task that lasts until the bench ends it; the")
	p("other replicas start and log that they wait. Then the bench resets Redis' statistics, lets them all wait for the")
	p("window, reads the statistics (the cost of waiting: commands over waiter-seconds, the holder's lock refreshes")
	p("included), ends the task and counts what the release, the wake-ups and the exits cost. Per replica is everything,")
	p("start to exit, over the replicas. A waiter's progress line comes every 10 s, the holder's refresh every third of")
	p("`MAINTENANCE_LOCK_TTL` (30 s): a window shorter than those may see none.")
	p("")
	if r.plot != "" {
		p("![Redis commands per replica and per waiter-second against the number of replicas](%s)", r.plot)
		p("")
	}
	p("| replicas | wait | all waiting after | commands to all waiting | in the window | per waiter-second | after the task | per replica | task runs | non-zero exits |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range w.cells {
		p("| %d | %s | %s | %d | %d | %.3f | %d | %.1f | %d | %d |", c.replicas, fmtMS(ms(c.window)), fmtMS(ms(c.launch)), c.before,
			c.during, c.perWaiterSecond(), c.after, c.perReplica, c.taskRuns, c.failed)
	}
	p("")
}
