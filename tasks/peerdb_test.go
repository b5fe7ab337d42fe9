package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/flowapitest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// These tests run against flowapitest, a stand-in for flow-api's HTTP gateway that replays the
// behaviour recorded from a real PeerDB (internal/testkit/flowapitest/testdata/recordings): the real flow-api
// needs Temporal and cannot run here.

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

// phasesLogged returns the phases of the progress log, in order.
func phasesLogged(log string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`msg="peerdb maintenance progress" phase=(\S+)`).FindAllStringSubmatch(log, -1) {
		if len(out) == 0 || out[len(out)-1] != m[1] {
			out = append(out, m[1])
		}
	}
	return out
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
	if !strings.Contains(log.String(), "peerdb_version=real-check-6b52fb6") {
		t.Errorf("the version flow-api reports is not logged:\n%s", log)
	}
}

// The done-when of the peerdb kind: a stock PeerDB (only flow-worker, polling peer-flow-task-queue) and
// a task file with default options, as in recordings 09 and 10.
func TestPeerDBStartAndEndWithOnlyTheStockWorkerAndDefaultOptions(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}, {Name: "backfill", Status: "STATUS_COMPLETED"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // only bounds a broken test
	defer cancel()
	env, log := runEnv(t, nil)
	for _, action := range []string{"wait-ready", "maintenance-start"} {
		if err := loadPeerDB(t, `{action: `+action+`, url: "`+api.URL+`/", poll_interval: 1ms}`, nil).Run(ctx, env); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
	}
	reqs := api.Requests()
	if post := reqs[1]; post.Path != "/v1/instance/maintenance" || post.Body != `{"status":"MAINTENANCE_STATUS_START","usePeerflowTaskQueue":true}` {
		t.Errorf("start sent %s %s, want the peer-flow task queue", post.Path, post.Body)
	}
	api.Do(func(s *flowapitest.Server) {
		if !s.ModeEnabled || s.Mirrors[0].Status != "STATUS_PAUSED" {
			t.Errorf("after start: mode %t, mirror %s; want maintenance mode on and the CDC mirror paused", s.ModeEnabled, s.Mirrors[0].Status)
		}
	})
	if got, want := strings.Join(phasesLogged(log.String()), " "), "MAINTENANCE_PHASE_START_MAINTENANCE MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED"; got != want {
		t.Errorf("start went through phases %s, want %s (recording 10)", got, want)
	}
	for _, want := range []string{"EnableMaintenanceMode", "BackgroundAlerter", `msg="peerdb mirrors paused" mirrors=2`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not show %q:\n%s", want, log)
		}
	}
	if strings.Contains(log.String(), "level=WARN") {
		t.Errorf("a start that makes progress was warned about:\n%s", log)
	}

	env, log = runEnv(t, nil)
	if err := loadPeerDB(t, `{action: maintenance-end, url: "`+api.URL+`", poll_interval: 1ms}`, nil).Run(ctx, env); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(phasesLogged(log.String()), " "), "MAINTENANCE_PHASE_END_MAINTENANCE MAINTENANCE_PHASE_UNKNOWN"; got != want {
		t.Errorf("end went through phases %s, want %s (recording 10)", got, want)
	}
	api.Do(func(s *flowapitest.Server) {
		if s.ModeEnabled || s.Mirrors[0].Status != "STATUS_RUNNING" {
			t.Errorf("after end: mode %t, mirror %s; want the mode off and the mirror running", s.ModeEnabled, s.Mirrors[0].Status)
		}
	})
}

