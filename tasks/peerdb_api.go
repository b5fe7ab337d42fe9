package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// The names of PeerDB's MaintenancePhase values (protos/route.proto), in enum order.
const (
	phaseUnknown = "MAINTENANCE_PHASE_UNKNOWN"
	phaseStart   = "MAINTENANCE_PHASE_START_MAINTENANCE"
	phaseEnabled = "MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED"
	phaseEnd     = "MAINTENANCE_PHASE_END_MAINTENANCE"
)

// statusPath is the maintenance status endpoint, which PeerDB has from v0.31.0 on.
const statusPath = "/v1/instance/maintenance/status"

var phaseNames = []string{phaseUnknown, phaseStart, phaseEnabled, phaseEnd}

// call sends one request to flow-api and decodes a 2xx JSON answer into out (when not nil), which
// must hold each of the fields named in required: a server that answers {} to everything (a catch-all
// route, a mock) is not flow-api. The error has every secret the task knows hidden.
func (p *PeerDB) call(ctx context.Context, env Env, method, path string, body []byte, out any, required ...string) error {
	return p.req.RedactErr(p.callOnce(ctx, env, method, path, body, out, required))
}

func (p *PeerDB) callOnce(ctx context.Context, env Env, method, path string, body []byte, out any, required []string) error {
	header := http.Header{"Accept": {"application/json"}}
	if body != nil {
		header.Set("Content-Type", "application/json")
	}
	ans, err := p.req.Do(ctx, method, p.URL+path, placeholders(env), header, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if ans.Status < 200 || ans.Status > 299 {
		return &httpcall.StatusError{Err: newFlowAPIError(method, path, ans.Status, ans.Body, p.req.Redact),
			Again: p.req.Retryable(ans.Status), Wait: ans.RetryAfter}
	}
	if out == nil {
		return nil
	}
	if ans.Cut {
		return fmt.Errorf("%s %s: status %d but %w", method, path, ans.Status, httpcall.ErrAnswerTooLarge)
	}
	if err := json.Unmarshal(ans.Body, out); err != nil {
		return fmt.Errorf("%s %s: status %d but %w (%v): %s", method, path, ans.Status, errNotFlowAPI, err, p.req.Excerpt(ans.Body))
	}
	if missing := missingFields(ans.Body, required); len(missing) > 0 {
		return fmt.Errorf("%s %s: status %d but %w (no %s): %s", method, path, ans.Status, errNotFlowAPI, strings.Join(missing, ", "), p.req.Excerpt(ans.Body))
	}
	return nil
}

// missingFields returns the names of required that the JSON object body lacks, holds as null, or
// holds as an empty string.
func missingFields(body []byte, required []string) []string {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(body, &fields)
	var out []string
	for _, name := range required {
		if v := string(fields[name]); v == "" || v == "null" || v == `""` {
			out = append(out, name)
		}
	}
	return out
}

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

// newFlowAPIError reads an error answer. redact hides the task's secrets in the message: after
// decoding, since JSON may write a secret escaped ("\/") where the raw body does not show it whole.
func newFlowAPIError(method, path string, status int, body []byte, redact func(string) string) *FlowAPIError {
	e := &FlowAPIError{Method: method, Path: path, Status: status}
	var s struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &s) == nil && s.Message != "" {
		e.Code, e.Message = s.Code, redact(s.Message)
	} else {
		e.Message = httpcall.BodyExcerpt([]byte(redact(string(body))))
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

// grpcNotFound is gRPC's NotFound code, which the gateway sends with a 404 for a path it has no route for.
const grpcNotFound = 5

var grpcCodes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

// maintenanceStatus is MaintenanceStatusResponse in the gateway's JSON (lowerCamelCase fields, enums
// by name).
type maintenanceStatus struct {
	MaintenanceRunning bool              `json:"maintenanceRunning"`
	Phase              phaseString       `json:"phase"`
	PendingActivities  []pendingActivity `json:"pendingActivities"`
}

type pendingActivity struct {
	ActivityName     string `json:"activityName"`
	ActivityDuration string `json:"activityDuration"` // a protobuf Duration: "0.124112634s"
}

// workflowPhase reports whether a start or end workflow is running.
func (s maintenanceStatus) workflowPhase() bool {
	return s.Phase == phaseStart || s.Phase == phaseEnd
}

// activityNames is the pending activities' names, for telling one stretch of a workflow from the next.
func (s maintenanceStatus) activityNames() string {
	names := make([]string, len(s.PendingActivities))
	for i, a := range s.PendingActivities {
		names[i] = a.ActivityName
	}
	return strings.Join(names, ", ")
}

// activities is the pending activities with how long each has been pending: "BackgroundAlerter 124ms".
func (s maintenanceStatus) activities() string {
	out := make([]string, len(s.PendingActivities))
	for i, a := range s.PendingActivities {
		out[i] = a.ActivityName
		if d, err := time.ParseDuration(a.ActivityDuration); err == nil {
			out[i] += " " + d.Round(time.Millisecond).String()
		}
	}
	return strings.Join(out, ", ")
}

func (s maintenanceStatus) String() string {
	out := fmt.Sprintf("phase %s, maintenanceRunning %t", s.Phase, s.MaintenanceRunning)
	if len(s.PendingActivities) > 0 {
		out += ", pending activities " + s.activityNames()
	} else if s.workflowPhase() {
		out += ", no pending activity"
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

// mirror is one entry of GET /v1/mirrors/list.
type mirror struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

type mirrorList []mirror

// mirrorsAtRest are the FlowStatus values of a mirror that moves no data: paused, or over.
var mirrorsAtRest = []string{"STATUS_PAUSED", "STATUS_TERMINATED", "STATUS_COMPLETED", "STATUS_FAILED"}

// mirrors lists PeerDB's mirrors, waiting out transient failures.
func (p *PeerDB) mirrors(ctx context.Context, env Env) (mirrorList, error) {
	var list struct {
		Mirrors mirrorList `json:"mirrors"`
	}
	_, err := p.backoff.retry(ctx, env.Logger, func() (bool, error) {
		err := p.call(ctx, env, "GET", "/v1/mirrors/list", nil, &list, "mirrors")
		return httpcall.Transient(err), err
	})
	return list.Mirrors, err
}
