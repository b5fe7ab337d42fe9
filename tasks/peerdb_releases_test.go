package tasks

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/flowapitest"
)

// The peerdb kind against every PeerDB release an operator upgrades from: the stand-in plays v0.30.0 (no
// maintenance status endpoint, no status in the mirror list), v0.36.0 (no status in the mirror list)
// and the current release, as recorded (internal/testkit/flowapitest/testdata/recordings 11 and 12).

// awaitText waits until the log holds text. The bound only keeps a broken test from hanging.
func (r *logRecorder) awaitText(t *testing.T, text string) {
	t.Helper()
	bound := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		seen, changed := strings.Contains(r.text.String(), text), r.changed
		r.mu.Unlock()
		if seen {
			return
		}
		select {
		case <-changed:
		case <-bound:
			t.Fatalf("%q never logged; log:\n%s", text, r)
		}
	}
}

// testCtx bounds a test that would otherwise wait for ever when broken.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func loadPeerDBOn(t *testing.T, api *flowapitest.Server, fields string) *PeerDB {
	t.Helper()
	p := loadPeerDB(t, `{url: "`+api.URL+`", poll_interval: 1ms, `+fields+`}`, nil)
	p.settle = 0 // settlePolls still apply: the stand-in's clock is its polls
	return p
}

func TestPeerDBEveryActionWorksOnEveryRelease(t *testing.T) {
	for _, rel := range flowapitest.Releases {
		t.Run(string(rel), func(t *testing.T) {
			api := flowapitest.Start(t)
			api.Do(func(s *flowapitest.Server) {
				s.Release = rel
				s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"},
					{Name: "xmin_orders", Status: "STATUS_RUNNING"}, {Name: "backfill", Status: "STATUS_COMPLETED"}}
			})
			ctx := testCtx(t)

			env, log := runEnv(t, nil)
			if err := loadPeerDBOn(t, api, "action: wait-ready").Run(ctx, env); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), `msg="flow-api ready" peerdb_version=real-check-6b52fb6 deployment_version=v0.37.0-real-check`) {
				t.Errorf("wait-ready does not log the version flow-api reports:\n%s", log)
			}

			env, log = runEnv(t, nil)
			if err := loadPeerDBOn(t, api, "action: maintenance-start").Run(ctx, env); err != nil {
				t.Fatalf("maintenance-start: %v\n%s", err, log)
			}
			api.Do(func(s *flowapitest.Server) {
				if !s.ModeEnabled || s.Mirrors[0].Status != "STATUS_PAUSED" || s.Mirrors[1].Status != "STATUS_PAUSED" {
					t.Errorf("after start: mode %t, mirrors %v; want the mode on and both mirrors paused", s.ModeEnabled, s.Mirrors)
				}
				// Paused is not started: the end resumes only what the start backed up, after the pause.
				if got := s.BackedUp(); !slices.Equal(got, []string{"orders_cdc", "xmin_orders"}) {
					t.Errorf("maintenance-start returned with backed-up mirrors %v: the start workflow was not over", got)
				}
			})
			checkSources(t, api, rel, log.String())
			if n := strings.Count(log.String(), "peerdb maintenance progress source"); n != 1 {
				t.Errorf("the progress source is logged %d times, want once", n)
			}

			env, log = runEnv(t, nil)
			if err := loadPeerDBOn(t, api, "action: maintenance-end").Run(ctx, env); err != nil {
				t.Fatalf("maintenance-end: %v\n%s", err, log)
			}
			api.Do(func(s *flowapitest.Server) {
				if s.ModeEnabled || s.Mirrors[0].Status != "STATUS_RUNNING" || s.Mirrors[1].Status != "STATUS_RUNNING" {
					t.Errorf("after end: mode %t, mirrors %v; want the mode off and both mirrors running", s.ModeEnabled, s.Mirrors)
				}
			})
			checkSources(t, api, rel, log.String())
		})
	}
}

// checkSources checks that the gate read progress and mirror states the way the release allows, and
// only so: the later releases' additions are used where present.
func checkSources(t *testing.T, api *flowapitest.Server, rel flowapitest.Release, log string) {
	t.Helper()
	statusSource := strings.Contains(log, `msg="peerdb maintenance progress source" source="GET /v1/instance/maintenance/status"`)
	infoSource := strings.Contains(log, `source="GET /v1/instance/info and the mirrors' states" reason="GET /v1/instance/maintenance/status answered 404`)
	if statusSource != rel.HasMaintenanceStatus() || infoSource == rel.HasMaintenanceStatus() {
		t.Errorf("progress read from the status endpoint: %t, from instance info: %t; release has the endpoint: %t\n%s",
			statusSource, infoSource, rel.HasMaintenanceStatus(), log)
	}
	if !rel.HasMaintenanceStatus() {
		if n := api.Count("GET /v1/instance/maintenance/status"); n > 2 {
			t.Errorf("the status endpoint was asked %d times after its 404, want once per action", n)
		}
	}
	asked := api.Count("POST /v1/mirrors/status") > 0
	if asked == rel.ListsStatus() {
		t.Errorf("mirror states asked one by one: %t, the release lists them: %t", asked, rel.ListsStatus())
	}
}

