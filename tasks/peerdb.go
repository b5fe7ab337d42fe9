package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Actions of the peerdb kind.
const (
	PeerDBWaitReady        = "wait-ready"
	PeerDBMaintenanceStart = "maintenance-start"
	PeerDBMaintenanceEnd   = "maintenance-end"
)

// DefaultPollInterval is how often a peerdb task asks flow-api for progress.
const DefaultPollInterval = 2 * time.Second

// The names of PeerDB's MaintenancePhase values (protos/route.proto), in enum order.
const (
	phaseUnknown = "MAINTENANCE_PHASE_UNKNOWN"
	phaseEnabled = "MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED"
)

var phaseNames = []string{phaseUnknown, "MAINTENANCE_PHASE_START_MAINTENANCE", phaseEnabled, "MAINTENANCE_PHASE_END_MAINTENANCE"}

// PeerDB drives PeerDB's flow-api through its HTTP gateway (grpc-gateway in front of FlowService):
//
//   - wait-ready polls GET /v1/version until flow-api answers;
//   - maintenance-start posts {"status":"MAINTENANCE_STATUS_START"} to /v1/instance/maintenance, then
//     polls GET /v1/instance/maintenance/status until phase is MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED;
//   - maintenance-end posts {"status":"MAINTENANCE_STATUS_END"}, then polls until maintenanceRunning is false.
//
// Connection errors and 5xx answers are waited out within the task's timeout; a 4xx answer fails at
// once with the gateway's message.
type PeerDB struct {
	Action       string
	URL          string // flow-api's HTTP gateway, e.g. http://flow-api:8113
	PollInterval time.Duration

	header  headerSet
	backoff backoff
}

type peerdbFields struct {
	Action       string               `yaml:"action"`
	URL          string               `yaml:"url"`
	Headers      map[string]yaml.Node `yaml:"headers"`
	PollInterval string               `yaml:"poll_interval"`
}

func init() { Register("peerdb", decodePeerDB) }

