package tasks

import (
	"fmt"
	"log/slog"
	"time"
)

// progress is the operator's progress bar while a maintenance workflow runs: one log line per change
// of phase or pending activities, and at most one every progressEvery while nothing changes; a WARN
// when a workflow has had no pending activity for stallAfter, which is what a workflow sent to a task
// queue that no worker polls looks like.
type progress struct {
	log          *slog.Logger
	queue        string
	every, stall time.Duration
	redact       func(string) string // hides the task's secrets in what the server sent

	seen    bool
	last    maintenanceStatus
	lastKey string
	lastLog time.Time
	idle    time.Time // since when a workflow runs with no pending activity; zero when not
	warned  bool
}

func (p *PeerDB) newProgress(env Env) *progress {
	return &progress{log: env.Logger, queue: p.queueName(), every: p.progressEvery, stall: p.stallAfter, redact: p.req.Redact}
}

// observe takes one status answer, seen at now.
func (pr *progress) observe(s maintenanceStatus, now time.Time) {
	key := s.Phase.String() + "|" + s.activityNames()
	changed := !pr.seen || key != pr.lastKey
	if changed || now.Sub(pr.lastLog) >= pr.every {
		pr.log.Info("peerdb maintenance progress", "phase", s.Phase.String(), "maintenance_running", s.MaintenanceRunning,
			"pending_activities", pr.redact(s.activities()))
		pr.lastKey, pr.lastLog = key, now
	}
	pr.seen, pr.last = true, s

	if !s.workflowPhase() || len(s.PendingActivities) > 0 {
		pr.idle, pr.warned = time.Time{}, false
		return
	}
	if pr.idle.IsZero() || changed {
		pr.idle, pr.warned = now, false
	}
	if !pr.warned && now.Sub(pr.idle) >= pr.stall {
		pr.log.Warn("peerdb maintenance workflow makes no progress", "phase", s.Phase.String(), "task_queue", pr.queue,
			"stalled_ms", now.Sub(pr.idle).Milliseconds(), "hint", pr.hint())
		pr.warned = true
	}
}

// report says what was last seen, for the error of a wait that timed out: "" when nothing was.
func (pr *progress) report() string {
	if !pr.seen {
		return ""
	}
	out := "last seen: " + pr.last.String()
	if hint := pr.hint(); hint != "" {
		out += "; " + hint
	}
	return out
}

// hint says which worker would run a workflow that has no pending activity, or "" when the last
// status does not look stuck.
func (pr *progress) hint() string {
	if !pr.seen || !pr.last.workflowPhase() || len(pr.last.PendingActivities) > 0 {
		return ""
	}
	// PeerDB prefixes its queues with PEERDB_DEPLOYMENT_UID when set, as PeerDB's Helm chart sets it.
	prefixed := fmt.Sprintf(" (with PEERDB_DEPLOYMENT_UID set, as in PeerDB's Helm chart, the queue is <uid>-%s: "+
		"flow-api and the workers need the same PEERDB_DEPLOYMENT_UID)", pr.queue)
	if pr.queue == "maintenance-flow-task-queue" {
		return "the workflow waits on task queue maintenance-flow-task-queue, which only a flow worker started with " +
			"USE_MAINTENANCE_TASK_QUEUE=true polls: run one, or set task_queue: peerflow to use the stock flow-worker" + prefixed
	}
	return "the workflow waits on task queue peer-flow-task-queue, which flow-worker polls: check that flow-worker " +
		"runs and reaches Temporal" + prefixed
}
