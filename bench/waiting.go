package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// waitCell is the storms of one replica count and one task length.
type waitCell struct {
	replicas int
	task     time.Duration
	run      stormRun
}

// waitResult is figure 5: what waiting costs Redis as replicas and waits grow.
type waitResult struct {
	counts []int
	tasks  []time.Duration // shortest first
	cells  []waitCell
}

func (w *waitResult) cell(replicas int, task time.Duration) *stormRun {
	for i := range w.cells {
		if w.cells[i].replicas == replicas && w.cells[i].task == task {
			return &w.cells[i].run
		}
	}
	return nil
}

func commandTotal(c map[string]int) int {
	n := 0
	for _, k := range c {
		n += k
	}
	return n
}

// perWaiterSecond is the cost of waiting itself at one replica count: the commands the longer wait sent
// beyond the shorter one, over the waiter-seconds it added. The fixed cost of a replica (connect, try the
// lock, read the outcome) cancels out; a negative figure means the longer wait sent fewer commands, within
// the variation of that fixed cost.
func (w *waitResult) perWaiterSecond(replicas int) (float64, bool) {
	short, long := w.cell(replicas, w.tasks[0]), w.cell(replicas, w.tasks[len(w.tasks)-1])
	if short == nil || long == nil || long.waiterSecs <= short.waiterSecs {
		return 0, false
	}
	extra := float64(commandTotal(long.commands) - commandTotal(short.commands))
	return extra / (long.waiterSecs - short.waiterSecs), true
}

// worstPerWaiterSecond is the largest per-waiter-second cost over the replica counts measured.
func (w *waitResult) worstPerWaiterSecond() (float64, bool) {
	worst, any := math.Inf(-1), false
	for _, n := range w.counts {
		if c, ok := w.perWaiterSecond(n); ok {
			worst, any = max(worst, c), true
		}
	}
	return worst, any
}

// benchWaiting runs one storm per replica count and task length: every replica but the holder waits
// for the length of the task.
func benchWaiting(ctx context.Context, b *binaries, srv *redisServer, counts []int, tasks []time.Duration) (*waitResult, error) {
	res := &waitResult{counts: counts, tasks: tasks}
	for _, n := range counts {
		for _, t := range tasks {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			progress("waiting: %d replicas, task %s", n, t)
			run, err := stormOnce(ctx, b, srv, n, t)
			if err != nil {
				return nil, fmt.Errorf("waiting, %d replicas, task %s: %w", n, t, err)
			}
			res.cells = append(res.cells, waitCell{replicas: n, task: t, run: *run})
		}
	}
	return res, nil
}