// stalled runs a start that no worker picks up until its context is cancelled with the cause a task
// timeout has, once the WARN was logged, and returns the error and the log.
func stalled(t *testing.T, taskQueue string, pollers map[string]bool) (error, *logRecorder, time.Duration) {
	t.Helper()
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) { s.Pollers = pollers })
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 2ms`+taskQueue+`}`, nil)
	p.stallAfter = 20 * p.PollInterval
	p.progressEvery = time.Hour // a line per change only
	env, log := runEnv(t, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, env) }()
	log.await(t, "peerdb maintenance workflow makes no progress")
	cancel(context.DeadlineExceeded)
	return <-done, log, p.stallAfter
}

func TestPeerDBStartOnAQueueNoWorkerPollsWarnsAndTheTimeoutNamesTheQueue(t *testing.T) {
	err, log, stallAfter := stalled(t, ", task_queue: maintenance", map[string]bool{flowapitest.PeerFlowQueue: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the task timeout, got %v", err)
	}
	for _, want := range []string{"maintenance-flow-task-queue", "USE_MAINTENANCE_TASK_QUEUE=true", "task_queue: peerflow", "last seen: phase MAINTENANCE_PHASE_START_MAINTENANCE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error %q does not say %q", err, want)
		}
	}
	warn := regexp.MustCompile(`level=WARN msg="peerdb maintenance workflow makes no progress" .*task_queue=maintenance-flow-task-queue stalled_ms=(\d+)`).FindStringSubmatch(log.String())
	if warn == nil {
		t.Fatalf("the WARN does not name the task queue:\n%s", log)
	}
	if ms, _ := strconv.Atoi(warn[1]); time.Duration(ms)*time.Millisecond < stallAfter {
		t.Errorf("warned after %s ms without progress, before the threshold %v", warn[1], stallAfter)
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 1 {
		t.Errorf("%d WARN lines for one stall, want 1", n)
	}
	if n := strings.Count(log.String(), `msg="peerdb maintenance progress"`); n != 1 {
		t.Errorf("%d progress lines for one unchanged state, want 1:\n%s", n, log)
	}
}

func TestPeerDBStartWithNoWorkerAtAllSaysFlowWorkerMustRun(t *testing.T) {
	err, _, _ := stalled(t, "", map[string]bool{})
	if !strings.Contains(err.Error(), "peer-flow-task-queue, which flow-worker polls") {
		t.Errorf("timeout error %q does not point at flow-worker", err)
	}
	// PeerDB's Helm chart sets PEERDB_DEPLOYMENT_UID, which prefixes the queue's name.
	if !strings.Contains(err.Error(), "<uid>-peer-flow-task-queue") {
		t.Errorf("timeout error %q does not name the prefixed queue", err)
	}
}

func TestPeerDBStartFailsWhenARunningNonCDCMirrorWasNotPaused(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.StartFails = true // the mode goes on, the workflow fails before pausing
		s.Mirrors = []flowapitest.Mirror{{Name: "xmin_orders", Status: "STATUS_RUNNING"}}
	})
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err == nil || !strings.Contains(err.Error(), "not paused: xmin_orders (STATUS_RUNNING)") {
		t.Errorf("want the start failed naming xmin_orders, got %v", err)
	}
}

func TestPeerDBStartFailsNamingTheMirrorsThatAreNotPaused(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.StartFails = true // the mode goes on, the workflow fails before pausing
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"},
			{Name: "paused_cdc", IsCDC: true, Status: "STATUS_PAUSED"}, {Name: "events_cdc", IsCDC: true, Status: "STATUS_SNAPSHOT"}}
	})
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	err := p.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "mirrors are not paused: orders_cdc (STATUS_RUNNING), events_cdc (STATUS_SNAPSHOT)") {
		t.Fatalf("want a failed start naming the running mirrors, got %v", err)
	}
}

// As PeerDB's own maintenance command, which skips only when the mirror list is empty: its start
// workflow pauses every running mirror, CDC or not.
func TestPeerDBSkipIfNoMirrorsSkipsTheStartOnlyWhenPeerDBHasNoMirror(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mirrors []flowapitest.Mirror
		posts   int
	}{
		{"no mirror at all", nil, 0},
		{"only a finished snapshot mirror", []flowapitest.Mirror{{Name: "backfill", Status: "STATUS_COMPLETED"}}, 1},
		{"a running XMin mirror", []flowapitest.Mirror{{Name: "xmin_orders", Status: "STATUS_RUNNING"}}, 1},
		{"a CDC mirror", []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := flowapitest.Start(t)
			api.Do(func(s *flowapitest.Server) { s.Mirrors = tc.mirrors })
			p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms, skip_if_no_mirrors: true}`, nil)
			env, log := runEnv(t, nil)
			if err := p.Run(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if n := api.Count("POST /v1/instance/maintenance"); n != tc.posts {
				t.Errorf("start posted %d times, want %d", n, tc.posts)
			}
			if skipped := strings.Contains(log.String(), "peerdb maintenance start skipped"); skipped != (tc.posts == 0) {
				t.Errorf("skip logged: %t, want %t:\n%s", skipped, tc.posts == 0, log)
			}
		})
	}
}

