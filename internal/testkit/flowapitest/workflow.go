package flowapitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// The workflow ids the API answers with.
const (
	StartWorkflow = "start-maintenance"
	EndWorkflow   = "end-maintenance"
)

// The phases of GET /v1/instance/maintenance/status.
const (
	PhaseUnknown = "MAINTENANCE_PHASE_UNKNOWN"
	PhaseStart   = "MAINTENANCE_PHASE_START_MAINTENANCE"
	PhaseEnabled = "MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED"
	PhaseEnd     = "MAINTENANCE_PHASE_END_MAINTENANCE"
)

const statusPath = "/v1/instance/maintenance/status"

// step is one stretch of a workflow: the activities pending during it, and what it changes when it is
// over. The first step of every workflow is the wait for a worker to pick up its first task: nothing is
// pending, and it lasts until a worker polls the workflow's queue.
type step struct {
	activities []string
	done       func(s *Server)
}

// The recorded activities: BackgroundAlerter runs for the whole workflow, next to the current one.
const alerter = "BackgroundAlerter"

// The start workflow as PeerDB's maintenance_flow.go runs it: wait for snapshots, turn the mode on,
// pause every running mirror (CDC or not), then back the paused ones up for the end workflow.
var startSteps = []step{
	{},
	{activities: []string{alerter, "WaitForRunningSnapshotsAndIntermediateStates"}},
	{activities: []string{alerter, "EnableMaintenanceMode"}, done: func(s *Server) { s.ModeEnabled = true }},
	{activities: []string{alerter, "PauseMirrorIfRunning"}, done: (*Server).pauseRunning},
	{activities: []string{alerter, "PauseMirrorIfRunning"}, done: func(s *Server) { s.setMirrors(s.pausing, "STATUS_PAUSING", "STATUS_PAUSED") }},
	{activities: []string{alerter, "BackupAllPreviouslyRunningFlows"}, done: (*Server).backUpPaused},
	{activities: []string{alerter}},
}

// The end workflow: resume the backed-up mirrors, then turn the mode off last.
var endSteps = []step{
	{},
	{activities: []string{alerter, "GetBackedUpFlows"}, done: func(s *Server) {
		s.setMirrors(s.backedUp, "STATUS_PAUSED", "STATUS_RUNNING")
		s.backedUp = nil
	}},
	{activities: []string{alerter, "DisableMaintenanceMode"}, done: func(s *Server) { s.ModeEnabled = false }},
	{activities: []string{alerter}},
}

// backUpPaused records the mirrors this start paused, for the end workflow. PeerDB's
// BackupAllPreviouslyRunningFlows (maintenance_activity.go) inserts one row per mirror it paused into
// maintenance.maintenance_flows, and only the end workflow's CleanBackedUpFlows (maintenance_flow.go)
// retires them: a second start while the mode is on pauses and inserts nothing, but the first start's
// rows stay, and the end still resumes those mirrors (recordings README, "Paused is not started"). So the
// backup is added to, never replaced. The table has no unique key (V40__maintenance_flows.sql), so a mirror
// resumed by hand and paused again by a later start has two rows, as it has two entries here.
func (s *Server) backUpPaused() {
	s.backedUp, s.pausing = append(s.backedUp, s.pausing...), nil
}

// BackedUp returns the mirrors backed up since the last end workflow, one entry per backup row, for the
// end workflow to resume: a start that ends before its backup step adds none. Call it inside Do.
func (s *Server) BackedUp() []string { return append([]string(nil), s.backedUp...) }

// workflow is a running start or end workflow.
type workflow struct {
	runID string
	queue string
	steps []step
	pos   int
	since time.Time // when the current step began
}

// Workflow reports the task queue and run id of the running workflow id (StartWorkflow or EndWorkflow),
// as `temporal workflow describe` would; ok is false when it is not running. Call it inside Do.
func (s *Server) Workflow(id string) (queue, runID string, ok bool) {
	wf := s.workflows[id]
	if wf == nil {
		return "", "", false
	}
	return wf.queue, wf.runID, true
}

