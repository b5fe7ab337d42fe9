package tasks

import (
	"context"
	"fmt"
	"time"
)

// PeerDB before v0.31.0 has no GET /v1/instance/maintenance/status (it answers 404). There the gate
// follows a maintenance through what that release offers: GET /v1/instance/info, which reads
// INSTANCE_STATUS_MAINTENANCE exactly when the catalog's maintenance mode is on, and the mirrors' states.
// PeerDB's start workflow turns the mode on, pauses every running mirror, then backs the paused ones
// up for the end workflow to resume; its end workflow resumes them and turns the mode off last.
//
// What this path cannot see: whether the start workflow is over. Its backup step comes after the
// pause, and a start that failed after turning the mode on looks like one still pausing. So a start
// is taken as over only once the mode is on and every mirror at rest for settle and for settlePolls
// polls in a row; a mirror that never comes to rest keeps the task waiting until its timeout, whose
// error names it.

// The instance statuses of GET /v1/instance/info.
const (
	instanceReady       = "INSTANCE_STATUS_READY"
	instanceMaintenance = "INSTANCE_STATUS_MAINTENANCE"
)

// defaultSettle is how long a start on a release without the status endpoint keeps seeing the mode on
// and every mirror at rest before it is taken as over: PeerDB's pause activity re-checks a mirror
// every 10 s before it returns, then the backup runs.
const (
	defaultSettle = 30 * time.Second
	settlePolls   = 3
)

// legacyProgress is the progress log of the info path: a line per change of what is seen.
type legacyProgress struct {
	p         *PeerDB
	env       Env
	last      string
	restSince time.Time // since when the mode is on and every mirror at rest; zero when not
	restPolls int
}

func (lp *legacyProgress) seen(state string) {
	if state != lp.last {
		lp.env.Logger.Info("peerdb maintenance progress", "instance", lp.p.req.Redact(state))
		lp.last = state
	}
}

func (lp *legacyProgress) report() string {
	if lp.last == "" {
		return ""
	}
	return "last seen: " + lp.last
}

// instanceStatus reads GET /v1/instance/info.
func (p *PeerDB) instanceStatus(ctx context.Context, env Env) (string, error) {
	var info struct {
		Status string `json:"status"`
	}
	err := p.call(ctx, env, "GET", "/v1/instance/info", nil, &info, "status")
	return info.Status, err
}

// legacyStartStep is one poll of a start on the info path: done once the mode is on and every mirror
// at rest for settle and settlePolls polls in a row.
func (p *PeerDB) legacyStartStep(ctx context.Context, env Env, lp *legacyProgress) (bool, error) {
	status, err := p.instanceStatus(ctx, env)
	if err != nil {
		return false, err
	}
	if status != instanceMaintenance {
		lp.restSince, lp.restPolls = time.Time{}, 0
		lp.seen(fmt.Sprintf("instance %s: the start workflow has not turned maintenance mode on yet "+
			"(it first waits for running snapshots; a start that failed before looks the same)", status))
		return false, nil
	}
	mirrors, err := p.mirrorStates(ctx, env)
	if err != nil {
		return false, err
	}
	if moving := mirrors.notPaused(); len(moving) > 0 {
		lp.restSince, lp.restPolls = time.Time{}, 0
		lp.seen("instance " + status + ", mirrors not paused: " + joinMirrors(moving) +
			" (PeerDB before v0.31.0 does not tell a start still pausing from one that failed after turning the mode on)")
		return false, nil
	}
	if lp.restSince.IsZero() {
		lp.restSince = time.Now()
	}
	lp.restPolls++
	lp.seen(fmt.Sprintf("instance %s, %d mirrors at rest: waiting %s for the start workflow to back them up", status, len(mirrors), p.settle))
	return lp.restPolls >= settlePolls && time.Since(lp.restSince) >= p.settle, nil
}

// legacyEndStep is one poll of an end on the info path: done once the mode is off, which PeerDB's end
// workflow does last.
func (p *PeerDB) legacyEndStep(ctx context.Context, env Env, lp *legacyProgress) (bool, error) {
	status, err := p.instanceStatus(ctx, env)
	if err != nil {
		return false, err
	}
	lp.seen("instance " + status)
	return status == instanceReady, nil
}