// On a release without the status endpoint, a start that failed after turning the mode on looks like
// one still pausing: the gate waits, and its timeout names the mirror that is not paused.
func TestPeerDBMirrorStillRunningOnAnOldReleaseIsNamedInTheError(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Release, s.StartFails = flowapitest.V0_30_0, true
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_PAUSED"}, {Name: "xmin_orders", Status: "STATUS_RUNNING"}}
	})
	p := loadPeerDBOn(t, api, "action: maintenance-start")
	env, log := runEnv(t, nil)
	ctx, cancel := context.WithCancelCause(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, env) }()
	log.awaitText(t, "mirrors not paused: xmin_orders (STATUS_RUNNING)")
	cancel(context.DeadlineExceeded) // what the task's timeout does
	err := <-done
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last seen: instance INSTANCE_STATUS_MAINTENANCE, mirrors not paused: xmin_orders (STATUS_RUNNING)") {
		t.Fatalf("want the task timeout naming xmin_orders, got %v", err)
	}
}

// On v0.36.0 the status endpoint says the start is over; the mirrors' states come one by one.
func TestPeerDBStartFailsOnV0_36_0NamingTheMirrorNotPaused(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Release, s.StartFails = flowapitest.V0_36_0, true
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}
	})
	env, _ := runEnv(t, nil)
	err := loadPeerDBOn(t, api, "action: maintenance-start").Run(testCtx(t), env)
	if err == nil || !strings.Contains(err.Error(), "mirrors are not paused: orders_cdc (STATUS_RUNNING)") {
		t.Fatalf("want the start failed naming orders_cdc, got %v", err)
	}
}

func TestPeerDBMirrorGoneBetweenListAndStatusIsNotAFailure(t *testing.T) {
	for _, rel := range []flowapitest.Release{flowapitest.V0_30_0, flowapitest.V0_36_0} {
		t.Run(string(rel), func(t *testing.T) {
			api := flowapitest.Start(t)
			api.Do(func(s *flowapitest.Server) {
				s.Release = rel
				s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}, {Name: "dropped", Status: "STATUS_RUNNING"}}
				s.Vanishing["dropped"] = true
			})
			env, log := runEnv(t, nil)
			if err := loadPeerDBOn(t, api, "action: maintenance-start").Run(testCtx(t), env); err != nil {
				t.Fatalf("a mirror dropped between the list and its status failed the start: %v", err)
			}
			if !strings.Contains(log.String(), `msg="peerdb mirror gone" mirror=dropped`) {
				t.Errorf("the dropped mirror is not logged:\n%s", log)
			}
		})
	}
}

// A 404 for a mirror that the list still holds is asked again: only a mirror gone from the list is
// left out.
func TestPeerDBMirrorStatus404ForAMirrorStillListedIsAskedAgain(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Release = flowapitest.V0_36_0
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_PAUSED"}}
		s.Faults["POST /v1/mirrors/status"] = []flowapitest.Fault{{Status: 404, Code: 5, Message: "Not Found"}}
	})
	p := loadPeerDBOn(t, api, "action: maintenance-start")
	env, _ := runEnv(t, nil)
	mirrors, err := p.mirrorStates(testCtx(t), env)
	if err != nil || len(mirrors) != 1 || mirrors[0].Status != "STATUS_PAUSED" {
		t.Fatalf("got %v, %v; want orders_cdc STATUS_PAUSED", mirrors, err)
	}
	if n := api.Count("GET /v1/mirrors/list"); n != 2 {
		t.Errorf("the list was asked %d times, want twice (once more to see whether the mirror is gone)", n)
	}
}

// An empty status is neither running nor paused: a mirror without one is asked for its state, and an
// answer without a state is not flow-api's.
func TestPeerDBEmptyStatusIsNeverTakenAsPaused(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Release = flowapitest.V0_36_0
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: ""}}
	})
	p := loadPeerDBOn(t, api, "action: maintenance-start")
	env, _ := runEnv(t, nil)
	if _, err := p.mirrorStates(testCtx(t), env); !errors.Is(err, errNotFlowAPI) || !strings.Contains(err.Error(), "currentFlowState") {
		t.Errorf("an empty currentFlowState was taken for a state: %v", err)
	}
	if got := (mirrorList{{Name: "orders_cdc"}}).notPaused(); !slices.Equal(got, []string{"orders_cdc (no status)"}) {
		t.Errorf("a mirror without a status reads as %v, want it not paused", got)
	}
}

