package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// mirrorStatusConcurrency bounds the POST /v1/mirrors/status requests in flight at once, and
// maxMirrorStates how many mirrors one check asks about one by one: a catalog with more is read
// through the list's status only (PeerDB v0.36.7 on).
const (
	mirrorStatusConcurrency = 4
	maxMirrorStates         = 500
)

// mirrorStates lists PeerDB's mirrors with each one's state: the list's status where the release
// gives it (v0.36.7 on), else the mirror's currentFlowState from POST /v1/mirrors/status, one request
// per mirror. A mirror that is gone by the time its state is asked (v0.30.0 answers 500 "no rows in
// result set", a 404 is read the same way) is left out once a second look at the list confirms it.
// An empty state is never taken for one: the answer is not flow-api's.
func (p *PeerDB) mirrorStates(ctx context.Context, env Env) (mirrorList, error) {
	ms, err := p.mirrors(ctx, env)
	if err != nil {
		return nil, err
	}
	var ask []string
	for _, m := range ms {
		if m.Status == "" {
			ask = append(ask, m.Name)
		}
	}
	if len(ask) == 0 {
		return ms, nil
	}
	if len(ask) > maxMirrorStates {
		return nil, fmt.Errorf("GET /v1/mirrors/list gives no status for %d mirrors, more than the %d the gate asks about one by one "+
			"(PeerDB v0.36.7 on gives each mirror's status in the list)", len(ask), maxMirrorStates)
	}
	if !p.statesLogged {
		p.statesLogged = true
		env.Logger.Info("peerdb mirror states read one by one", "reason", "GET /v1/mirrors/list gives no status (PeerDB before v0.36.7)",
			"endpoint", "POST /v1/mirrors/status", "mirrors", len(ask))
	}
	states, maybeGone, err := p.flowStates(ctx, env, ask, true)
	if err != nil {
		return nil, err
	}
	if len(maybeGone) > 0 {
		again, err := p.mirrors(ctx, env)
		if err != nil {
			return nil, err
		}
		var still []string
		for _, name := range maybeGone {
			if slices.ContainsFunc(again, func(m mirror) bool { return m.Name == name }) {
				still = append(still, name)
			} else {
				env.Logger.Info("peerdb mirror gone", "mirror", p.req.Redact(name), "reason", "dropped between the list and its status request")
			}
		}
		more, _, err := p.flowStates(ctx, env, still, false)
		if err != nil {
			return nil, err
		}
		for name, s := range more {
			states[name] = s
		}
	}
	out := ms[:0:0]
	for _, m := range ms {
		if m.Status == "" {
			s, ok := states[m.Name]
			if !ok {
				continue // gone
			}
			m.Status = s
		}
		out = append(out, m)
	}
	return out, nil
}

// flowStates asks each named mirror's currentFlowState, mirrorStatusConcurrency at a time, each with
// the retries of every call. With mayBeGone, a 404 or 500 answer is not retried: the mirror's name
// goes to gone, for the caller to look the list up again.
func (p *PeerDB) flowStates(ctx context.Context, env Env, names []string, mayBeGone bool) (map[string]string, []string, error) {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		states = map[string]string{}
		gone   []string
		errs   []error
	)
	sem := make(chan struct{}, mirrorStatusConcurrency)
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			state, err := p.flowState(ctx, env, name, mayBeGone)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				states[name] = state
			case mayBeGone && mirrorMissing(err):
				gone = append(gone, name)
			default:
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, nil, errs[0]
	}
	slices.Sort(gone)
	return states, gone, nil
}

// flowState asks one mirror's currentFlowState, waiting out transient failures; with mayBeGone, a 404
// or 500 answer ends the attempts at once.
func (p *PeerDB) flowState(ctx context.Context, env Env, name string, mayBeGone bool) (string, error) {
	body := fmt.Appendf(nil, `{"flowJobName":%q}`, name)
	var s struct {
		CurrentFlowState string `json:"currentFlowState"`
	}
	_, err := p.backoff.retry(ctx, env.Logger, func() (bool, error) {
		err := p.call(ctx, env, "POST", "/v1/mirrors/status", body, &s, "currentFlowState")
		return httpcall.Transient(err) && !(mayBeGone && mirrorMissing(err)), err
	})
	return s.CurrentFlowState, err
}

// mirrorMissing reports whether err is the answer of POST /v1/mirrors/status for a mirror that may
// not exist: 404, or 500 (v0.30.0: "unable to get the workflow ID of mirror ...: no rows in result set").
func mirrorMissing(err error) bool {
	var e *FlowAPIError
	return errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusInternalServerError)
}

// notPaused names the mirrors that still move data, with their status. Every kind counts: PeerDB's
// start workflow pauses every running mirror (PauseMirrorIfRunning), CDC or not. A mirror without a
// status is not at rest.
func (ms mirrorList) notPaused() []string {
	var out []string
	for _, m := range ms {
		if !slices.Contains(mirrorsAtRest, m.Status) {
			status := m.Status
			if status == "" {
				status = "no status"
			}
			out = append(out, m.Name+" ("+status+")")
		}
	}
	return out
}

// joinMirrors lists mirrors for an error or a log line.
func joinMirrors(names []string) string { return strings.Join(names, ", ") }
