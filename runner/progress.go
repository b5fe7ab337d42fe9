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

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// The progress hash of a gate holds "version" (the target), "fencing_token" (the latest holder's),
// "current" (the running task, for waiters) and "done:<task>" for every task finished for that version.
const donePrefix = "done:"

type doneMark struct {
	Finished     time.Time `json:"finished"`
	FencingToken int64     `json:"fencing_token"`
	// Digest is the digest of the task's definition that ran (invariant 7); a mark written by an
	// earlier release has none, and counts as not done.
	Digest string `json:"digest,omitempty"`
}

// Progress is the progress record of a version in progress.
type Progress struct {
	Version      string   `json:"version"`
	FencingToken int64    `json:"fencing_token"`
	Done         []string `json:"done"`
	// Digests holds, for every task in Done, the digest of the definition that ran ("" for a mark
	// without one).
	Digests map[string]string `json:"digests"`
	// Changed lists the done tasks whose definition differs from the task list loaded now: they run
	// again (filled by Status when it knows the task list).
	Changed []ChangedTask `json:"changed,omitempty"`
	// Current is the task a holder runs now, if it published one.
	Current *Current `json:"-"`
}

// IsDone reports whether task finished for the recorded target version under the definition whose
// digest is given (invariant 7): a mark of another definition, or one without a digest, is not done.
func (p *Progress) IsDone(task, digest string) bool {
	return p != nil && slices.Contains(p.Done, task) && digest != "" && p.Digests[task] == digest
}

// ChangedTask is a task finished in an earlier attempt under a definition other than the one loaded now.
type ChangedTask struct {
	Task string `json:"task"`
	// DoneDigest is the digest of the definition that ran ("" when the mark has none).
	DoneDigest string `json:"done_digest"`
	// LoadedDigest is the digest of the task as loaded now.
	LoadedDigest string `json:"loaded_digest"`
}

// changed compares the done marks with a task list: the tasks done under another definition.
func (p *Progress) changed(specs []tasks.Spec) []ChangedTask {
	var out []ChangedTask
	for _, s := range specs {
		if p != nil && slices.Contains(p.Done, s.Name) && !p.IsDone(s.Name, s.Digest) {
			out = append(out, ChangedTask{Task: s.Name, DoneDigest: p.Digests[s.Name], LoadedDigest: s.Digest})
		}
	}
	return out
}

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
	p := &Progress{Version: h["version"], Done: []string{}, Digests: map[string]string{}, Current: parseCurrent(h["current"])}
	p.FencingToken, _ = strconv.ParseInt(h["fencing_token"], 10, 64)
	for k, v := range h {
		if name, ok := strings.CutPrefix(k, donePrefix); ok {
			var m doneMark
			_ = json.Unmarshal([]byte(v), &m) // an unreadable mark has no digest: not done
			p.Done = append(p.Done, name)
			p.Digests[name] = m.Digest
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
