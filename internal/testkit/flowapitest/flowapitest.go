// Package flowapitest is a stand-in for PeerDB's flow-api HTTP gateway, for tests. It replays the
// behaviour recorded from a real PeerDB control plane (testdata/recordings, copied from the recording's
// README and its verbatim exchanges); replay_test.go reads every recorded exchange and checks that the
// stand-in answers it the same way. The real flow-api cannot run here: it needs Temporal and a catalog.
//
// What it replays:
//
//   - GET (and POST) /v1/version, the idle maintenance status with every field present, /v1/instance/info,
//     /v1/mirrors/list with each mirror's fields, and POST /v1/mirrors/status with a mirror's
//     currentFlowState (500 "no rows in result set" for a mirror that does not exist);
//   - a release (Server.Release): Current, V0_36_0 (no status in the mirror list, recording 11) or
//     V0_30_0 (no status in the mirror list and no GET /v1/instance/maintenance/status: 404, recording 12);
//   - POST /v1/instance/maintenance: the start and end workflows go to maintenance-flow-task-queue unless
//     usePeerflowTaskQueue is true; a workflow on a queue that no worker polls stays in its phase with no
//     pending activity forever, and goes on the moment a worker polls it; a second start while one runs
//     returns the same run id; an end without a start runs the end workflow;
//   - the phase derived as PeerDB's handler derives it: START_MAINTENANCE while the start workflow runs,
//     else END_MAINTENANCE while the end workflow runs, else MAINTENANCE_MODE_ENABLED when the mode is on,
//     else UNKNOWN; the start workflow turns the mode on early, then pauses every running mirror, CDC
//     or not, and backs the paused ones up; the end workflow resumes only the mirrors the starts since
//     the last end backed up, so an END without START leaves a mirror the user paused paused, and a
//     second START while the mode is on leaves the first one's backup for the END;
//   - the real error bodies {"code", "message", "details": []}: 400 invalid maintenance status, 404 Not
//     Found, 501 Method Not Allowed, and with OAuth on the 401 messages of PeerDB's middleware.
//
// Time in the stand-in is progress polls: each GET /v1/instance/maintenance/status (on V0_30_0, which
// has none, each GET /v1/instance/info) moves a dispatched workflow one activity on, so tests never
// wait for a clock.
package flowapitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PeerDB's task queues (flow/shared/constants.go).
const (
	PeerFlowQueue    = "peer-flow-task-queue"
	MaintenanceQueue = "maintenance-flow-task-queue"
)

// The recorded OAuth middleware messages (flow/middleware/oauth.go), 401 with gRPC code 16.
const (
	MsgMissingAuthorization = "failed to parse authorization header: missing Authorization header"
	MsgTokenExpired         = `failed to validate token: jwt.Validate: validation failed: "exp" not satisfied: token is expired`
	MsgNotJWT               = "failed to parse token: jwt.ParseInsecure: failed to parse token: jwt.Parse: failed to parse token: unknown payload type (payload is not JWT?)"
	// MsgBadSignature was not recorded: it stands for a well-formed JWT that PeerDB's keys did not sign.
	MsgBadSignature = "failed to validate token: could not verify message using any of the signatures or keys"
)

// Request is one request the stand-in received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   string
	Time   time.Time // when it arrived, so that a test can order it against what other processes did
}

// Fault is an error answer the stand-in gives instead of the normal one.
type Fault struct {
	Status  int    // HTTP status, e.g. 503
	Code    int    // gRPC code in the body, e.g. 14 (Unavailable)
	Message string // the body's message
}

// Mirror is one entry of GET /v1/mirrors/list.
type Mirror struct {
	Name   string
	IsCDC  bool
	Status string // STATUS_RUNNING, STATUS_PAUSED, ...
	// ID is the catalog's id; empty reads as the mirror's position in Mirrors, from 1.
	ID                               string
	SourceName, SourceType           string
	DestinationName, DestinationType string
	CreatedAt                        time.Time
}

// Release is the PeerDB release the stand-in answers as. Only what differs between releases in what
// the gate uses is modelled (read from protos/route.proto at each tag, and recorded).
type Release string

// The releases the stand-in plays.
const (
	// Current is the release the recordings 01-10 were made with.
	Current Release = "current"
	// V0_36_0 has no status field in GET /v1/mirrors/list (added in v0.36.7), recording 11.
	V0_36_0 Release = "v0.36.0"
	// V0_30_0 has, besides, no GET /v1/instance/maintenance/status (added in v0.31.0), recording 12.
	V0_30_0 Release = "v0.30.0"
)