// Without the status endpoint, the start is over only after the mode was on and every mirror at rest
// for the settle time: PeerDB backs the mirrors up after pausing them.
func TestPeerDBStartOnV0_30_0WaitsTheSettleTimeWithMirrorsAtRest(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Release = flowapitest.V0_30_0
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}
	})
	p := loadPeerDBOn(t, api, "action: maintenance-start")
	p.settle = 50 * p.PollInterval
	env, log := runEnv(t, nil)
	if err := p.Run(testCtx(t), env); err != nil {
		t.Fatal(err)
	}
	var atRest, done time.Time
	for _, line := range strings.Split(log.String(), "\n") {
		stamp := func() time.Time {
			ts, _ := time.Parse(time.RFC3339Nano, strings.TrimPrefix(strings.Fields(line)[0], "time="))
			return ts
		}
		if atRest.IsZero() && strings.Contains(line, "mirrors at rest") {
			atRest = stamp()
		}
		if strings.Contains(line, `msg="peerdb mirrors paused"`) {
			done = stamp()
		}
	}
	if atRest.IsZero() || done.IsZero() || done.Sub(atRest) < p.settle {
		t.Errorf("mirrors at rest at %v, start over at %v: want at least the settle time %v between\n%s", atRest, done, p.settle, log)
	}
}

// Only the gateway's own 404 ({"code": 5}, recording 12) makes the gate follow a maintenance the way a
// release before v0.31.0 allows: a 404 from a proxy in front of a current flow-api fails the task with
// that answer, instead of being taken for an old release.
func TestPeerDBProxy404OnTheStatusEndpointIsNotAnOldRelease(t *testing.T) {
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}
		s.Faults["GET /v1/instance/maintenance/status"] = []flowapitest.Fault{{Status: 404, Message: "default backend - 404"}}
	})
	env, log := runEnv(t, nil)
	err := loadPeerDBOn(t, api, "action: maintenance-start").Run(testCtx(t), env)
	if err == nil || !strings.Contains(err.Error(), "default backend - 404") {
		t.Errorf("a proxy's 404 on the status endpoint: got %v, want the task failed with it", err)
	}
	if strings.Contains(log.String(), "answered 404 (PeerDB before v0.31.0)") {
		t.Errorf("a proxy's 404 was taken for a release without the status endpoint:\n%s", log)
	}
}

// An upgrade: maintenance-start on the release upgraded from, maintenance-end on the current release
// with the same catalog, which resumes what the old release backed up (recording 11).
func TestPeerDBEndOnTheCurrentReleaseResumesWhatAnOldReleasePaused(t *testing.T) {
	for _, from := range []flowapitest.Release{flowapitest.V0_30_0, flowapitest.V0_36_0} {
		t.Run(string(from), func(t *testing.T) {
			api := flowapitest.Start(t)
			api.Do(func(s *flowapitest.Server) {
				s.Release = from
				s.Mirrors = []flowapitest.Mirror{{Name: "events_mirror", IsCDC: true, Status: "STATUS_RUNNING"}}
			})
			ctx := testCtx(t)
			env, log := runEnv(t, nil)
			if err := loadPeerDBOn(t, api, "action: maintenance-start").Run(ctx, env); err != nil {
				t.Fatalf("maintenance-start on %s: %v\n%s", from, err, log)
			}
			api.Do(func(s *flowapitest.Server) { s.Release = flowapitest.Current })
			env, log = runEnv(t, nil)
			if err := loadPeerDBOn(t, api, "action: maintenance-end").Run(ctx, env); err != nil {
				t.Fatalf("maintenance-end on the current release: %v\n%s", err, log)
			}
			if !strings.Contains(log.String(), `msg="peerdb maintenance progress source" source="GET /v1/instance/maintenance/status"`) {
				t.Errorf("the end on the current release is not followed through its status endpoint:\n%s", log)
			}
			api.Do(func(s *flowapitest.Server) {
				if s.ModeEnabled || s.Mirrors[0].Status != "STATUS_RUNNING" {
					t.Errorf("after the end on the current release: mode %t, mirrors %v; want the mode off and the mirror running", s.ModeEnabled, s.Mirrors)
				}
			})
		})
	}
}

// Only a mirror that moves no data is at rest: every FlowStatus on the way to paused or over (and an
// unknown one) keeps a start waiting, on every release.
func TestPeerDBTransitionalMirrorStatesAreNotAtRest(t *testing.T) {
	for _, s := range []string{"STATUS_UNKNOWN", "STATUS_RUNNING", "STATUS_PAUSING", "STATUS_SETUP", "STATUS_SNAPSHOT",
		"STATUS_TERMINATING", "STATUS_RESYNC", "STATUS_MODIFYING", "STATUS_PAUSED_OR_WHATEVER", "status_paused"} {
		if got := (mirrorList{{Name: "m", Status: s}}).notPaused(); len(got) != 1 {
			t.Errorf("a mirror in %s is taken as at rest", s)
		}
	}
	for _, s := range []string{"STATUS_PAUSED", "STATUS_TERMINATED", "STATUS_COMPLETED", "STATUS_FAILED"} {
		if got := (mirrorList{{Name: "m", Status: s}}).notPaused(); len(got) != 0 {
			t.Errorf("a mirror in %s is not taken as at rest", s)
		}
	}
}
