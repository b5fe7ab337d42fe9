package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/flowapitest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redistest"
)

// These tests run against flowapitest, a stand-in for flow-api's HTTP gateway that speaks its
// documented JSON (lowerCamelCase fields such as maintenanceRunning and phase, enums by name, errors as
// {"code","message"}): the real flow-api needs Temporal and cannot run here.

func loadPeerDB(t *testing.T, yaml string, env map[string]string) *PeerDB {
	t.Helper()
	specs, err := Parse([]byte("tasks:\n  - name: flow-api\n    peerdb: "+yaml+"\n"), "test", LoadContext{Getenv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	p := specs[0].Task.(*PeerDB)
	p.backoff = fastBackoff
	return p
}

func TestPeerDBWaitReadyPollsUntilFlowAPIAnswers(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		unavailable := flowapitest.Fault{Status: 503, Code: 14, Message: "connection error: desc = transport: Error while dialing"}
		s.Faults["GET /v1/version"] = []flowapitest.Fault{unavailable, unavailable}
	})
	p := loadPeerDB(t, `{action: wait-ready, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, log := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if n := api.Count("GET /v1/version"); n != 3 {
		t.Errorf("flow-api asked %d times, want 3 (two 503s, then ready)", n)
	}
	if !strings.Contains(log.String(), "peerdb_version=v0.30.0") {
		t.Errorf("the version flow-api reports is not logged:\n%s", log)
	}
}

func TestPeerDBMaintenanceStartWaitsForMaintenanceModeEnabled(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.WorkflowPolls = 3 })
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`/", poll_interval: 1ms}`, nil)
	env, log := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	reqs := api.Requests()
	if reqs[0].Method != "POST" || reqs[0].Path != "/v1/instance/maintenance" || reqs[0].Body != `{"status":"MAINTENANCE_STATUS_START"}` {
		t.Errorf("first request %+v, want POST /v1/instance/maintenance with MAINTENANCE_STATUS_START", reqs[0])
	}
	if n := api.Count("GET /v1/instance/maintenance/status"); n != 4 {
		t.Errorf("status polled %d times, want 4 (3 while the workflow runs, then enabled)", n)
	}
	api.Do(func(s *flowapitest.Server) {
		if !s.ModeEnabled {
			t.Error("maintenance mode is not enabled")
		}
	})
	if !strings.Contains(log.String(), "WaitForRunningSnapshots") {
		t.Errorf("the pending activity is not logged as progress:\n%s", log)
	}
}

func TestPeerDBMaintenanceEndWaitsUntilMaintenanceNoLongerRuns(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.ModeEnabled = true })
	p := loadPeerDB(t, `{action: maintenance-end, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if reqs := api.Requests(); reqs[0].Body != `{"status":"MAINTENANCE_STATUS_END"}` {
		t.Errorf("first request body %s, want MAINTENANCE_STATUS_END", reqs[0].Body)
	}
	api.Do(func(s *flowapitest.Server) {
		if s.ModeEnabled || s.Running != "" {
			t.Errorf("maintenance still on: mode %t, running %q", s.ModeEnabled, s.Running)
		}
	})
	if n := api.Count("GET /v1/instance/maintenance/status"); n != 3 {
		t.Errorf("status polled %d times, want 3 (2 while the workflow runs, then done)", n)
	}
}

func TestPeerDBMaintenanceStartFailsWhenTheWorkflowEndsWithoutEnablingMaintenanceMode(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.StartFails = true })
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // only bounds a broken test
	defer cancel()
	err := p.Run(ctx, env)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "without enabling maintenance mode") {
		t.Fatalf("want a failed start, got %v", err)
	}
}

func TestPeerDBAPIErrorIsReportedWithTheGatewayMessage(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Faults["POST /v1/instance/maintenance"] = []flowapitest.Fault{{Status: 400, Code: 9, Message: "PeerDB is under maintenance. Please retry in a few minutes"}}
	})
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	err := p.Run(context.Background(), env)
	var apiErr *FlowAPIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != 9 {
		t.Fatalf("want a FlowAPIError 400 with gRPC code 9, got %v", err)
	}
	for _, want := range []string{"POST /v1/instance/maintenance", "PeerDB is under maintenance", "FailedPrecondition"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if n := api.Count("POST /v1/instance/maintenance"); n != 1 {
		t.Errorf("a 4xx answer was sent %d times, want once", n)
	}
}

func TestPeerDBUnknownRouteIsAnErrorNotAWait(t *testing.T) {
	api := flowapitest.Start(t)
	p := loadPeerDB(t, `{action: wait-ready, url: "`+api.URL+`/wrong-prefix", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	err := p.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "404 Not Found: Not Found (gRPC NotFound)") {
		t.Fatalf("want the gateway's 404, got %v", err)
	}
}