func TestPeerDBPermanentAnswersFailAtOnceWithTheGatewayMessage(t *testing.T) {
	for _, f := range []flowapitest.Fault{
		{Status: 400, Code: 3, Message: "invalid maintenance status"},
		{Status: 401, Code: 16, Message: flowapitest.MsgTokenExpired},
		{Status: 403, Code: 7, Message: "permission denied"},
		{Status: 404, Code: 5, Message: "Not Found"},
		{Status: 501, Code: 12, Message: "Method Not Allowed"},
	} {
		t.Run(strconv.Itoa(f.Status), func(t *testing.T) {
			api := flowapitest.Start(t)
			api.Do(func(s *flowapitest.Server) { s.Faults["POST /v1/instance/maintenance"] = []flowapitest.Fault{f, f} })
			p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
			env, _ := runEnv(t, nil)
			err := p.Run(context.Background(), env)
			var apiErr *FlowAPIError
			if !errors.As(err, &apiErr) || apiErr.Status != f.Status || !strings.Contains(err.Error(), f.Message) {
				t.Fatalf("want the gateway's %d with its message, got %v", f.Status, err)
			}
			if n := api.Count("POST /v1/instance/maintenance"); n != 1 {
				t.Errorf("a %d answer was sent %d times, want once", f.Status, n)
			}
		})
	}
}

func TestPeerDBGatewayErrorsAreRetriedWithinTheTaskTimeout(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Faults["POST /v1/instance/maintenance"] = []flowapitest.Fault{{Status: 502, Message: "bad gateway"}, {Status: 503, Code: 14, Message: "unavailable"}}
		s.Faults["GET /v1/instance/maintenance/status"] = []flowapitest.Fault{{Status: 504, Message: "gateway timeout"}}
	})
	p := loadPeerDB(t, `{action: maintenance-end, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if n := api.Count("POST /v1/instance/maintenance"); n != 3 {
		t.Errorf("end posted %d times, want 3 (502, 503, then accepted)", n)
	}
}

func TestPeerDBRequestThatHangsIsCutByRequestTimeoutAndRetried(t *testing.T) {
	api := flowapitest.Start(t)
	hang := make(chan struct{})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(hang) }) }) // also when the test fails early
	api.Do(func(s *flowapitest.Server) { s.Hang = hang })
	p := loadPeerDB(t, `{action: wait-ready, url: "`+api.URL+`", poll_interval: 1ms, request_timeout: 10ms}`, nil)
	env, log := runEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // only bounds a broken test
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, env) }()
	log.await(t, "waiting for flow-api")
	api.Do(func(s *flowapitest.Server) { s.Hang = nil })
	release.Do(func() { close(hang) })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "no answer within request_timeout 10ms") {
		t.Errorf("the cut request is not logged as such:\n%s", log)
	}
}

func TestPeerDBTimeoutWhileWaitingReportsTheLastPhaseSeen(t *testing.T) {
	api := flowapitest.Start(t)
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 5ms, task_queue: maintenance}`, nil)
	env, log := runEnv(t, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, env) }()
	log.await(t, "peerdb maintenance progress")
	cancel(context.DeadlineExceeded) // what the task's timeout does
	err := <-done
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the task timeout, got %v", err)
	}
	if !strings.Contains(err.Error(), "last seen: phase MAINTENANCE_PHASE_START_MAINTENANCE, maintenanceRunning true, no pending activity") {
		t.Errorf("error %q does not say which phase it was stuck in", err)
	}
}

func TestPeerDBRefusedConnectionIsWaitedOutUntilTheTaskTimeout(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) // nothing listens there: connections are refused
	p := loadPeerDB(t, `{action: wait-ready, url: "http://`+addr+`", poll_interval: 5ms}`, nil)
	env, log := runEnv(t, nil)
	err := timeOutWhenLogged(t, p, env, log, "waiting for flow-api")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want the task timeout after refused connections, got %v", err)
	}
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
