//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// kind is one fault the schedule can inject.
type kind string

const (
	killHolder   kind = "sigkill-holder"        // SIGKILL of the replica whose task runs; restarted later
	killWaiter   kind = "sigkill-waiter"        // SIGKILL of another replica; restarted later
	termHolder   kind = "sigterm-holder"        // SIGTERM of the replica whose task runs; restarted after it exits
	termWaiter   kind = "sigterm-waiter"        // SIGTERM of another replica
	redisStop    kind = "redis-sigstop"         // SIGSTOP of redis-server, SIGCONT after dur
	redisRestart kind = "redis-restart"         // SIGKILL and start of redis-server (append-only file kept)
	clientPause  kind = "client-pause"          // CLIENT PAUSE dur ALL
	proxyDelay   kind = "proxy-delay"           // the holder's connection holds every byte for dur, then delivers it
	proxyDrop    kind = "proxy-drop"            // the holder's commands reach Redis, their replies are lost for dur
	slowRecord   kind = "reply-delay-at-record" // once the last task ended, the holder's replies are held for dur
	lostRecord   kind = "reply-drop-at-record"  // once the last task ended, the holder's replies are lost for dur
	unlock       kind = "unlock"                // peerdb-maintenance unlock
	unlockForce  kind = "unlock-force"          // peerdb-maintenance unlock --force
	versionSHA   kind = "version-non-semver"    // the recorded version is set to a non-semver value from outside, then the holder is SIGKILLed
	versionNewer kind = "version-newer"         // the recorded version is set to a newer semver from outside
	pauseHolder  kind = "sigstop-holder"        // SIGSTOP of the holder's gate only (not its task), SIGCONT after dur > TTL
	pauseGrace   kind = "sigstop-holder-grace"  // SIGTERM of the holder, then SIGSTOP of its gate during the grace period
	editTasks    kind = "task-file-edited"      // once the first task finished, every replica is SIGKILLed, the first task's definition changes in the task file, and the replicas start again (a ConfigMap edited between two pod starts)
	// SIGKILL of the holder's exec supervisor once its task has an orphan without the tree's mark (the
	// round's tasks then start one under env -i, as sudo's env_reset or su - do)
	killSupervisor kind = "sigkill-supervisor-orphan"
	redisWipe      kind = "redis-restart-empty" // SIGKILL and start of redis-server without its data, while a task runs
)

// weighted lists the faults with how often the schedule picks each.
var weighted = []struct {
	k kind
	w int
}{
	{killHolder, 4}, {killWaiter, 2}, {termHolder, 4}, {termWaiter, 2}, {redisStop, 3}, {redisRestart, 2},
	{clientPause, 3}, {proxyDelay, 3}, {proxyDrop, 3}, {slowRecord, 2}, {lostRecord, 2}, {unlock, 2}, {unlockForce, 2},
	{versionSHA, 1}, {versionNewer, 1}, {pauseHolder, 2}, {pauseGrace, 2}, {editTasks, 2}, {killSupervisor, 3}, {redisWipe, 3},
}

// wipeTTL is the lock's TTL in a round that restarts Redis empty: long enough that a holder that
// noticed it only at its next refresh (TTL/3 after the last) would overlap the next holder by more
// than the bound the README states (wipeBound), so that the check on a dropped connection is what
// keeps the round within it.
const wipeTTL = 9 * time.Second

// wipeBeats lengthens every task of a round that restarts Redis empty, so that the holder's task can
// run on for a refresh interval (TTL/3) after the restart: what the overlap check needs to see one.
const wipeBeats = 40

// featured are the faults that only the newest safeguards handle (the supervisor's own lease, the
// sweep of what the gate adopts, the check on a dropped connection): round n of every seed, for n up
// to their number, injects featured[n-1] first, so that a short run (the CI's) tries each of them.
var featured = []kind{pauseHolder, killSupervisor, redisWipe, pauseGrace}

// blinding are the faults that keep the holder from seeing that Redis forgot its lock (its gate
// stopped, its connection cut off): with a restart without persistence they make a case beyond the
// bound the README states for it, so a round that restarts Redis empty does without them.
var blinding = []kind{pauseHolder, pauseGrace, proxyDelay, proxyDrop}

// event is one planned fault: at its offset from the round's start, for dur where it lasts.
type event struct {
	at   time.Duration
	kind kind
	dur  time.Duration
}

// taskPlan is one exec task of a round's task file.
type taskPlan struct {
	name       string
	beats      int  // heartbeats, one every 100ms, before the task ends
	ignoreTerm bool // trap '' TERM: only SIGKILL stops it
	fork       bool // a grandchild that beats until its parent kills it
	orphan     bool // a child under env -i (without the tree's mark), double-forked, that beats until killed
	when       bool // when: {from: "<1000.0.0"}: true for every semver previous version, unevaluable for others
	def        int  // the definition's generation (CHAOS_DEF in its env): an edit of the task file raises it
}

