package tasks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/flowapitest"
)

// How the http and peerdb kinds read answers: long ones, ones that are not flow-api's, idle ones, and
// the statuses that are worth another attempt.

func TestPeerDBStartWithHundredsOfMirrorsReadsTheWholeList(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		for i := range 400 { // about 120 KiB of mirror list, as a PeerDB with many tenants has
			name := fmt.Sprintf("tenant_%03d_orders_to_clickhouse_analytics_cdc_mirror_v2_%s", i, strings.Repeat("x", 200))
			s.Mirrors = append(s.Mirrors, flowapitest.Mirror{Name: name, IsCDC: true, Status: "STATUS_RUNNING"})
		}
	})
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+api.URL+`", poll_interval: 1ms}`, nil)
	env, log := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatalf("start with 400 mirrors, all paused by the workflow: %v", err)
	}
	if !strings.Contains(log.String(), `msg="peerdb mirrors paused" mirrors=400`) {
		t.Errorf("the log does not say 400 mirrors are paused:\n%s", log)
	}
}

func TestPeerDBAnswerLargerThanTheLimitFailsSayingSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"version":"%s"}`, strings.Repeat("v", httpcall.MaxAnswer))
	}))
	defer srv.Close()
	p := loadPeerDB(t, `{action: wait-ready, url: "`+srv.URL+`"}`, nil)
	env, _ := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err == nil || !strings.Contains(err.Error(), "answer larger than 16 MiB") {
		t.Errorf("want the answer refused as too large, got %v", err)
	}
}

func TestPeerDBServerThatAnswersAnEmptyObjectToEverythingIsNotFlowAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = fmt.Fprint(w, `{}`) }))
	defer srv.Close()
	for action, missing := range map[string]string{
		"wait-ready":        "no version",
		"maintenance-start": "no workflowId, runId",
		"maintenance-end":   "no workflowId, runId",
		"maintenance-start, skip_if_no_mirrors: true": "no mirrors",
	} {
		p := loadPeerDB(t, `{action: `+action+`, url: "`+srv.URL+`", poll_interval: 1ms}`, nil)
		env, _ := runEnv(t, nil)
		err := p.Run(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "not flow-api's JSON ("+missing+")") {
			t.Errorf("%s: want the answer refused as not flow-api's, got %v", action, err)
		}
	}
}

func TestPeerDBStatusWithoutAPhaseIsNotFlowAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			_, _ = fmt.Fprint(w, `{"workflowId":"end-maintenance","runId":"r1"}`)
			return
		}
		_, _ = fmt.Fprint(w, `{"maintenanceRunning":false}`)
	}))
	defer srv.Close()
	p := loadPeerDB(t, `{action: maintenance-end, url: "`+srv.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err == nil || !strings.Contains(err.Error(), "not flow-api's JSON (no phase)") {
		t.Errorf("want a status without phase refused, got %v", err)
	}
}

// idleAfterStart is a flow-api whose status reads idle for the first idle polls after the start, then
// shows the mode on.
func idleAfterStart(t *testing.T, idle int32) (*httptest.Server, *atomic.Int32) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST":
			_, _ = fmt.Fprint(w, `{"workflowId":"start-maintenance","runId":"r1"}`)
		case r.URL.Path == "/v1/mirrors/list":
			_, _ = fmt.Fprint(w, `{"mirrors":[]}`)
		case polls.Add(1) <= idle: // Temporal's describe failed: PeerDB's handler says "not running"
			_, _ = fmt.Fprint(w, `{"maintenanceRunning":false,"phase":"MAINTENANCE_PHASE_UNKNOWN","pendingActivities":[]}`)
		default:
			_, _ = fmt.Fprint(w, `{"maintenanceRunning":true,"phase":"MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED","pendingActivities":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &polls
}

func TestPeerDBOneIdleStatusRightAfterTheStartIsNotYetAFailedStart(t *testing.T) {
	srv, _ := idleAfterStart(t, 1)
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+srv.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	if err := p.Run(context.Background(), env); err != nil {
		t.Errorf("idle answers after the POST failed the start: %v", err)
	}
}

func TestPeerDBStartThatStaysIdleFailsAfterAFewPolls(t *testing.T) {
	srv, polls := idleAfterStart(t, 1<<30)
	p := loadPeerDB(t, `{action: maintenance-start, url: "`+srv.URL+`", poll_interval: 1ms}`, nil)
	env, _ := runEnv(t, nil)
	err := p.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "ended without enabling maintenance mode") {
		t.Fatalf("want the start failed, got %v", err)
	}
	if n := polls.Load(); n != maxIdlePolls {
		t.Errorf("failed after %d idle polls, want %d", n, maxIdlePolls)
	}
}

// statusServer answers each request with the next status of statuses (the last one when they run
// out), and records when each request arrived.
func statusServer(t *testing.T, header http.Header, statuses ...int) (*httptest.Server, func() []time.Time) {
	var mu sync.Mutex
	var seen []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, time.Now())
		status := statuses[min(len(seen), len(statuses))-1]
		mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = fmt.Fprint(w, `{"version":"v0.37.8"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"code":13,"message":"answer %d"}`, status)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), seen...)
	}
}

// bothKinds returns an http task and a peerdb wait-ready task sending GET requests to url.
func bothKinds(t *testing.T, url string) map[string]Task {
	return map[string]Task{
		"http":   loadHTTP(t, `{url: "`+url+`"}`, nil),
		"peerdb": loadPeerDB(t, `{action: wait-ready, url: "`+url+`", poll_interval: 1ms}`, nil),
	}
}

func TestPermanent500IsTriedThreeTimesThenFailsWithItsMessage(t *testing.T) {
	for _, kind := range []string{"http", "peerdb"} {
		srv, seen := statusServer(t, nil, 500)
		env, _ := runEnv(t, nil)
		err := bothKinds(t, srv.URL)[kind].Run(boundedContext(t), env)
		if err == nil || !strings.Contains(err.Error(), "answer 500") {
			t.Errorf("%s: want the 500's message, got %v", kind, err)
		}
		if n := len(seen()); n != httpcall.MaxServerErrors {
			t.Errorf("%s: %d requests, want %d", kind, n, httpcall.MaxServerErrors)
		}
	}
}

func TestA500BetweenOtherAnswersDoesNotCountTowardsTheLimit(t *testing.T) {
	srv, seen := statusServer(t, nil, 500, 500, 503, 500, 500, 200)
	h := loadHTTP(t, `{url: "`+srv.URL+`"}`, nil)
	env, _ := runEnv(t, nil)
	if err := h.Run(context.Background(), env); err != nil || len(seen()) != 6 {
		t.Errorf("%d requests, error %v: want the 200 of the sixth", len(seen()), err)
	}
}

func Test429IsRetriedAfterItsRetryAfter(t *testing.T) {
	for _, kind := range []string{"http", "peerdb"} {
		srv, seen := statusServer(t, http.Header{"Retry-After": {"1"}}, 429, 200)
		env, _ := runEnv(t, nil)
		err := bothKinds(t, srv.URL)[kind].Run(context.Background(), env)
		at := seen()
		if len(at) != 2 {
			t.Fatalf("%s: %d requests (error %v), want the 429 then the 200", kind, len(at), err)
		}
		// The server asked for a second; the backoff alone waits a few milliseconds.
		if gap := at[1].Sub(at[0]); gap < time.Second {
			t.Errorf("%s: retried %s after a 429 with Retry-After: 1", kind, gap)
		}
	}
}
