package flowapitest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The recordings of a real flow-api (testdata/recordings, see its README.md) replayed against the
// stand-in. Two kinds of files: exchanges ("$ request" lines, each followed by the answer) and status
// polls ("10:33:53.367 {body} HTTP 200" lines, taken about a second apart while the workflows ran).

// exchange is one recorded request and its answer.
type exchange struct {
	request string // the text after "$ "
	status  int
	header  http.Header // recorded response headers, when the recording kept them
	body    string
}

// readExchanges parses a file of "$ request" lines and their answers: a full HTTP response
// ("HTTP/1.1 200 OK", headers, a blank line, the body), or one line "body HTTP 400", or one line "body"
// (200).
func readExchanges(t *testing.T, path string) []exchange {
	t.Helper()
	var out []exchange
	var resp []string
	flush := func() {
		if len(out) == 0 {
			return
		}
		e := &out[len(out)-1]
		e.status, e.header = 200, http.Header{}
		if len(resp) > 0 && strings.HasPrefix(resp[0], "HTTP/1.1 ") {
			e.status, _ = strconv.Atoi(strings.Fields(resp[0])[1])
			i := 1
			for ; i < len(resp) && resp[i] != ""; i++ {
				k, v, _ := strings.Cut(resp[i], ": ")
				e.header.Add(k, v)
			}
			resp = resp[min(i+1, len(resp)):]
		}
		if len(resp) != 1 {
			t.Fatalf("%s: %q: want one body line, got %q", path, e.request, resp)
		}
		e.body = resp[0]
		if m := trailingStatus.FindStringSubmatch(e.body); m != nil {
			e.body, e.status = m[1], atoi(t, m[2])
		}
		resp = nil
	}
	for _, line := range lines(t, path) {
		if req, ok := strings.CutPrefix(line, "$ "); ok {
			flush()
			out = append(out, exchange{request: strings.TrimSpace(req)})
			continue
		}
		resp = append(resp, line)
	}
	flush()
	return out
}