// round is what one round of the schedule does, all drawn from the seed and the round number.
type round struct {
	n        int
	version  string
	replicas int
	ttl      time.Duration
	grace    time.Duration
	tasks    []taskPlan
	events   []event
}

// plan draws round n of seed's schedule.
func plan(seed uint64, n, replicas int) round {
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	r := round{n: n, version: fmt.Sprintf("1.%d.0", n), replicas: replicas,
		ttl: time.Duration(1500+500*rng.IntN(4)) * time.Millisecond}
	// A grace period longer than the lock: only a keeper that bounds it by the lock keeps the tasks apart.
	r.grace = r.ttl * 2
	for i := range 2 + rng.IntN(2) {
		r.tasks = append(r.tasks, taskPlan{name: fmt.Sprintf("t%d", i+1), beats: 3 + rng.IntN(10),
			ignoreTerm: rng.IntN(2) == 0, fork: rng.IntN(3) == 0, when: i == 1})
	}
	total := 0
	for _, w := range weighted {
		total += w.w
	}
	for j := range 1 + rng.IntN(4) {
		pick, k := rng.IntN(total), kind("")
		for _, w := range weighted {
			if pick < w.w {
				k = w.k
				break
			}
			pick -= w.w
		}
		if j == 0 && n <= len(featured) {
			k = featured[n-1]
		}
		e := event{at: time.Duration(rng.IntN(4000)) * time.Millisecond, kind: k}
		switch k {
		case redisStop, clientPause, proxyDelay, proxyDrop:
			// From well inside the keeper's interval to beyond the TTL.
			e.dur = time.Duration(200+rng.IntN(int(r.ttl.Milliseconds()*2))) * time.Millisecond
		case pauseHolder, pauseGrace:
			// Longer than the lock: only the supervisor's own deadline keeps the tasks apart.
			e.dur = r.ttl + time.Duration(200+rng.IntN(int(r.ttl.Milliseconds())))*time.Millisecond
		case killSupervisor, redisWipe:
			// While the first holder's tasks run (they wait for one to run, and give up once all ended).
			e.at /= 4
		case slowRecord, lostRecord:
			// Beyond the replicas' read timeout, so that the record's outcome is unknown to the holder.
			e.dur = readTimeout + time.Duration(100+rng.IntN(int(r.ttl.Milliseconds())))*time.Millisecond
		}
		r.events = append(r.events, e)
	}
	// Every fourth round from the second edits the task file between attempts, so that a short run
	// (the CI seed's minute) meets it too.
	if n%4 == 2 && !slices.ContainsFunc(r.events, func(e event) bool { return e.kind == editTasks }) {
		r.events = append(r.events, event{at: time.Duration(rng.IntN(2000)) * time.Millisecond, kind: editTasks})
	}
	if r.has(redisWipe) {
		r.ttl, r.grace = wipeTTL, 2*wipeTTL
		for i := range r.tasks {
			r.tasks[i].beats += wipeBeats
		}
		drop := blinding
		if n <= len(featured) && slices.Contains(blinding, featured[n-1]) {
			drop = []kind{redisWipe} // the featured fault stays
		}
		r.events = slices.DeleteFunc(r.events, func(e event) bool { return slices.Contains(drop, e.kind) })
	}
	if r.has(killSupervisor) {
		for i := range r.tasks {
			r.tasks[i].orphan = true
		}
	}
	slices.SortStableFunc(r.events, func(a, b event) int { return int(a.at - b.at) })
	return r
}

// has reports whether the round injects fault k.
func (r round) has(k kind) bool {
	return slices.ContainsFunc(r.events, func(e event) bool { return e.kind == k })
}

// faults lists the round's faults by name, in the order they are injected.
func (r round) faults() []string {
	var out []string
	for _, e := range r.events {
		out = append(out, string(e.kind))
	}
	return out
}

// tampered reports whether the round changes the recorded version from outside, so that its own
// version is not expected to be recorded.
func (r round) tampered() bool {
	return slices.ContainsFunc(r.events, func(e event) bool { return e.kind == versionSHA || e.kind == versionNewer })
}

func (r round) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "round %d: version %s, %d replicas, MAINTENANCE_LOCK_TTL=%s, grace_period=%s\n", r.n, r.version, r.replicas, r.ttl, r.grace)
	for _, t := range r.tasks {
		fmt.Fprintf(&b, "  task %s: %d beats, ignores SIGTERM %t, forks a grandchild %t, an orphan without the mark %t, when.from %t\n",
			t.name, t.beats, t.ignoreTerm, t.fork, t.orphan, t.when)
	}
	for _, e := range r.events {
		fmt.Fprintf(&b, "  at %6dms %s", e.at.Milliseconds(), e.kind)
		if e.dur > 0 {
			fmt.Fprintf(&b, " for %dms", e.dur.Milliseconds())
		}
		b.WriteString("\n")
	}
	return b.String()
}