// Releases is every release the stand-in plays, oldest first.
var Releases = []Release{V0_30_0, V0_36_0, Current}

// HasMaintenanceStatus reports whether the release has GET /v1/instance/maintenance/status.
func (r Release) HasMaintenanceStatus() bool { return r != V0_30_0 }

// ListsStatus reports whether the release's GET /v1/mirrors/list gives each mirror's status.
func (r Release) ListsStatus() bool { return r == Current }

// Server is the stand-in. Read and change its fields with Do, which holds its lock.
type Server struct {
	*httptest.Server
	sync.Mutex

	// Release is the release answered as; Start gives Current.
	Release Release
	// Version and DeploymentVersion are what GET /v1/version answers; an empty DeploymentVersion is
	// left out, as when PEERDB_DEPLOYMENT_VERSION is unset.
	Version, DeploymentVersion string
	// Pollers holds the task queues a worker polls. Start gives the stock flow worker's: PeerFlowQueue.
	Pollers map[string]bool
	// ModeEnabled is the catalog's maintenance-mode setting.
	ModeEnabled bool
	// Mirrors is what GET /v1/mirrors/list answers, in order.
	Mirrors []Mirror
	// StartFails makes the start workflow fail right after it turned the mode on: the phase reads
	// MAINTENANCE_MODE_ENABLED with the mirrors not paused (the caveat of the recording's README).
	StartFails bool
	// OAuth turns on PeerDB's OAuth middleware: every request needs a token of Tokens, with or without
	// the "Bearer " prefix; a token of Expired gets "token is expired".
	OAuth           bool
	Tokens, Expired map[string]bool
	// Faults maps "METHOD /path" to the answers given, in order, before the normal one.
	Faults map[string][]Fault
	// Vanishing names mirrors that are dropped the moment their status is asked, before the answer: a
	// mirror dropped between the list and the status request.
	Vanishing map[string]bool
	// Hang, when set, makes every request wait until it is closed or the client goes away.
	Hang chan struct{}
	// Arrived, when set, receives each request's "METHOD /path" as it arrives, before it is answered.
	Arrived chan string

	workflows map[string]*workflow // by workflow id: start-maintenance, end-maintenance
	pausing   []string             // the running mirrors the start workflow is pausing
	backedUp  []string             // the mirrors the starts since the last end paused and backed up, which the end resumes (GetBackedUpFlows)
	runs      int
	requests  []Request
}

// Start runs the stand-in on a loopback port, idle, with the stock flow worker polling the peer-flow
// queue; it is closed when the test ends.
func Start(t testing.TB) *Server {
	s := &Server{
		Release: Current, Version: "real-check-6b52fb6", DeploymentVersion: "v0.37.0-real-check",
		Pollers: map[string]bool{PeerFlowQueue: true},
		Tokens:  map[string]bool{}, Expired: map[string]bool{},
		Faults: map[string][]Fault{}, Vanishing: map[string]bool{}, workflows: map[string]*workflow{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Do calls f with the server locked, so that a test can set up faults or read the maintenance state.
func (s *Server) Do(f func(s *Server)) {
	s.Lock()
	defer s.Unlock()
	f(s)
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.Lock()
	defer s.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count returns how many requests were sent to "METHOD /path".
func (s *Server) Count(route string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method+" "+r.Path == route {
			n++
		}
	}
	return n
}

// routes maps each path of the gateway to its methods; another method on a known path is 501.
var routes = map[string]map[string]func(s *Server, w http.ResponseWriter, body []byte){
	"/v1/version":                                 {"GET": (*Server).version, "POST": (*Server).version},
	"/v1/instance/info":                           {"GET": (*Server).info},
	"/v1/instance/maintenance":                    {"POST": (*Server).maintenance},
	"/v1/instance/maintenance/status":             {"GET": (*Server).status},
	"/v1/instance/maintenance/skip-snapshot-wait": {"POST": func(_ *Server, w http.ResponseWriter, _ []byte) { writeJSON(w, map[string]any{}) }},
	"/v1/mirrors/list":                            {"GET": (*Server).mirrors},
	"/v1/mirrors/status":                          {"POST": (*Server).mirrorStatus},
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	route := r.Method + " " + r.URL.Path
	s.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body), Time: time.Now()})
	hang, arrived := s.Hang, s.Arrived
	s.Unlock()
	if arrived != nil {
		arrived <- route
	}
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}

	s.Lock()
	defer s.Unlock()
	if s.OAuth {
		if msg := s.authenticate(r.Header.Get("Authorization")); msg != "" {
			writeError(w, Fault{Status: http.StatusUnauthorized, Code: 16, Message: msg})
			return
		}
	}
	if faults := s.Faults[route]; len(faults) > 0 {
		s.Faults[route] = faults[1:]
		writeError(w, faults[0])
		return
	}
	methods, ok := routes[r.URL.Path]
	if r.URL.Path == statusPath && !s.Release.HasMaintenanceStatus() {
		ok = false
	}
	if !ok {
		writeError(w, Fault{Status: http.StatusNotFound, Code: 5, Message: "Not Found"})
		return
	}
	handle, ok := methods[r.Method]
	if !ok {
		writeError(w, Fault{Status: http.StatusNotImplemented, Code: 12, Message: "Method Not Allowed"})
		return
	}
	handle(s, w, body)
}

