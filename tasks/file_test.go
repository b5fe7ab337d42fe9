package tasks

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestParseReportsEveryProblemNamingTaskAndField(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.sql")
	cases := []struct {
		name string
		yaml string
		want []string // "task field" of every expected problem
	}{
		{"http task reports bad method, missing url, impossible status and unknown placeholder together", `
tasks:
  - name: hook
    http: {method: FETCH, expect: [200, 700], body: '{"v":"${VERSION}"}'}`,
			[]string{"hook http.method", "hook http.url", "hook http.expect", "hook http.body"}},
		{"http misspelt field is reported and the other fields are still checked", `
tasks:
  - name: hook
    http: {methd: POST, url: "ftp://example.com"}`,
			[]string{"hook http.methd", "hook http.url"}},
		{"http header from an unset variable and a header that is neither string nor env", `
tasks:
  - name: hook
    http:
      url: http://hooks/x
      headers: {Authorization: {env: NO_SUCH_TOKEN}, X-List: [a, b], "Bad Name": x}`,
			[]string{"hook http.headers.Authorization.env", "hook http.headers.X-List", "hook http.headers.Bad Name"}},
		{"peerdb task queue, skip on the wrong action and request timeout are checked together", `
tasks:
  - name: end
    peerdb: {action: maintenance-end, url: "http://flow-api:8113", task_queue: temporal, skip_if_no_mirrors: true, request_timeout: 0s}
  - name: ready
    peerdb: {action: wait-ready, url: "http://flow-api:8113", task_queue: peerflow}`,
			[]string{"end peerdb.task_queue", "end peerdb.skip_if_no_mirrors", "end peerdb.request_timeout", "ready peerdb.task_queue"}},
		{"http header from both env and file, from a missing file, or from neither", `
tasks:
  - name: hook
    http:
      url: http://hooks/x
      request_timeout: soon
      headers: {A: {env: TOKEN, file: /tmp/t}, B: {file: ` + missing + `}, C: {prefix: "Bearer "}}`,
			[]string{"hook http.request_timeout", "hook http.headers.A", "hook http.headers.B.file", "hook http.headers.C.env"}},
		{"sql with dsn and dsn_env and both files and statements", `
tasks:
  - name: schema
    sql: {dsn: "postgres://u@h/db", dsn_env: CATALOG_DSN, files: [/x.sql], statements: ["SELECT 1"]}`,
			[]string{"schema sql", "schema sql", "schema sql.files[0]"}},
		{"sql without any connection settings nor statements", `
tasks:
  - name: schema
    sql: {}`,
			[]string{"schema sql", "schema sql"}},
		{"sql file that cannot be read, and an empty inline statement", `
tasks:
  - name: from-file
    sql: {dsn: "postgres://u@h/db", files: [` + missing + `]}
  - name: inline
    sql: {dsn: "postgres://u@h/db", statements: ["  "]}`,
			[]string{"from-file sql.files[0]", "inline sql.statements[0]"}},
		{"sql dsn_env naming an unset variable", `
tasks:
  - name: schema
    sql: {dsn_env: NO_SUCH_DSN, statements: ["SELECT 1"]}`,
			[]string{"schema sql.dsn_env"}},
		{"redis patterns that could touch the gate's own keys, and a bad batch", `
tasks:
  - name: cache
    redis: {unlink: ["*", "{peerdb*", "peerdb:ui:*", ""], batch: -1}`,
			[]string{"cache redis.unlink[0]", "cache redis.unlink[1]", "cache redis.unlink[3]", "cache redis.batch"}},
		{"redis without patterns", `
tasks:
  - name: cache
    redis: {batch: 10}`,
			[]string{"cache redis.unlink"}},
		{"peerdb unknown action, URL with a query and a bad poll interval", `
tasks:
  - name: pause
    peerdb: {action: pause, url: "http://flow-api:8113?x=1", poll_interval: soon}`,
			[]string{"pause peerdb.action", "pause peerdb.url", "pause peerdb.poll_interval"}},
		{"peerdb without action or url", `
tasks:
  - name: pause
    peerdb: {}`,
			[]string{"pause peerdb.action", "pause peerdb.url"}},
		{"kind given as a string instead of a mapping", `
tasks:
  - name: pause
    peerdb: maintenance-start`,
			[]string{"pause peerdb"}},
		{"problems of several tasks, duplicate names and bad common fields are all reported", `
tasks:
  - name: step
    http: {url: http://a/}
    timeout: forever
  - name: step
    redis: {unlink: ["x:*"]}
    when: {from: "<<1"}
  - name: Bad_Name
    exec: {command: [/bin/true]}`,
			[]string{"step timeout", "step when.from", "step name", "#3 name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "tasks.yaml", LoadContext{Getenv: envOf(map[string]string{"CATALOG_DSN": "postgres://u@h/db"}), GateTag: DefaultGateTag})
			got := fieldProblems(t, err)
			want := slices.Clone(c.want)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("problems (task field):\n got  %q\n want %q\nerror: %v", got, want, err)
			}
		})
	}
}

