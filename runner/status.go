package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// LockState is the lock as status shows it.
type LockState struct {
	lock.Holder
	TTL time.Duration `json:"-"`
	// TTLMillis is TTL in milliseconds, for JSON readers.
	TTLMillis int64 `json:"ttl_ms"`
}

// Status is the state of a gate: what `peerdb-maintenance status` prints.
type Status struct {
	Gate     string     `json:"gate"`
	Version  string     `json:"version"`
	Lock     *LockState `json:"lock"`
	Current  *Current   `json:"current_task"`
	Progress *Progress  `json:"progress"`
	History  []Entry    `json:"history"`
}

// Status reads the gate's state with a few read-only commands; it takes no lock.
func (r *Runner) Status(ctx context.Context, historyN int64) (*Status, error) {
	v, err := r.readVersion(ctx)
	if err != nil {
		return nil, err
	}
	st := &Status{Gate: r.keys.Tag, Version: v, History: []Entry{}}
	h, ttl, err := r.locker.Read(ctx)
	if err != nil {
		return nil, err
	}
	if h != nil {
		st.Lock = &LockState{Holder: *h, TTL: ttl, TTLMillis: ttl.Milliseconds()}
	}
	if st.Progress, err = r.readProgress(ctx); err != nil {
		return nil, err
	}
	if st.Progress != nil {
		st.Progress.Changed = st.Progress.changed(r.specs)
	}
	if st.Progress != nil && st.Lock != nil {
		st.Current = st.Progress.Current
	}
	st.History, err = r.History(ctx, historyN)
	return st, err
}

// History returns the last n history entries, newest first.
func (r *Runner) History(ctx context.Context, n int64) ([]Entry, error) {
	msgs, err := r.rdb.XRevRangeN(ctx, r.keys.History, "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, entryFromStream(m))
	}
	return out, nil
}

// Connect waits for Redis as a run does (MAINTENANCE_CONNECT_TIMEOUT, refused credentials fail at once).
func (r *Runner) Connect(ctx context.Context) error {
	_, err := r.readVersion(ctx)
	return err
}
