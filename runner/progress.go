package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The progress hash of a gate holds "version" (the target), "fencing_token" (the latest holder's),
// "current" (the running task, for waiters) and "done:<task>" for every task finished for that version.
const donePrefix = "done:"

type doneMark struct {
	Finished     time.Time `json:"finished"`
	FencingToken int64     `json:"fencing_token"`
}

// Progress is the progress record of a version in progress.
type Progress struct {
	Version      string   `json:"version"`
	FencingToken int64    `json:"fencing_token"`
	Done         []string `json:"done"`
	// Current is the task a holder runs now, if it published one.
	Current *Current `json:"-"`
}

// IsDone reports whether task finished for the recorded target version.
func (p *Progress) IsDone(task string) bool { return p != nil && slices.Contains(p.Done, task) }

// Current is the task a holder is running, as published in the progress hash.
type Current struct {
	Step    string    `json:"step"` // "3/6"
	Task    string    `json:"task"`
	Started time.Time `json:"started"`
	Holder  string    `json:"holder"`
}

// readProgress reads the progress hash; nil when there is none.
func (r *Runner) readProgress(ctx context.Context) (*Progress, error) {
	h, err := r.rdb.HGetAll(ctx, r.keys.Progress).Result()
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	p := &Progress{Version: h["version"], Done: []string{}, Current: parseCurrent(h["current"])}
	p.FencingToken, _ = strconv.ParseInt(h["fencing_token"], 10, 64)
	for k := range h {
		if name, ok := strings.CutPrefix(k, donePrefix); ok {
			p.Done = append(p.Done, name)
		}
	}
	sort.Strings(p.Done)
	return p, nil
}

// currentTask reads only the running task: what a waiter logs every 10s.
func (r *Runner) currentTask(ctx context.Context) *Current {
	v, err := r.rdb.HGet(ctx, r.keys.Progress, "current").Result()
	if err != nil {
		return nil
	}
	return parseCurrent(v)
}

func parseCurrent(v string) *Current {
	var c Current
	if v == "" || json.Unmarshal([]byte(v), &c) != nil {
		return nil
	}
	return &c
}
