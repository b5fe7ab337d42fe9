package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// Actions of the peerdb kind.
const (
	PeerDBWaitReady        = "wait-ready"
	PeerDBMaintenanceStart = "maintenance-start"
	PeerDBMaintenanceEnd   = "maintenance-end"
)

// The task queues the maintenance workflows can be sent to (field task_queue).
const (
	// QueuePeerflow is peer-flow-task-queue, which every stock flow worker polls: the default, as in
	// PeerDB's own maintenance command.
	QueuePeerflow = "peerflow"
	// QueueMaintenance is maintenance-flow-task-queue, which only a flow worker started with
	// USE_MAINTENANCE_TASK_QUEUE=true polls.
	QueueMaintenance = "maintenance"
)

// maxIdlePolls is how many idle status answers in a row (no workflow running, mode off) end a
// maintenance-start as failed.
const maxIdlePolls = 3

// DefaultPollInterval is how often a peerdb task asks flow-api for progress.
const DefaultPollInterval = 2 * time.Second

// The defaults of the progress log: a line at each change and at least every progressEvery, and a WARN
// when a workflow has had no pending activity for stallAfter (PeerDB's first dispatch of a workflow was
// seen to take up to 39 s).
const (
	defaultProgressEvery = 10 * time.Second
	defaultStallAfter    = time.Minute
)

// PeerDB drives PeerDB's flow-api through its HTTP gateway (internal/testkit/flowapitest/testdata/recordings holds
// exchanges recorded from a real one), on every release from v0.19.1 on:
//
//   - wait-ready polls GET /v1/version until flow-api answers, and logs the version it reports;
//   - maintenance-start posts MAINTENANCE_STATUS_START (usePeerflowTaskQueue per task_queue), polls the
//     status until the start workflow is over and the mode is on (MAINTENANCE_MODE_ENABLED), then checks
//     that no mirror still runs (PeerDB pauses every running mirror, CDC or not);
//   - maintenance-end posts MAINTENANCE_STATUS_END, then polls until maintenanceRunning is false.
//
// Releases differ, and the gate reads what each answers, never a version: a mirror list without
// status (before v0.36.7) has each mirror's state asked with POST /v1/mirrors/status
// (peerdb_mirrors.go); a status endpoint that answers 404 (before v0.31.0) has the maintenance followed
// through GET /v1/instance/info and the mirrors (peerdb_legacy.go).
//
// Connection errors and 429, 502, 503 and 504 answers are waited out within the task's timeout, 500
// for three answers in a row; 400, 401, 403, 404, 501 and other statuses fail at once with the
// gateway's message. An answer without the fields flow-api always sends (version, workflowId and
// runId, phase, mirrors) fails at once: the URL points at something else.
type PeerDB struct {
	Action       string
	URL          string // flow-api's HTTP gateway, e.g. http://flow-api:8113
	PollInterval time.Duration
	// TaskQueue is QueuePeerflow or QueueMaintenance.
	TaskQueue string
	// SkipIfNoMirrors skips maintenance-start when PeerDB has no mirror at all, as PeerDB's own
	// maintenance command does.
	SkipIfNoMirrors bool

	progressEvery time.Duration
	stallAfter    time.Duration
	settle        time.Duration // see peerdb_legacy.go
	req           *httpcall.Requester
	backoff       backoff

	statesLogged bool // the one-by-one read of mirror states was logged in this run
}

type peerdbFields struct {
	Action          string               `yaml:"action"`
	URL             string               `yaml:"url"`
	Headers         map[string]yaml.Node `yaml:"headers"`
	PollInterval    string               `yaml:"poll_interval"`
	RequestTimeout  string               `yaml:"request_timeout"`
	TaskQueue       string               `yaml:"task_queue"`
	SkipIfNoMirrors bool                 `yaml:"skip_if_no_mirrors"`
}

func init() { Register("peerdb", decodePeerDB) }

