package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// stormRun is one startup storm: many replicas of a new version started at once.
type stormRun struct {
	total      time.Duration // first start to last exit
	launch     time.Duration // first start to last start
	commands   map[string]int
	perReplica float64
	taskRuns   int
	failed     int       // replicas that exited non-zero
	history    int       // history entries: 1 when the version was recorded once
	delays     []float64 // ms from the record to each waiter's exit
	woken      []float64 // ms from the record to each waiter's log line saying it is done
	holderExit float64   // ms from the record to the holder's exit
	taskStart  float64   // ms from the first start to the holder's "task started"
	taskEnd    float64   // ms from the holder's "task finished" to the record
	taskTime   float64   // ms from the holder's "task started" to its "task finished"
}

// stormResult is figure 2.
type stormResult struct {
	replicas int
	task     time.Duration
	runs     []stormRun
	floor    sample // ms, first start to last exit of the floor program's storm, one per run
}

func (r *stormResult) totals() (s sample) {
	for _, run := range r.runs {
		s = append(s, ms(run.total))
	}
	return s
}

func (r *stormResult) perReplica() (s sample) {
	for _, run := range r.runs {
		s = append(s, run.perReplica)
	}
	return s
}

func (r *stormResult) launches() (s sample) {
	for _, run := range r.runs {
		s = append(s, ms(run.launch))
	}
	return s
}

// field is one figure of every run.
func (r *stormResult) field(f func(stormRun) float64) (s sample) {
	for _, run := range r.runs {
		s = append(s, f(run))
	}
	return s
}

// delays pools the record-to-exit delays of every waiter of every run.
func (r *stormResult) delays() (s sample) {
	for _, run := range r.runs {
		s = append(s, run.delays...)
	}
	return s
}

// woken pools the record-to-"done" log line delays of every waiter of every run.
func (r *stormResult) woken() (s sample) {
	for _, run := range r.runs {
		s = append(s, run.woken...)
	}
	return s
}

// commands sums the per-command calls of every run and divides by the number of replicas started.
func (r *stormResult) commandsPerReplica() map[string]float64 {
	per := map[string]float64{}
	for _, run := range r.runs {
		for name, n := range run.commands {
			per[name] += float64(n) / float64(r.replicas*len(r.runs))
		}
	}
	return per
}

// benchStorm starts replicas of version 2.0.0 at once against a Redis that recorded 1.0.0, each with
// the task "sleep <task>", and waits for all of them; after each storm of the gate, the same storm of the
// floor program (bench/floor), so that the two are measured side by side.
func benchStorm(ctx context.Context, b *binaries, srv *redisServer, replicas, runs int, task time.Duration) (*stormResult, error) {
	res := &stormResult{replicas: replicas, task: task}
	for i := range runs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		run, err := stormOnce(ctx, b, srv, replicas, task)
		if err != nil {
			return nil, fmt.Errorf("storm %d: %w", i+1, err)
		}
		res.runs = append(res.runs, *run)
		total, err := floorStormOnce(ctx, b, srv, replicas, task)
		if err != nil {
			return nil, fmt.Errorf("floor storm %d: %w", i+1, err)
		}
		res.floor = append(res.floor, ms(total))
	}
	return res, nil
}

// floorStormOnce is the storm of the floor program: as many replicas started the same way, the same
// task, the least protocol that runs it once and wakes the others (see bench/floor).
func floorStormOnce(ctx context.Context, b *binaries, srv *redisServer, replicas int, task time.Duration) (time.Duration, error) {
	if err := srv.client.FlushAll(ctx).Err(); err != nil {
		return 0, err
	}
	secs := strconv.FormatFloat(task.Seconds(), 'f', -1, 64)
	procs, total, err := storm(ctx, replicas, task, func(int) (*proc, error) {
		return startProc(b.floor, []string{"PEERDB_DEPLOYMENT_VERSION=2.0.0", "REDIS_URL=" + srv.url(),
			"FLOOR_KEY=" + gateKeys.Version, "FLOOR_STORM_TASK=" + secs})
	})
	if err != nil {
		return 0, err
	}
	for i, p := range procs {
		if p.code != 0 {
			return 0, fmt.Errorf("floor replica %d exited %d: %s", i, p.code, p.stderr.String())
		}
	}
	return total, nil
}

