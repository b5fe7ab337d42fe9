package flowapitest

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Timed exchanges (recordings 11 and 12): "14:35:09.996 >>> GET /v1/mirrors/list" lines, each followed by
// "14:35:09.998 <<< 200 {body}"; lines starting with # are the recording's comments.

var (
	timedRequest = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d+ >>> (\S+) (\S+) ?(.*)$`)
	timedAnswer  = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d+ <<< (\d{3}) (.*)$`)
)

// timedExchange is one recorded request and its answer.
type timedExchange struct {
	method, path, body string
	status             int
	answer             string
}

func (e timedExchange) request() string { return e.method + " " + e.path + " " + e.body }

func isTimed(text string) bool {
	for _, line := range strings.Split(text, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			return timedRequest.MatchString(line)
		}
	}
	return false
}

func readTimed(t *testing.T, path string) []timedExchange {
	t.Helper()
	var out []timedExchange
	for _, line := range lines(t, path) {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := timedRequest.FindStringSubmatch(line); m != nil {
			out = append(out, timedExchange{method: m[1], path: m[2], body: m[3]})
			continue
		}
		m := timedAnswer.FindStringSubmatch(line)
		if m == nil || len(out) == 0 || out[len(out)-1].answer != "" {
			t.Fatalf("%s: not a request or the answer of one: %q", path, line)
		}
		out[len(out)-1].status, out[len(out)-1].answer = atoi(t, m[1]), m[2]
	}
	return out
}

// replayTimed sends each recorded request, doing first what r.actions says happened before it, and
// compares the answer. A request that repeats the one before is a poll: the recording polled every
// two seconds, the stand-in moves on at each poll, so it may give the answer recorded before a few
// more times before the one recorded.
func replayTimed(t *testing.T, c client, path string, r replay) {
	t.Helper()
	acts := map[int]func(){}
	if r.actions != nil {
		acts = r.actions(c)
	}
	recorded := readTimed(t, path)
	var answers []string
	for i, e := range recorded {
		if act := acts[i]; act != nil {
			act()
		}
		want := normalize(t, e.answer)
		for n := 0; ; n++ {
			status, _, body := c.send(e.method, e.path, "", e.body)
			if status == e.status && reflect.DeepEqual(normalize(t, body), want) {
				answers = append(answers, body)
				break
			}
			polled := i > 0 && recorded[i-1].request() == e.request()
			if !polled || status != recorded[i-1].status || !reflect.DeepEqual(normalize(t, body), normalize(t, recorded[i-1].answer)) || n == 8 {
				t.Fatalf("%s %s %s:\n got %d %s\nwant %d %s", e.method, e.path, e.body, status, strings.TrimSpace(body), e.status, e.answer)
			}
		}
	}
	if r.check != nil {
		r.check(t, c, answers)
	}
}

// pollUntil polls the maintenance status until its phase is phase.
func pollUntil(c client, phase string) {
	c.t.Helper()
	for range 20 {
		if _, _, body := c.send("GET", statusPath, "", ""); strings.Contains(body, `"phase":"`+phase+`"`) {
			return
		}
	}
	c.t.Fatalf("the workflow never reached %s", phase)
}

// flowState asks POST /v1/mirrors/status for name's currentFlowState.
func flowState(c client, name string) string {
	c.t.Helper()
	_, _, body := c.send("POST", "/v1/mirrors/status", "", `{"flowJobName":"`+name+`"}`)
	var s struct{ CurrentFlowState string }
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		c.t.Fatalf("mirror status: %v: %s", err, body)
	}
	return s.CurrentFlowState
}

const recordedMirror = "events_mirror_1796394878"

// upgradeFromV0_36_0 is what recording 11 tells in its comments: maintenance-start on v0.36.0 (the mirror
// paused, seen through /v1/mirrors/status since the list has no status), the upgrade to the current
// release, and maintenance-end on it, which resumes the mirror the old release paused.
func upgradeFromV0_36_0(c client) {
	c.t.Helper()
	c.start(true)()
	pollUntil(c, PhaseEnabled)
	if got := flowState(c, recordedMirror); got != "STATUS_PAUSED" {
		c.t.Errorf("after the start on v0.36.0 the mirror is %s, want STATUS_PAUSED", got)
	}
	if _, _, body := c.send("GET", "/v1/mirrors/list", "", ""); strings.Contains(body, `"status"`) {
		c.t.Errorf("v0.36.0's mirror list gives a status: %s", body)
	}
	c.srv.Do(func(s *Server) { s.Release = Current })
	c.end(true)()
	pollUntil(c, PhaseUnknown)
}

var timedReplays = map[string]replay{
	"11-v0.36.0-mirrors-list-has-no-status.txt": {
		setup: func(c client) {
			c.srv.Do(func(s *Server) {
				s.Release = V0_36_0
				s.Mirrors = []Mirror{{Name: recordedMirror, IsCDC: true, Status: "STATUS_SETUP", ID: "1",
					SourceName: "mirror_src", SourceType: "POSTGRES", DestinationName: "mirror_dst", DestinationType: "POSTGRES",
					CreatedAt: time.UnixMicro(1796394909619480)}}
			})
		},
		actions: func(c client) map[int]func() {
			return map[int]func(){
				2: func() { c.srv.Do(func(s *Server) { s.Mirrors[0].Status = "STATUS_RUNNING" }) },
				3: func() { upgradeFromV0_36_0(c) },
			}
		},
	},
	"12-v0.30.0-no-maintenance-status.txt": {
		setup: func(c client) {
			c.srv.Do(func(s *Server) { s.Release, s.Version, s.DeploymentVersion = V0_30_0, "real-check", "v0.37.0-real" })
		},
		check: func(t *testing.T, c client, _ []string) {
			c.srv.Do(func(s *Server) {
				if len(s.workflows) != 0 || s.ModeEnabled {
					t.Errorf("after the end on v0.30.0: workflows %v, mode %t; want none running and the mode off", s.workflows, s.ModeEnabled)
				}
			})
		},
	},
}