func decodePeerDB(node *yaml.Node, lc LoadContext) (Task, error) {
	var f peerdbFields
	errs, ok := decodeKind(node, &f)
	if !ok {
		return nil, errors.Join(errs...)
	}
	t := &PeerDB{Action: f.Action, URL: strings.TrimRight(f.URL, "/"), PollInterval: DefaultPollInterval,
		TaskQueue: QueuePeerflow, SkipIfNoMirrors: f.SkipIfNoMirrors,
		progressEvery: defaultProgressEvery, stallAfter: defaultStallAfter, settle: defaultSettle, backoff: defaultBackoff}
	switch f.Action {
	case PeerDBWaitReady, PeerDBMaintenanceStart, PeerDBMaintenanceEnd:
	case "":
		errs = append(errs, Fieldf("action", "required: %s, %s or %s", PeerDBWaitReady, PeerDBMaintenanceStart, PeerDBMaintenanceEnd))
	default:
		errs = append(errs, Fieldf("action", "%q is not %s, %s or %s", f.Action, PeerDBWaitReady, PeerDBMaintenanceStart, PeerDBMaintenanceEnd))
	}
	switch {
	case f.TaskQueue == "":
	case f.Action == PeerDBWaitReady:
		errs = append(errs, Fieldf("task_queue", "only %s and %s send a workflow to a task queue", PeerDBMaintenanceStart, PeerDBMaintenanceEnd))
	case f.TaskQueue == QueuePeerflow || f.TaskQueue == QueueMaintenance:
		t.TaskQueue = f.TaskQueue
	default:
		errs = append(errs, Fieldf("task_queue", "%q is not %s (peer-flow-task-queue, polled by every flow worker) or %s (maintenance-flow-task-queue, polled only by a flow worker with USE_MAINTENANCE_TASK_QUEUE=true)", f.TaskQueue, QueuePeerflow, QueueMaintenance))
	}
	if f.SkipIfNoMirrors && f.Action != PeerDBMaintenanceStart {
		errs = append(errs, Fieldf("skip_if_no_mirrors", "only %s can be skipped", PeerDBMaintenanceStart))
	}
	if err := checkHTTPURL(f.URL); err != nil {
		errs = append(errs, Fieldf("url", "%s", err))
	} else if u, _ := url.Parse(f.URL); u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, Fieldf("url", "the base URL of flow-api's gateway takes no query or fragment"))
	}
	if f.PollInterval != "" {
		d, err := time.ParseDuration(f.PollInterval)
		if err != nil || d <= 0 {
			errs = append(errs, Fieldf("poll_interval", "%q is not a positive duration (Go syntax: 500ms, 2s)", f.PollInterval))
		}
		t.PollInterval = d
	}
	timeout, err := requestTimeout(f.RequestTimeout)
	if err != nil {
		errs = append(errs, err)
	}
	header, hErrs := decodeHeaders(f.Headers, lc)
	t.req = httpcall.New(header, timeout, false, f.URL)
	return t, errors.Join(append(errs, hErrs...)...)
}

// queueName is the Temporal task queue TaskQueue stands for.
func (p *PeerDB) queueName() string {
	if p.TaskQueue == QueueMaintenance {
		return "maintenance-flow-task-queue"
	}
	return "peer-flow-task-queue"
}

// Run carries out the action.
func (p *PeerDB) Run(ctx context.Context, env Env) error {
	start := time.Now()
	p.statesLogged = false
	var err error
	switch p.Action {
	case PeerDBWaitReady:
		err = p.waitReady(ctx, env)
	case PeerDBMaintenanceStart:
		err = p.startMaintenance(ctx, env)
	case PeerDBMaintenanceEnd:
		err = p.endMaintenance(ctx, env)
	default:
		err = fmt.Errorf("unknown action %q", p.Action)
	}
	if err != nil {
		return p.req.RedactErr(fmt.Errorf("peerdb %s at %s: %w", p.Action, httpcall.RedactURL(p.URL), err))
	}
	env.Logger.Info("peerdb action done", "action", p.Action, "url", httpcall.RedactURL(p.URL), "duration_ms", time.Since(start).Milliseconds())
	return nil
}

func (p *PeerDB) waitReady(ctx context.Context, env Env) error {
	var v struct {
		Version           string `json:"version"`
		DeploymentVersion string `json:"deploymentVersion"`
	}
	err := p.poll(ctx, env, "flow-api to answer", func() string { return "" }, func() (bool, error) {
		return true, p.call(ctx, env, "GET", "/v1/version", nil, &v, "version")
	})
	if err == nil {
		env.Logger.Info("flow-api ready", "peerdb_version", p.req.Redact(v.Version), "deployment_version", p.req.Redact(v.DeploymentVersion))
	}
	return err
}

func (p *PeerDB) startMaintenance(ctx context.Context, env Env) error {
	if p.SkipIfNoMirrors {
		mirrors, err := p.mirrors(ctx, env)
		if err != nil {
			return err
		}
		// As PeerDB's own maintenance command: skipped only when there is no mirror at all, since its
		// start workflow pauses every running mirror, CDC or not.
		if len(mirrors) == 0 {
			env.Logger.Info("peerdb maintenance start skipped", "reason", "no mirror to pause (skip_if_no_mirrors)")
			return nil
		}
	}
	idle := 0 // idle answers in a row
	err := p.maintenance(ctx, env, "MAINTENANCE_STATUS_START", "the start workflow to end with maintenance mode on", func(s maintenanceStatus) (bool, error) {
		switch {
		case s.Phase == phaseEnabled:
			return true, nil
		case s.MaintenanceRunning:
			idle = 0
			return false, nil
		}
		// PeerDB's status handler reads a failed look-up of the workflow (a Temporal hiccup) as "not
		// running": one idle answer is not yet a workflow that ended.
		if idle++; idle < maxIdlePolls {
			return false, nil
		}
		return false, fmt.Errorf("PeerDB's start-maintenance workflow ended without enabling maintenance mode (%s, %d answers in a row)", s, idle)
	}, p.legacyStartStep)
	if err != nil {
		return err
	}
	mirrors, err := p.mirrorStates(ctx, env)
	if err != nil {
		return fmt.Errorf("maintenance mode is on, but the mirrors could not be checked: %w", err)
	}
	if running := mirrors.notPaused(); len(running) > 0 {
		return fmt.Errorf("maintenance mode is on, but mirrors are not paused: %s (the start workflow may have failed after turning the mode on; "+
			"maintenance mode stays on until maintenance-end runs)", joinMirrors(running))
	}
	env.Logger.Info("peerdb mirrors paused", "mirrors", len(mirrors))
	return nil
}

