package flowapitest

import (
	"strings"
	"testing"
)

// runUntil polls the status until its phase is phase (the stand-in moves on at each poll).
func runUntil(c client, phase string) {
	c.t.Helper()
	for range 20 {
		_, _, body := c.send("GET", "/v1/instance/maintenance/status", "", "")
		if strings.Contains(body, `"phase":"`+phase+`"`) {
			return
		}
	}
	c.t.Fatalf("the workflow never reached %s", phase)
}

func statuses(c client) map[string]string {
	out := map[string]string{}
	c.srv.Do(func(s *Server) {
		for _, m := range s.Mirrors {
			out[m.Name] = m.Status
		}
	})
	return out
}

func TestStandInEndWithoutStartLeavesAMirrorTheUserPausedPaused(t *testing.T) {
	c := client{t: t, srv: Start(t)}
	c.srv.Do(func(s *Server) { s.Mirrors = []Mirror{{Name: "paused_by_user", IsCDC: true, Status: "STATUS_PAUSED"}} })
	c.end(true)()
	runUntil(c, PhaseUnknown)
	if got := statuses(c)["paused_by_user"]; got != "STATUS_PAUSED" {
		t.Errorf("an end without a start resumed a mirror the user paused: %s", got)
	}
}

func TestStandInStartPausesEveryRunningMirrorAndTheEndResumesOnlyThose(t *testing.T) {
	c := client{t: t, srv: Start(t)}
	c.srv.Do(func(s *Server) {
		s.Mirrors = []Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"},
			{Name: "xmin_orders", Status: "STATUS_RUNNING"}, {Name: "paused_by_user", IsCDC: true, Status: "STATUS_PAUSED"}}
	})
	c.start(true)()
	runUntil(c, PhaseEnabled)
	want := map[string]string{"orders_cdc": "STATUS_PAUSED", "xmin_orders": "STATUS_PAUSED", "paused_by_user": "STATUS_PAUSED"}
	for name, status := range statuses(c) {
		if status != want[name] {
			t.Errorf("after the start, %s is %s, want %s", name, status, want[name])
		}
	}
	c.end(true)()
	runUntil(c, PhaseUnknown)
	want = map[string]string{"orders_cdc": "STATUS_RUNNING", "xmin_orders": "STATUS_RUNNING", "paused_by_user": "STATUS_PAUSED"}
	for name, status := range statuses(c) {
		if status != want[name] {
			t.Errorf("after the end, %s is %s, want %s", name, status, want[name])
		}
	}
}

// A second start while the mode is on pauses nothing, backs nothing up, and keeps the first start's
// backup: the end still resumes the mirror the first start paused.
func TestStandInSecondStartKeepsTheFirstBackupForTheEnd(t *testing.T) {
	c := client{t: t, srv: Start(t)}
	c.srv.Do(func(s *Server) { s.Mirrors = []Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}} })
	c.start(true)()
	runUntil(c, PhaseEnabled)
	c.start(true)()
	runUntil(c, PhaseStart)
	runUntil(c, PhaseEnabled)
	if got := statuses(c)["orders_cdc"]; got != "STATUS_PAUSED" {
		t.Errorf("after the second start, orders_cdc is %s, want STATUS_PAUSED", got)
	}
	c.end(true)()
	runUntil(c, PhaseUnknown)
	if got := statuses(c)["orders_cdc"]; got != "STATUS_RUNNING" {
		t.Errorf("after start, start, end, orders_cdc is %s, want STATUS_RUNNING", got)
	}
}

func TestReplayOnlySkipsStatesInARecordedOrJustPostedPhase(t *testing.T) {
	const (
		idle    = `{"maintenanceRunning":false,"phase":"MAINTENANCE_PHASE_UNKNOWN"}`
		start   = `{"maintenanceRunning":true,"phase":"MAINTENANCE_PHASE_START_MAINTENANCE"}`
		enabled = `{"maintenanceRunning":true,"phase":"MAINTENANCE_PHASE_MAINTENANCE_MODE_ENABLED"}`
		end     = `{"maintenanceRunning":true,"phase":"MAINTENANCE_PHASE_END_MAINTENANCE"}`
	)
	for _, tc := range []struct {
		name                     string
		prev, next, started, got string
		ok                       bool
	}{
		{"the state before, again", start, enabled, "", start, true},
		{"the state awaited, with other activities", start, enabled, "", enabled, true},
		{"the workflow just posted", enabled, idle, PhaseEnd, end, true},
		{"a start gone back to idle", start, enabled, "", idle, false},
		{"a phase nobody asked for", enabled, idle, "", end, false},
		{"the right phase, maintenanceRunning wrong", start, enabled, "", `{"maintenanceRunning":false,"phase":"MAINTENANCE_PHASE_START_MAINTENANCE"}`, false},
		{"no state before the first poll", "", enabled, "", idle, false},
	} {
		if got := skippable(t, tc.prev, tc.next, tc.started, tc.got); got != tc.ok {
			t.Errorf("%s: skippable %t, want %t", tc.name, got, tc.ok)
		}
	}
}

// The start workflow backs the mirrors up after pausing them: a mirror reads PAUSED, with the mode on,
// before the backup that the end workflow needs is written. On v0.30.0 the clock is /v1/instance/info.
func TestStandInBacksUpAfterThePauseOnEveryRelease(t *testing.T) {
	for _, rel := range Releases {
		t.Run(string(rel), func(t *testing.T) {
			c := client{t: t, srv: Start(t)}
			c.srv.Do(func(s *Server) {
				s.Release = rel
				s.Mirrors = []Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}
			})
			c.start(true)()
			clock := statusPath
			if !rel.HasMaintenanceStatus() {
				clock = "/v1/instance/info"
			}
			pausedBeforeBackup := false
			for range 20 {
				c.send("GET", clock, "", "")
				var paused, backedUp, mode bool
				c.srv.Do(func(s *Server) {
					paused, backedUp, mode = s.Mirrors[0].Status == "STATUS_PAUSED", len(s.BackedUp()) == 1, s.ModeEnabled
				})
				if paused && mode && !backedUp {
					pausedBeforeBackup = true
				}
				if backedUp {
					break
				}
			}
			if got := flowState(c, "orders_cdc"); !pausedBeforeBackup || got != "STATUS_PAUSED" {
				t.Errorf("paused before the backup: %t, mirror %s; want the pause seen first, then the backup", pausedBeforeBackup, got)
			}
		})
	}
}