func (s *Server) maintenance(w http.ResponseWriter, body []byte) {
	var req struct {
		Status               string `json:"status"`
		UsePeerflowTaskQueue bool   `json:"usePeerflowTaskQueue"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, Fault{Status: http.StatusBadRequest, Code: 3, Message: err.Error()})
		return
	}
	id, steps := "", []step(nil)
	switch req.Status {
	case "MAINTENANCE_STATUS_START":
		id, steps = StartWorkflow, startSteps
	case "MAINTENANCE_STATUS_END":
		id, steps = EndWorkflow, endSteps
	default:
		writeError(w, Fault{Status: http.StatusBadRequest, Code: 3, Message: "invalid maintenance status"})
		return
	}
	wf := s.workflows[id]
	if wf == nil { // a running workflow is reused (USE_EXISTING): same run id
		queue := MaintenanceQueue
		if req.UsePeerflowTaskQueue {
			queue = PeerFlowQueue
		}
		s.runs++
		wf = &workflow{runID: fmt.Sprintf("01a22c07-0000-7000-8000-%012d", s.runs), queue: queue, steps: steps, since: time.Now()}
		s.workflows[id] = wf
	}
	writeJSON(w, map[string]any{"workflowId": id, "runId": wf.runID})
}

func (s *Server) status(w http.ResponseWriter, _ []byte) {
	start, end := s.workflows[StartWorkflow], s.workflows[EndWorkflow]
	phase, activities := PhaseUnknown, []any{}
	switch {
	case start != nil:
		phase, activities = PhaseStart, start.pending()
	case end != nil:
		phase, activities = PhaseEnd, end.pending()
	case s.ModeEnabled:
		phase = PhaseEnabled
	}
	writeJSON(w, map[string]any{
		"maintenanceRunning": start != nil || end != nil || s.ModeEnabled,
		"phase":              phase,
		"pendingActivities":  activities,
	})
	s.advanceAll()
}

// advanceAll moves each running workflow one step on: a progress poll.
func (s *Server) advanceAll() {
	for _, id := range []string{StartWorkflow, EndWorkflow} {
		if wf := s.workflows[id]; wf != nil {
			s.advance(id, wf)
		}
	}
}

// advance moves wf one step on, when a worker polls its queue.
func (s *Server) advance(id string, wf *workflow) {
	if !s.Pollers[wf.queue] {
		return
	}
	if f := wf.steps[wf.pos].done; f != nil {
		f(s)
	}
	wf.pos++
	wf.since = time.Now()
	if wf.pos == len(wf.steps) || id == StartWorkflow && s.StartFails && s.ModeEnabled {
		delete(s.workflows, id)
	}
}

// pending is the pendingActivities of wf's current step, as the gateway writes them.
func (wf *workflow) pending() []any {
	out := []any{}
	for i, name := range wf.steps[wf.pos].activities {
		d := time.Since(wf.since).Seconds()
		out = append(out, map[string]any{
			"activityName":      name,
			"activityId":        strconv.Itoa(5 + i),
			"activityDuration":  strconv.FormatFloat(d, 'f', 9, 64) + "s",
			"lastHeartbeat":     nil,
			"heartbeatPayloads": []any{},
		})
	}
	return out
}

// pauseRunning starts pausing the running mirrors, of every kind (PeerDB's GetAllMirrors lists every
// flow).
func (s *Server) pauseRunning() {
	s.pausing = nil
	for _, m := range s.Mirrors {
		if m.Status == "STATUS_RUNNING" {
			s.pausing = append(s.pausing, m.Name)
		}
	}
	s.setMirrors(s.pausing, "STATUS_RUNNING", "STATUS_PAUSING")
}

// setMirrors moves the mirrors named in names that are in status from to status to.
func (s *Server) setMirrors(names []string, from, to string) {
	for i, m := range s.Mirrors {
		if m.Status == from && slices.Contains(names, m.Name) {
			s.Mirrors[i].Status = to
		}
	}
}
