package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// waitCell is one round of figure 5: a holder whose task lasts until the bench ends it, and replicas-1
// waiters, all of them waiting before the measured window opens.
type waitCell struct {
	replicas   int
	wait       time.Duration // the measured window
	launch     time.Duration // the first waiter's fork to the last one's "waiting" line
	window     time.Duration // measured: from the reset of the statistics to their read
	before     int           // commands until every waiter waited (the holder's start included)
	during     int           // commands in the window: the cost of waiting
	after      int           // commands from the task's end to the last exit (release, wake-ups, exits)
	failed     int
	taskRuns   int
	history    int
	perReplica float64 // before + during + after, over replicas
}

// perWaiterSecond is the cost of waiting itself: commands in the window over the waiter-seconds in it.
func (c waitCell) perWaiterSecond() float64 {
	return float64(c.during) / (float64(c.replicas-1) * c.window.Seconds())
}

// waitResult is figure 5: what waiting costs Redis as replicas and waits grow.
type waitResult struct {
	counts []int
	waits  []time.Duration
	cells  []waitCell
}

func (w *waitResult) cell(replicas int, wait time.Duration) *waitCell {
	for i := range w.cells {
		if w.cells[i].replicas == replicas && w.cells[i].wait == wait {
			return &w.cells[i]
		}
	}
	return nil
}

// worstPerWaiterSecond is the largest per-waiter-second cost over every round.
func (w *waitResult) worstPerWaiterSecond() (float64, bool) {
	worst := math.Inf(-1)
	for _, c := range w.cells {
		worst = max(worst, c.perWaiterSecond())
	}
	return worst, len(w.cells) > 0
}

func commandTotal(c map[string]int) int {
	n := 0
	for _, k := range c {
		n += k
	}
	return n
}

// benchWaiting runs one round per replica count and wait.
func benchWaiting(ctx context.Context, b *binaries, srv *redisServer, dir string, counts []int, waits []time.Duration) (*waitResult, error) {
	res := &waitResult{counts: counts, waits: waits}
	for _, n := range counts {
		for _, w := range waits {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			progress("waiting: %d replicas, %s of waiting measured", n, w)
			c, err := waitOnce(ctx, b, srv, dir, n, w)
			if err != nil {
				return nil, fmt.Errorf("waiting, %d replicas, %s: %w", n, w, err)
			}
			res.cells = append(res.cells, *c)
		}
	}
	return res, nil
}

// waitOnce starts a holder whose task waits for a file, then the waiters; once every waiter logged that
// it waits, it counts the commands of a window of length wait, then creates the file and waits for all.
func waitOnce(ctx context.Context, b *binaries, srv *redisServer, dir string, replicas int, wait time.Duration) (*waitCell, error) {
	if err := srv.reset(ctx); err != nil {
		return nil, err
	}
	if err := srv.client.Set(ctx, gateKeys.Version, "1.0.0", 0).Err(); err != nil {
		return nil, err
	}
	done := filepath.Join(dir, "task-done-"+strconv.Itoa(replicas)+"-"+wait.String())
	_ = os.Remove(done)
	defer os.Remove(done)
	task := []string{"--", "sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done`, done}
	env := func(i int) []string {
		return []string{"PEERDB_DEPLOYMENT_VERSION=2.0.0", "REDIS_URL=" + srv.url(), "MAINTENANCE_HOLDER=replica-" + strconv.Itoa(i)}
	}
	procs := make([]*proc, 0, replicas)
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	holder, err := startProc(b.gate, env(0), task...)
	if err != nil {
		return nil, err
	}
	procs = append(procs, holder)
	if err := until(ctx, 30*time.Second, func() bool { return holder.stderr.has("task started") }); err != nil {
		return nil, fmt.Errorf("the holder did not start its task: %w\n%s", err, holder.stderr)
	}
	first := time.Now()
	for i := 1; i < replicas; i++ {
		p, err := startProc(b.gate, env(i), task...)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	waiting := func() bool {
		for _, p := range procs[1:] {
			if !p.stderr.has("another replica holds the lock, waiting") {
				return false
			}
		}
		return true
	}
	if err := until(ctx, 120*time.Second, waiting); err != nil {
		return nil, fmt.Errorf("not every replica waited: %w", err)
	}
	c := &waitCell{replicas: replicas, wait: wait, launch: time.Since(first)}
	stats, err := srv.commandStats(ctx)
	if err != nil {
		return nil, err
	}
	c.before = commandTotal(stats)
	if err := srv.resetStats(ctx); err != nil {
		return nil, err
	}
	opened := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(wait):
	}
	if stats, err = srv.commandStats(ctx); err != nil {
		return nil, err
	}
	c.window = time.Since(opened)
	c.during = commandTotal(stats)
	if err := srv.resetStats(ctx); err != nil {
		return nil, err
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range procs {
		if err := p.wait(ctx, time.Until(deadline)); err != nil {
			return nil, err
		}
		if p.code != 0 {
			c.failed++
		}
		if p.stderr.has("task started") {
			c.taskRuns++
		}
	}
	if stats, err = srv.commandStats(ctx); err != nil {
		return nil, err
	}
	c.after = commandTotal(stats)
	c.perReplica = float64(c.before+c.during+c.after) / float64(replicas)
	_, c.history, err = recordTime(ctx, srv)
	return c, err
}

// until polls cond every 20 ms until it holds, ctx ends or timeout passes.
func until(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