var (
	trailingStatus = regexp.MustCompile(`^(.*) HTTP (\d{3})$`)
	pollLine       = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d+ (\{.*\}) HTTP (\d{3})$`)
)

// poll is one recorded status answer.
type poll struct {
	status int
	body   string
}

func readPolls(t *testing.T, path string) []poll {
	t.Helper()
	var out []poll
	for _, line := range lines(t, path) {
		m := pollLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: not a status poll: %q", path, line)
		}
		out = append(out, poll{status: atoi(t, m[2]), body: m[1]})
	}
	return out
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, strings.TrimRight(sc.Text(), " "))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// normalize decodes a JSON body and replaces what differs between runs of the same behaviour (run ids,
// activity ids and durations) by markers, so that two bodies compare by what they mean.
func normalize(t *testing.T, body string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if s, ok := child.(string); ok && s != "" && (k == "runId" || k == "activityId" || k == "activityDuration") {
					v[k] = "<" + k + ">"
					continue
				}
				v[k] = walk(child)
			}
		case []any:
			for i := range v {
				v[i] = walk(v[i])
			}
		}
		return v
	}
	return walk(v)
}

// client sends requests to the stand-in.
type client struct {
	t   *testing.T
	srv *Server
}

func (c client) send(method, path, auth, body string) (int, http.Header, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (c client) maintenance(status string, peerflow bool) string {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"status": status, "usePeerflowTaskQueue": peerflow})
	code, _, resp := c.send("POST", "/v1/instance/maintenance", "", string(body))
	if code != 200 {
		c.t.Fatalf("POST %s: %d %s", body, code, resp)
	}
	var r struct{ RunID string }
	_ = json.Unmarshal([]byte(resp), &r)
	return r.RunID
}

func (c client) start(peerflow bool) func() {
	return func() { c.maintenance("MAINTENANCE_STATUS_START", peerflow) }
}

func (c client) end(peerflow bool) func() {
	return func() { c.maintenance("MAINTENANCE_STATUS_END", peerflow) }
}

// replayExchanges sends each recorded request and compares the answer: status, body by meaning, and
// the response headers the recording kept (but Date and Content-Length). It returns the bodies.
func replayExchanges(t *testing.T, c client, path string, check func(t *testing.T, c client, got []string)) {
	t.Helper()
	var got []string
	for _, e := range readExchanges(t, path) {
		req, ok := requests[e.request]
		if !ok {
			t.Fatalf("recorded request %q has no entry in requests", e.request)
		}
		status, header, body := c.send(req.method, req.path, req.auth, req.body)
		if status != e.status || !reflect.DeepEqual(normalize(t, body), normalize(t, e.body)) {
			t.Errorf("%s:\n got %d %s\nwant %d %s", e.request, status, strings.TrimSpace(body), e.status, e.body)
		}
		for k := range e.header {
			if k != "Date" && k != "Content-Length" && header.Get(k) != e.header.Get(k) {
				t.Errorf("%s: header %s %q, want %q", e.request, k, header.Get(k), e.header.Get(k))
			}
		}
		got = append(got, body)
	}
	if check != nil {
		check(t, c, got)
	}
}

// replayPolls polls the status as the recording did, doing before each recorded poll what happened
// then. The recording polled about once a second, the stand-in moves on at each poll: each recorded
// answer must come within a few polls, in order, with nothing else in between but the states the
// recording skipped, which must be those of the recorded answer before or the one awaited (see
// skippable).
func replayPolls(t *testing.T, c client, path string, r replay) {
	t.Helper()
	polls := readPolls(t, path)
	acts := map[int]func(){}
	if r.actions != nil {
		acts = r.actions(c)
	}
	var recorded []string
	for i, p := range polls {
		started := "" // the phase of a workflow posted just before this poll
		if act := acts[i]; act != nil {
			act()
			started = postedPhase(c)
		}
		want := normalize(t, p.body)
		var seen []string
		for {
			status, _, body := c.send("GET", "/v1/instance/maintenance/status", "", "")
			seen = append(seen, strings.TrimSpace(body))
			if status == p.status && reflect.DeepEqual(normalize(t, body), want) {
				break
			}
			prev := ""
			if i > 0 {
				prev = polls[i-1].body
			}
			if status != http.StatusOK || !skippable(t, prev, p.body, started, body) {
				t.Fatalf("poll %d: between %s and %s the stand-in answered %d %s", i, prev, p.body, status, body)
			}
			if len(seen) == 8 {
				t.Fatalf("poll %d: want %s, the stand-in answered:\n%s", i, p.body, strings.Join(seen, "\n"))
			}
		}
		recorded = append(recorded, p.body)
	}
	if r.check != nil {
		r.check(t, c, recorded)
	}
}

// skippable reports whether got may sit, unrecorded, between the recorded answers prev ("" for none)
// and next: it must be in the phase of one of them with the same maintenanceRunning (its pending
// activities may differ: the recording polled once a second and missed activities), or in started,
// the phase of a workflow posted just before next, running (a fast end the recording missed). A
// start that went back to idle, or an answer whose maintenanceRunning contradicts its phase, is not
// skippable.
func skippable(t *testing.T, prev, next, started, got string) bool {
	t.Helper()
	state := func(body string) string {
		var s struct {
			MaintenanceRunning bool
			Phase              string
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("not a status: %v: %s", err, body)
		}
		return fmt.Sprintf("%s running=%t", s.Phase, s.MaintenanceRunning)
	}
	g := state(got)
	return g == state(next) || prev != "" && g == state(prev) || started != "" && g == started+" running=true"
}

// postedPhase is the phase of the workflow the last POST /v1/instance/maintenance asked for.
func postedPhase(c client) string {
	reqs := c.srv.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if r := reqs[i]; r.Method == "POST" && r.Path == maintenancePath {
			switch {
			case strings.Contains(r.Body, "MAINTENANCE_STATUS_START"):
				return PhaseStart
			case strings.Contains(r.Body, "MAINTENANCE_STATUS_END"):
				return PhaseEnd
			}
			return ""
		}
	}
	return ""
}

// replayDescribe starts a workflow as the recording did (stock worker only, default queue) and checks
// what `temporal workflow describe` showed: the workflow's task queue, and no poller on it.
func replayDescribe(t *testing.T, c client, path string) {
	t.Helper()
	fields, pollers := map[string]string{}, -1
	for _, line := range lines(t, path) {
		if pollers >= 0 {
			pollers++ // the first line after "Pollers:" is the table's header
			continue
		}
		if strings.TrimSpace(line) == "Pollers:" {
			pollers = 0
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			fields[f[0]] = f[1]
		}
	}
	pollers = max(pollers-1, 0)
	c.start(false)()
	c.send("GET", "/v1/instance/maintenance/status", "", "")
	c.srv.Do(func(s *Server) {
		queue, _, ok := s.Workflow(fields["WorkflowId"])
		if !ok || queue != fields["TaskQueue"] {
			t.Errorf("workflow %s: running %t on %q, want running on %q", fields["WorkflowId"], ok, queue, fields["TaskQueue"])
		}
		if s.Pollers[queue] != (pollers > 0) {
			t.Errorf("queue %s polled: %t, recorded pollers: %d", queue, s.Pollers[queue], pollers)
		}
	})
}