func (p *PeerDB) endMaintenance(ctx context.Context, env Env) error {
	return p.maintenance(ctx, env, "MAINTENANCE_STATUS_END", "the end workflow to end with maintenance mode off", func(s maintenanceStatus) (bool, error) {
		return !s.MaintenanceRunning, nil
	}, p.legacyEndStep)
}

// maintenance posts a maintenance request, then polls the maintenance status until done says so. A
// release without the status endpoint (404: PeerDB before v0.31.0) is followed through
// /v1/instance/info and the mirrors instead, with legacy (peerdb_legacy.go).
func (p *PeerDB) maintenance(ctx context.Context, env Env, status, waitingFor string, done func(maintenanceStatus) (bool, error),
	legacy func(context.Context, Env, *legacyProgress) (bool, error)) error {
	body := fmt.Appendf(nil, `{"status":%q,"usePeerflowTaskQueue":%t}`, status, p.TaskQueue == QueuePeerflow)
	var started struct {
		WorkflowID string `json:"workflowId"`
		RunID      string `json:"runId"`
	}
	if _, err := p.backoff.retry(ctx, env.Logger, func() (bool, error) {
		err := p.call(ctx, env, "POST", "/v1/instance/maintenance", body, &started, "workflowId", "runId")
		return httpcall.Transient(err), err
	}); err != nil {
		return err
	}
	env.Logger.Info("peerdb maintenance requested", "request", status, "task_queue", p.queueName())
	pr := p.newProgress(env)
	var lp *legacyProgress // set once the status endpoint answered 404
	sourceLogged := false
	lastSeen := func() string {
		if lp != nil {
			return lp.report()
		}
		return pr.report()
	}
	return p.poll(ctx, env, waitingFor, lastSeen, func() (bool, error) {
		if lp != nil {
			return legacy(ctx, env, lp)
		}
		var s maintenanceStatus
		err := p.call(ctx, env, "GET", statusPath, nil, &s, "phase")
		var apiErr *FlowAPIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound && apiErr.Code == grpcNotFound && !sourceLogged {
			// Decided from the answer, never from a version: PeerDB adds the endpoint in v0.31.0.
			// Only the gateway's own answer for a path it has no route for ({"code": 5}) says so; a
			// 404 from a proxy in front of it (HTML, plain text) is an error like any other 404.
			lp, sourceLogged = &legacyProgress{p: p, env: env}, true
			env.Logger.Info("peerdb maintenance progress source", "source", "GET /v1/instance/info and the mirrors' states",
				"reason", "GET "+statusPath+" answered 404 (PeerDB before v0.31.0)")
			return legacy(ctx, env, lp)
		}
		if err != nil {
			return false, err
		}
		if !sourceLogged {
			sourceLogged = true
			env.Logger.Info("peerdb maintenance progress source", "source", "GET "+statusPath)
		}
		pr.observe(s, time.Now())
		return done(s)
	})
}

// poll calls step every PollInterval until it is done, fails for good, or ctx ends. Transient
// failures keep it polling; each change of failure is logged once. lastSeen says in the final error
// what the workflow was doing ("" when nothing was seen).
func (p *PeerDB) poll(ctx context.Context, env Env, waitingFor string, lastSeen func() string, step func() (done bool, err error)) error {
	lastErr := ""
	for n := 1; ; n++ {
		done, err := step()
		if done && err == nil {
			return nil
		}
		if err != nil {
			if expired(ctx) {
				break
			}
			if !httpcall.Transient(err) {
				return err
			}
			if err.Error() != lastErr { // call's errors have the secrets hidden
				env.Logger.Info("waiting for flow-api", "waiting_for", waitingFor, "polls", n, "err", err)
				lastErr = err.Error()
			}
		}
		if sleep(ctx, max(p.PollInterval, httpcall.WaitAtLeast(err))) != nil {
			break
		}
	}
	var more string
	if seen := lastSeen(); seen != "" {
		more = "; " + seen
	} else if lastErr != "" {
		more = "; last attempt: " + lastErr
	}
	return fmt.Errorf("waiting for %s: %w%s", waitingFor, context.Cause(ctx), more)
}