func TestParseBuildsEveryKindWithItsDefaults(t *testing.T) {
	script := filepath.Join(t.TempDir(), "001.sql")
	if err := os.WriteFile(script, []byte("CREATE TABLE t (id int);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	specs, err := Parse([]byte(`
tasks:
  - name: ready
    peerdb: {action: wait-ready, url: "http://flow-api:8113/"}
  - name: schema
    sql: {files: [`+script+`]}
  - name: hook
    http: {url: "http://hooks/x", headers: {Authorization: {env: TOKEN, prefix: "Bearer "}}}
  - name: cache
    redis: {unlink: ["peerdb:ui:*"]}
`), "tasks.yaml", LoadContext{Getenv: envOf(map[string]string{
		"TOKEN": "t0ken", "PEERDB_CATALOG_HOST": "catalog", "PEERDB_CATALOG_USER": "peerdb",
		"PEERDB_CATALOG_PASSWORD": "pw", "PEERDB_CATALOG_DATABASE": "peerdb",
	}), GateTag: DefaultGateTag})
	if err != nil {
		t.Fatal(err)
	}
	p := specs[0].Task.(*PeerDB)
	if p.URL != "http://flow-api:8113" || p.PollInterval != DefaultPollInterval {
		t.Errorf("peerdb: URL %q poll interval %v, want trailing slash trimmed and %v", p.URL, p.PollInterval, DefaultPollInterval)
	}
	if p.TaskQueue != QueuePeerflow || p.req.Timeout() != DefaultRequestTimeout || p.stallAfter != time.Minute {
		t.Errorf("peerdb: task queue %q, request timeout %v, stall warning after %v; want %s, %v and a minute",
			p.TaskQueue, p.req.Timeout(), p.stallAfter, QueuePeerflow, DefaultRequestTimeout)
	}
	s := specs[1].Task.(*SQL)
	if s.Target != "peerdb@catalog:5432/peerdb" || len(s.scripts) != 1 || s.scripts[0].source != script {
		t.Errorf("sql: target %q scripts %v, want the catalog variables and the file read at load", s.Target, s.scripts)
	}
	h := specs[2].Task.(*HTTP)
	if h.Method != "GET" || len(h.Expect) != 0 || h.req.Header().String() != "Authorization" {
		t.Errorf("http: method %q expect %v headers %q, want GET, 2xx and only the header's name shown", h.Method, h.Expect, h.req.Header())
	}
	if r := specs[3].Task.(*Redis); r.Batch != DefaultRedisBatch {
		t.Errorf("redis: batch %d, want %d", r.Batch, DefaultRedisBatch)
	}
	if specs[1].Timeout != DefaultTimeout {
		t.Errorf("timeout %v, want %v", specs[1].Timeout, DefaultTimeout)
	}
}

func TestExampleTaskFileLoads(t *testing.T) {
	specs, err := LoadFile("../examples/tasks.yaml", LoadContext{Getenv: envOf(exampleEnv), GateTag: DefaultGateTag})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range specs {
		kinds = append(kinds, s.Kind)
	}
	want := []string{"peerdb", "peerdb", "sql", "redis", "peerdb"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v (wait for flow-api, maintenance start, catalog SQL, cache bust, maintenance end)", kinds, want)
	}
	if specs[2].When.IsZero() {
		t.Error("the catalog SQL step should be gated on a version range")
	}
}

// exampleEnv is what a PeerDB deployment provides to the example task file and the documentation.
var exampleEnv = map[string]string{
	"PEERDB_CATALOG_HOST": "catalog", "PEERDB_CATALOG_PORT": "5432", "PEERDB_CATALOG_USER": "postgres",
	"PEERDB_CATALOG_PASSWORD": "secret", "PEERDB_CATALOG_DATABASE": "postgres",
	"PEERDB_CATALOG_DSN": "postgres://postgres:secret@catalog:5432/postgres", "HOOK_TOKEN": "token",
	"FLOW_API_TOKEN": "token",
}

func TestDocumentedExamplesParse(t *testing.T) {
	doc, err := os.ReadFile("../docs/tasks.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < len(Kinds()) {
		t.Fatalf("docs/tasks.md has %d yaml examples, want at least one per kind (%v)", len(blocks), Kinds())
	}
	// The examples name SQL files of the reader's image and mounted tokens: make them, under a temporary
	// directory.
	dir := t.TempDir()
	sqlFile := regexp.MustCompile(`/migrations/[\w.-]+\.sql|/var/run/secrets/[\w/.-]+`)
	documented := map[string]bool{}
	for i, b := range blocks {
		example := sqlFile.ReplaceAllFunc(b[1], func(path []byte) []byte {
			local := filepath.Join(dir, string(path))
			if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(local, []byte("SELECT 1;\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []byte(local)
		})
		specs, err := Parse(example, "docs example", LoadContext{Getenv: envOf(exampleEnv), GateTag: DefaultGateTag})
		if err != nil {
			t.Errorf("example %d:\n%s\n%v", i+1, b[1], err)
		}
		for _, s := range specs {
			documented[s.Kind] = true
		}
	}
	for _, k := range Kinds() {
		if !documented[k] {
			t.Errorf("kind %s has no example in docs/tasks.md", k)
		}
	}
}

// fieldProblems returns "task field" for every problem of a FileError, sorted; it fails on any other error.
func fieldProblems(t *testing.T, err error) []string {
	t.Helper()
	var fileErr *FileError
	if !errors.As(err, &fileErr) {
		t.Fatalf("want a *FileError, got %v", err)
	}
	var got []string
	for _, p := range fileErr.Problems {
		var fe *FieldError
		if !errors.As(p, &fe) {
			t.Fatalf("problem is not a *FieldError: %v", p)
		}
		if !strings.Contains(p.Error(), "task "+fe.Task) || !strings.Contains(p.Error(), fe.Field) {
			t.Errorf("message %q does not name task %q and field %q", p.Error(), fe.Task, fe.Field)
		}
		got = append(got, fe.Task+" "+fe.Field)
	}
	sort.Strings(got)
	return got
}