func TestPeerDBSendsAuthorizationFromTheEnvironmentWithoutLoggingIt(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.Token = "Bearer flow-api-s3cret" })
	p := loadPeerDB(t, `{action: wait-ready, url: "`+api.URL+`", headers: {Authorization: {env: FLOW_API_TOKEN, prefix: "Bearer "}}}`,
		map[string]string{"FLOW_API_TOKEN": "flow-api-s3cret"})
	env, log := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "s3cret") {
		t.Errorf("the token reached the log:\n%s", log)
	}

	api.Do(func(s *flowapitest.Server) { s.Token = "Bearer another" })
	err := p.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: Unauthenticated") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("want a 401 naming no token, got %v", err)
	}
}

func TestPeerDBTimeoutWhileWaitingReportsTheLastPhaseSeen(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.WorkflowPolls = 1 << 30 }) // the start workflow never finishes
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 5ms}`, nil)
	env, _ := runEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.Run(ctx, env)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the task timeout, got %v", err)
	}
	if !strings.Contains(err.Error(), "last seen: phase MAINTENANCE_PHASE_START_MAINTENANCE") {
		t.Errorf("error %q does not say which phase it was stuck in", err)
	}
}

func TestPeerDBRefusedConnectionIsWaitedOutUntilTheTaskTimeout(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) // nothing listens there: connections are refused
	p := loadPeerDB(t, `{action: wait-ready, url: "http://`+addr+`", poll_interval: 5ms}`, nil)
	env, log := runEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := p.Run(ctx, env)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want the task timeout after refused connections, got %v", err)
	}
	log.await(t, "waiting for flow-api")
}

func TestPeerDBCancelledContextStopsAHangingRequestWithItsCause(t *testing.T) {
	api := flowapitest.Start(t)
	hang, arrived := make(chan struct{}), make(chan string, 1)
	defer close(hang)
	api.Do(func(s *flowapitest.Server) { s.Hang, s.Arrived = hang, arrived })
	p := loadPeerDB(t, `{action: maintenance-end, url: "`+api.URL+`"}`, nil)
	env, _ := runEnv(t, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	sigterm := errors.New("interrupted by SIGTERM")
	go func() {
		<-arrived
		cancel(sigterm)
	}()
	if err := p.Run(ctx, env); !errors.Is(err, sigterm) {
		t.Fatalf("want the context's cause, got %v", err)
	}
}

func TestPeerDBPhaseIsReadByNameOrByNumber(t *testing.T) {
	for in, want := range map[string]string{
		`{"maintenanceRunning":true,"phase":"MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED"}`: phaseEnabled,
		`{"maintenanceRunning":true,"phase":2}`:                                            phaseEnabled,
		`{"maintenanceRunning":false}`:                                                     phaseUnknown,
	} {
		var s maintenanceStatus
		if err := json.Unmarshal([]byte(in), &s); err != nil || s.Phase.String() != want {
			t.Errorf("%s: phase %q (%v), want %s", in, s.Phase, err, want)
		}
	}
}
