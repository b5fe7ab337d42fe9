package flowapitest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// request is how a recorded "$ ..." line is sent: the recordings name requests in words.
type request struct {
	method, path, auth, body string
}

const maintenancePath = "/v1/instance/maintenance"

// The tokens that stand for the recording's JWTs.
const (
	validJWT   = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJyZWFsLWNoZWNrIn0.valid"
	expiredJWT = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.expired"
)

// requests maps every recorded request line to the request it stands for. A recording with a line
// missing here fails the replay.
var requests = map[string]request{
	"curl -si GET /v1/version":                     {method: "GET", path: "/v1/version"},
	"GET /v1/instance/maintenance/status (idle)":   {method: "GET", path: "/v1/instance/maintenance/status"},
	"GET /v1/instance/info (idle)":                 {method: "GET", path: "/v1/instance/info"},
	"POST {}":                                      {method: "POST", path: maintenancePath, body: "{}"},
	`POST {"status":"MAINTENANCE_STATUS_UNKNOWN"}`: {method: "POST", path: maintenancePath, body: `{"status":"MAINTENANCE_STATUS_UNKNOWN"}`},
	`POST {"status":"FOO"}`:                        {method: "POST", path: maintenancePath, body: `{"status":"FOO"}`},
	// The recorded message names the body's first character, 'x'.
	"POST not json": {method: "POST", path: maintenancePath, body: "x not json"},
	"GET /v1/instance/maintenance (wrong method)": {method: "GET", path: maintenancePath},
	"GET /v1/nope":                    {method: "GET", path: "/v1/nope"},
	"POST /v1/version (wrong method)": {method: "POST", path: "/v1/version"},

	"GET /v1/version, no Authorization (OAuth on)":                                          {method: "GET", path: "/v1/version"},
	"GET /v1/version, Authorization: Bearer <valid JWT>  (PEERDB_DEPLOYMENT_VERSION unset)": {method: "GET", path: "/v1/version", auth: "Bearer " + validJWT},
	"GET /v1/version, Authorization: <valid JWT without Bearer prefix>":                     {method: "GET", path: "/v1/version", auth: validJWT},
	"GET /v1/version, Authorization: Bearer <expired JWT>":                                  {method: "GET", path: "/v1/version", auth: "Bearer " + expiredJWT},
	"GET /v1/version, Authorization: Basic cGVlcmRiOnBlZXJkYg== (PEERDB_PASSWORD style)":    {method: "GET", path: "/v1/version", auth: "Basic cGVlcmRiOnBlZXJkYg=="},
	"GET /v1/instance/maintenance/status, no Authorization":                                 {method: "GET", path: "/v1/instance/maintenance/status"},

	"POST start again while the first start workflow is still running": {method: "POST", path: maintenancePath, body: `{"status":"MAINTENANCE_STATUS_START"}`},
	"GET /v1/instance/info": {method: "GET", path: "/v1/instance/info"},

	`POST {"status":"MAINTENANCE_STATUS_START","usePeerflowTaskQueue":true}  (only the stock peer-flow worker running)`: {method: "POST", path: maintenancePath, body: `{"status":"MAINTENANCE_STATUS_START","usePeerflowTaskQueue":true}`},
	`POST {"status":"MAINTENANCE_STATUS_END","usePeerflowTaskQueue":true}`:                                              {method: "POST", path: maintenancePath, body: `{"status":"MAINTENANCE_STATUS_END","usePeerflowTaskQueue":true}`},
}

// replay is how one recording is replayed: the system as it was before the recording began (setup),
// and for status polls, what happened before the recorded poll of each index (a POST, a worker
// starting), which the recording does not show.
type replay struct {
	setup   func(c client)
	actions func(c client) map[int]func()
	check   func(t *testing.T, c client, answers []string) // the stand-in's answers, or the recorded polls

}

// maintenanceWorker starts a flow worker with USE_MAINTENANCE_TASK_QUEUE=true.
func maintenanceWorker(c client) { c.srv.Do(func(s *Server) { s.Pollers[MaintenanceQueue] = true }) }

var replays = map[string]replay{
	"01-idle-and-errors.txt": {},
	"02-oauth.txt": {setup: func(c client) {
		c.srv.Do(func(s *Server) {
			s.OAuth, s.DeploymentVersion = true, ""
			s.Tokens[validJWT], s.Expired[expiredJWT] = true, true
		})
	}},
	"03-start-no-worker-on-queue.txt": {
		actions: func(c client) map[int]func() { return map[int]func(){1: c.start(false)} },
		check: func(t *testing.T, c client, recorded []string) {
			for range 20 { // a start on a queue no worker polls never progresses
				_, _, body := c.send("GET", "/v1/instance/maintenance/status", "", "")
				if !reflect.DeepEqual(normalize(t, body), normalize(t, recorded[1])) {
					t.Fatalf("a start on a queue without a worker moved on: %s", body)
				}
			}
		},
	},
	"04-temporal-describe-start-no-worker.txt": {},
	"05-start-again-while-running.txt": {
		setup: func(c client) { c.start(false)() },
		check: func(t *testing.T, c client, answers []string) {
			var running string
			var runs int
			c.srv.Do(func(s *Server) { _, running, _ = s.Workflow(StartWorkflow); runs = s.runs })
			if runs != 1 || !strings.Contains(answers[0], `"runId":"`+running+`"`) {
				t.Errorf("a second start while one runs answered %s after %d runs, want the running run id %s", answers[0], runs, running)
			}
		},
	},
	"06-stuck-start-completes-once-maintenance-worker-starts.txt": {
		setup:   func(c client) { c.start(false)() },
		actions: func(c client) map[int]func() { return map[int]func(){1: func() { maintenanceWorker(c) }} },
	},
	"07-start-then-end-with-maintenance-worker.txt": {
		setup: func(c client) {
			maintenanceWorker(c)
			c.srv.Do(func(s *Server) { s.ModeEnabled = true })
		},
		actions: func(c client) map[int]func() { return map[int]func(){1: c.start(false), 4: c.end(false)} },
	},
	"08-end-without-start.txt": {
		setup:   maintenanceWorker,
		actions: func(c client) map[int]func() { return map[int]func(){1: c.end(false)} },
	},
	"09-usePeerflowTaskQueue-with-stock-worker.txt": {},
	"10-start-end-on-peerflow-queue-status.txt": {
		actions: func(c client) map[int]func() { return map[int]func(){1: c.start(true), 3: c.end(true)} },
	},
}

func TestStandInReplaysEveryRecordedExchange(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "recordings", "*.txt"))
	if err != nil || len(files) < 10 {
		t.Fatalf("recordings: %v (found %d)", err, len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".txt"), func(t *testing.T) {
			r, ok := replays[name]
			if tr, timed := timedReplays[name]; timed {
				r, ok = tr, true
			}
			if !ok {
				t.Fatalf("%s has no replay: add it to replays", name)
			}
			srv := Start(t)
			c := client{t: t, srv: srv}
			if r.setup != nil {
				r.setup(c)
			}
			switch {
			case strings.Contains(name, "temporal-describe"):
				replayDescribe(t, c, path)
			case isTimed(readFile(t, path)):
				replayTimed(t, c, path, r)
			case strings.HasPrefix(readFile(t, path), "$ "):
				replayExchanges(t, c, path, r.check)
			default:
				replayPolls(t, c, path, r)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