// storm starts replicas processes with start(i), one after the other as fast as it can, and waits for
// all of them (a task's length and a minute at most): the processes, all exited, and the time from the
// first start to the last exit. Whatever is still running when it fails is killed.
func storm(ctx context.Context, replicas int, task time.Duration, start func(i int) (*proc, error)) ([]*proc, time.Duration, error) {
	procs := make([]*proc, 0, replicas)
	fail := func(err error) ([]*proc, time.Duration, error) {
		for _, p := range procs {
			p.kill()
		}
		return nil, 0, err
	}
	for i := range replicas {
		p, err := start(i)
		if err != nil {
			return fail(err)
		}
		procs = append(procs, p)
	}
	deadline := time.Now().Add(task + 60*time.Second)
	var last time.Time
	for _, p := range procs {
		if err := p.wait(ctx, time.Until(deadline)); err != nil {
			return fail(err)
		}
		last = later(last, p.ended)
	}
	return procs, last.Sub(procs[0].started), nil
}

func stormOnce(ctx context.Context, b *binaries, srv *redisServer, replicas int, task time.Duration) (*stormRun, error) {
	if err := srv.client.FlushAll(ctx).Err(); err != nil {
		return nil, err
	}
	if err := srv.client.Set(ctx, gateKeys.Version, "1.0.0", 0).Err(); err != nil {
		return nil, err
	}
	if err := srv.resetStats(ctx); err != nil {
		return nil, err
	}
	secs := strconv.FormatFloat(task.Seconds(), 'f', -1, 64)
	procs, total, err := storm(ctx, replicas, task, func(i int) (*proc, error) {
		return startProc(b.gate, []string{"PEERDB_DEPLOYMENT_VERSION=2.0.0", "REDIS_URL=" + srv.url(),
			"MAINTENANCE_HOLDER=replica-" + strconv.Itoa(i)}, "--", "sleep", secs)
	})
	if err != nil {
		return nil, err
	}
	run := &stormRun{launch: procs[len(procs)-1].started.Sub(procs[0].started), total: total}
	if run.commands, err = srv.commandStats(ctx); err != nil {
		return nil, err
	}
	n := 0
	for _, c := range run.commands {
		n += c
	}
	run.perReplica = float64(n) / float64(replicas)
	recorded, entries, err := recordTime(ctx, srv)
	run.history = entries
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		if p.code != 0 {
			run.failed++
		}
		if p.stderr.has("task started") {
			run.taskRuns++
		}
		d := ms(p.ended.Sub(recorded))
		if p.stderr.has("maintenance done, version recorded") {
			run.holderExit = d
			if t, ok := p.stderr.logged("task started"); ok {
				run.taskStart = ms(t.Sub(procs[0].started))
			}
			if t, ok := p.stderr.logged("task finished"); ok {
				run.taskEnd = ms(recorded.Sub(t))
				if s, ok := p.stderr.logged("task started"); ok {
					run.taskTime = ms(t.Sub(s))
				}
			}
			continue
		}
		run.delays = append(run.delays, d)
		if t, ok := p.stderr.logged("another replica recorded the version, done"); ok {
			run.woken = append(run.woken, ms(t.Sub(recorded)))
		}
	}
	return run, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// recordTime is the "finished" time of the newest history entry, which must be a success: the record of
// the version. It also returns the number of history entries (one when the version was recorded once).
func recordTime(ctx context.Context, srv *redisServer) (time.Time, int, error) {
	msgs, err := srv.client.XRevRangeN(ctx, gateKeys.History, "+", "-", 10).Result()
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("read history: %w", err)
	}
	if len(msgs) == 0 {
		return time.Time{}, 0, fmt.Errorf("history is empty: the version was never recorded")
	}
	if o, _ := msgs[0].Values["outcome"].(string); o != "succeeded" {
		return time.Time{}, len(msgs), fmt.Errorf("newest history entry has outcome %q, want succeeded", o)
	}
	f, _ := msgs[0].Values["finished"].(string)
	t, err := time.Parse(time.RFC3339Nano, f)
	if err != nil {
		return time.Time{}, len(msgs), fmt.Errorf("history entry finished %q: %w", f, err)
	}
	return t, len(msgs), nil
}