func decodePeerDB(node *yaml.Node, lc LoadContext) (Task, error) {
	var f peerdbFields
	errs, ok := decodeKind(node, &f)
	if !ok {
		return nil, errors.Join(errs...)
	}
	t := &PeerDB{Action: f.Action, URL: strings.TrimRight(f.URL, "/"), PollInterval: DefaultPollInterval, backoff: defaultBackoff}
	switch f.Action {
	case PeerDBWaitReady, PeerDBMaintenanceStart, PeerDBMaintenanceEnd:
	case "":
		errs = append(errs, Fieldf("action", "required: %s, %s or %s", PeerDBWaitReady, PeerDBMaintenanceStart, PeerDBMaintenanceEnd))
	default:
		errs = append(errs, Fieldf("action", "%q is not %s, %s or %s", f.Action, PeerDBWaitReady, PeerDBMaintenanceStart, PeerDBMaintenanceEnd))
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
	var hErrs []error
	t.header, hErrs = decodeHeaders(f.Headers, lc)
	return t, errors.Join(append(errs, hErrs...)...)
}

// Run carries out the action.
func (p *PeerDB) Run(ctx context.Context, env Env) error {
	start := time.Now()
	var err error
	switch p.Action {
	case PeerDBWaitReady:
		err = p.waitReady(ctx, env)
	case PeerDBMaintenanceStart:
		err = p.maintenance(ctx, env, "MAINTENANCE_STATUS_START", "phase "+phaseEnabled, func(s maintenanceStatus) (bool, error) {
			if s.Phase == phaseEnabled {
				return true, nil
			}
			if !s.MaintenanceRunning {
				return false, fmt.Errorf("PeerDB's start-maintenance workflow ended without enabling maintenance mode (%s)", s)
			}
			return false, nil
		})
	case PeerDBMaintenanceEnd:
		err = p.maintenance(ctx, env, "MAINTENANCE_STATUS_END", "maintenanceRunning false", func(s maintenanceStatus) (bool, error) {
			return !s.MaintenanceRunning, nil
		})
	default:
		err = fmt.Errorf("unknown action %q", p.Action)
	}
	if err != nil {
		return fmt.Errorf("peerdb %s at %s: %w", p.Action, redactURL(p.URL), err)
	}
	env.Logger.Info("peerdb action done", "action", p.Action, "url", redactURL(p.URL), "duration_ms", time.Since(start).Milliseconds())
	return nil
}

func (p *PeerDB) waitReady(ctx context.Context, env Env) error {
	var v struct {
		Version           string `json:"version"`
		DeploymentVersion string `json:"deploymentVersion"`
	}
	err := p.poll(ctx, env, "flow-api to answer", func() (bool, string, error) {
		if err := p.call(ctx, env, http.MethodGet, "/v1/version", nil, &v); err != nil {
			return false, "", err
		}
		return true, "", nil
	})
	if err == nil {
		env.Logger.Info("flow-api ready", "peerdb_version", v.Version, "deployment_version", v.DeploymentVersion)
	}
	return err
}

// maintenance posts a maintenance request, then polls the maintenance status until done says so.
func (p *PeerDB) maintenance(ctx context.Context, env Env, status, waitingFor string, done func(maintenanceStatus) (bool, error)) error {
	body := []byte(`{"status":"` + status + `"}`)
	if _, err := p.backoff.retry(ctx, env.Logger, func() (bool, error) {
		err := p.call(ctx, env, http.MethodPost, "/v1/instance/maintenance", body, nil)
		return transient(err), err
	}); err != nil {
		return err
	}
	env.Logger.Info("peerdb maintenance requested", "request", status)
	return p.poll(ctx, env, waitingFor, func() (bool, string, error) {
		var s maintenanceStatus
		if err := p.call(ctx, env, http.MethodGet, "/v1/instance/maintenance/status", nil, &s); err != nil {
			return false, "", err
		}
		ok, err := done(s)
		return ok, s.String(), err
	})
}

// poll calls step every PollInterval until it is done, fails for good, or ctx ends. Transient failures
// keep it polling. Each change of the observed state is logged once, so a long wait stays readable.
func (p *PeerDB) poll(ctx context.Context, env Env, waitingFor string, step func() (done bool, state string, err error)) error {
	last := ""
	for n := 1; ; n++ {
		done, state, err := step()
		if done {
			return nil
		}
		if err != nil {
			if expired(ctx) {
				break
			}
			if !transient(err) {
				return err
			}
			state = err.Error()
		}
		if state != last {
			env.Logger.Info("waiting for flow-api", "waiting_for", waitingFor, "state", state, "polls", n)
			last = state
		}
		if sleep(ctx, p.PollInterval) != nil {
			break
		}
	}
	if last == "" {
		return fmt.Errorf("waiting for %s: %w", waitingFor, context.Cause(ctx))
	}
	return fmt.Errorf("waiting for %s: %w; last seen: %s", waitingFor, context.Cause(ctx), last)
}

// call sends one request to flow-api and decodes a 2xx JSON answer into out (when not nil).
func (p *PeerDB) call(ctx context.Context, env Env, method, path string, body []byte, out any) error {
	header := p.header.build(placeholders(env))
	header.Set("Accept", "application/json")
	if body != nil {
		header.Set("Content-Type", "application/json")
	}
	status, resp, err := roundTrip(ctx, method, p.URL+path, header, body)
	if err != nil {
		return &connError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	if status < 200 || status > 299 {
		return newFlowAPIError(method, path, status, resp)
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			return fmt.Errorf("%s %s: status %d but %w (%v): %s", method, path, status, errNotFlowAPI, err, bodyExcerpt(resp))
		}
	}
	return nil
}

// transient reports whether a failed call may succeed later: connection errors and 5xx answers.
func transient(err error) bool {
	var ce *connError
	var fe *FlowAPIError
	return errors.As(err, &ce) || errors.As(err, &fe) && fe.Status >= 500
}

// connError marks a request that got no answer: flow-api is down, starting, or unreachable.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// errNotFlowAPI marks a 2xx answer that is not the gateway's JSON: the URL points at something else.
var errNotFlowAPI = errors.New("not flow-api's JSON")

// FlowAPIError is an error answer of flow-api's gateway: an HTTP status with the gRPC status in the
// body, {"code": 3, "message": "...", "details": []}.
type FlowAPIError struct {
	Method, Path string
	Status       int
	Code         int    // gRPC status code, 0 when the body was not the gateway's
	Message      string // the gateway's message, or an excerpt of the body
}

func newFlowAPIError(method, path string, status int, body []byte) *FlowAPIError {
	e := &FlowAPIError{Method: method, Path: path, Status: status}
	var s struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &s) == nil && s.Message != "" {
		e.Code, e.Message = s.Code, s.Message
	} else {
		e.Message = bodyExcerpt(body)
	}
	return e
}

func (e *FlowAPIError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
	if e.Code > 0 && e.Code < len(grpcCodes) {
		msg += " (gRPC " + grpcCodes[e.Code] + ")"
	}
	return msg
}

var grpcCodes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

// maintenanceStatus is MaintenanceStatusResponse in the gateway's JSON (lowerCamelCase fields, enums
// by name).
type maintenanceStatus struct {
	MaintenanceRunning bool        `json:"maintenanceRunning"`
	Phase              phaseString `json:"phase"`
	PendingActivities  []struct {
		ActivityName string `json:"activityName"`
	} `json:"pendingActivities"`
}

func (s maintenanceStatus) String() string {
	out := fmt.Sprintf("phase %s, maintenanceRunning %t", s.Phase, s.MaintenanceRunning)
	if len(s.PendingActivities) > 0 {
		names := make([]string, len(s.PendingActivities))
		for i, a := range s.PendingActivities {
			names[i] = a.ActivityName
		}
		out += ", pending activities " + strings.Join(names, ", ")
	}
	return out
}

// phaseString is a MaintenancePhase by name. It also accepts the enum's number, which a gateway set
// to emit enums as numbers sends, and reads an absent phase as MAINTENANCE_PHASE_UNKNOWN.
type phaseString string

func (p *phaseString) UnmarshalJSON(b []byte) error {
	if n, err := strconv.Atoi(string(b)); err == nil {
		if n >= 0 && n < len(phaseNames) {
			*p = phaseString(phaseNames[n])
		} else {
			*p = phaseString("MAINTENANCE_PHASE_" + strconv.Itoa(n))
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*p = phaseString(s)
	return nil
}

func (p phaseString) String() string {
	if p == "" {
		return phaseUnknown
	}
	return string(p)
}