// authenticate returns the middleware's message for a refused Authorization header, or "".
func (s *Server) authenticate(header string) string {
	if header == "" {
		return MsgMissingAuthorization
	}
	token := strings.TrimPrefix(header, "Bearer ")
	switch {
	case s.Tokens[token]:
		return ""
	case s.Expired[token]:
		return MsgTokenExpired
	case strings.Count(token, ".") == 2:
		return MsgBadSignature
	default:
		return MsgNotJWT
	}
}

func (s *Server) version(w http.ResponseWriter, _ []byte) {
	v := map[string]any{"version": s.Version}
	if s.DeploymentVersion != "" {
		v["deploymentVersion"] = s.DeploymentVersion
	}
	writeJSON(w, v)
}

func (s *Server) info(w http.ResponseWriter, _ []byte) {
	status := "INSTANCE_STATUS_READY"
	if s.ModeEnabled {
		status = "INSTANCE_STATUS_MAINTENANCE"
	}
	writeJSON(w, map[string]any{"status": status})
	if !s.Release.HasMaintenanceStatus() {
		s.advanceAll()
	}
}

func (s *Server) mirrors(w http.ResponseWriter, _ []byte) {
	list := []any{}
	for i, m := range s.Mirrors {
		id := m.ID
		if id == "" {
			id = strconv.Itoa(i + 1)
		}
		item := map[string]any{"id": id, "workflowId": m.Name + "-peerflow", "name": m.Name,
			"sourceName": m.SourceName, "sourceType": m.SourceType, "destinationName": m.DestinationName,
			"destinationType": m.DestinationType, "createdAt": m.CreatedAt.UnixMilli(), "isCdc": m.IsCDC}
		if s.Release.ListsStatus() {
			item["status"] = m.Status
		}
		list = append(list, item)
	}
	writeJSON(w, map[string]any{"mirrors": list})
}

// mirrorStatus is POST /v1/mirrors/status: the mirror's currentFlowState, as every release answers it
// for a mirror asked without includeFlowInfo.
func (s *Server) mirrorStatus(w http.ResponseWriter, body []byte) {
	var req struct {
		FlowJobName string `json:"flowJobName"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, Fault{Status: http.StatusBadRequest, Code: 3, Message: err.Error()})
		return
	}
	if s.Vanishing[req.FlowJobName] {
		s.Mirrors = slices.DeleteFunc(s.Mirrors, func(m Mirror) bool { return m.Name == req.FlowJobName })
	}
	i := slices.IndexFunc(s.Mirrors, func(m Mirror) bool { return m.Name == req.FlowJobName })
	if i < 0 {
		writeError(w, Fault{Status: http.StatusInternalServerError, Code: 2, Message: fmt.Sprintf(
			"unable to get the workflow ID of mirror %s: unable to get workflowID for flow job %s: no rows in result set", req.FlowJobName, req.FlowJobName)})
		return
	}
	m := s.Mirrors[i]
	writeJSON(w, map[string]any{"flowJobName": m.Name, "currentFlowState": m.Status, "createdAt": timestamp(m.CreatedAt)})
}

// timestamp writes t as protobuf's JSON writes a Timestamp: UTC, with 0, 3, 6 or 9 fractional digits.
func timestamp(t time.Time) string {
	t = t.UTC()
	layout := "2006-01-02T15:04:05"
	switch ns := t.Nanosecond(); {
	case ns == 0:
	case ns%1e6 == 0:
		layout += ".000"
	case ns%1e3 == 0:
		layout += ".000000"
	default:
		layout += ".000000000"
	}
	return t.Format(layout + "Z")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Grpc-Metadata-Content-Type", "application/grpc")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, f Fault) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": f.Code, "message": f.Message, "details": []any{}})
}
