package tasks_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// A malformed task file is refused before any lock is taken, and every problem of a task names the
// task and the field, so that `validate` points at the line to fix.

func parse(doc string) ([]tasks.Spec, error) {
	return tasks.Parse([]byte(doc), "tasks.yaml", tasks.LoadContext{Getenv: func(string) string { return "" }, GateTag: tasks.DefaultGateTag})
}

// problemOf returns the problem of err naming task and field, failing the test when there is none.
func problemOf(t *testing.T, err error, task, field string) *tasks.FieldError {
	t.Helper()
	var fileErr *tasks.FileError
	if !errors.As(err, &fileErr) {
		t.Fatalf("error %v is not a *tasks.FileError", err)
	}
	var named []string
	for _, p := range fileErr.Problems {
		var fe *tasks.FieldError
		if !errors.As(p, &fe) {
			continue
		}
		if !strings.Contains(fe.Error(), "task "+fe.Task) || (fe.Field != "" && !strings.Contains(fe.Error(), fe.Field+":")) {
			t.Errorf("message %q does not name task %q and field %q", fe.Error(), fe.Task, fe.Field)
		}
		if fe.Task == task && fe.Field == field {
			return fe
		}
		named = append(named, fe.Task+" "+fe.Field)
	}
	t.Fatalf("no problem names task %q field %q; problems name %q: %v", task, field, named, err)
	return nil
}

func TestMalformedTasksAreRefusedNamingTaskAndField(t *testing.T) {
	const exec = "\n    exec: {command: [/bin/true]}"
	cases := []struct {
		name, doc   string
		task, field string
		says        string
	}{
		{"a task that is not a mapping", "tasks: [migrate]", "#1", "", "expected a mapping"},
		{"a task without a name", "tasks:\n  - exec: {command: [/bin/true]}", "#1", "name", "required"},
		{"an empty name", "tasks:\n  - name: ''" + exec, "#1", "name", "required"},
		{"a name with capitals and an underscore", "tasks:\n  - name: Bad_Name" + exec, "#1", "name", "Bad_Name"},
		{"a name with a space", "tasks:\n  - name: 'catalog schema'" + exec, "#1", "name", "a-z"},
		{"a name ending with a dash", "tasks:\n  - name: migrate-" + exec, "#1", "name", "starting and ending"},
		{"a name longer than 64 characters", "tasks:\n  - name: " + strings.Repeat("a", 65) + exec, "#1", "name", "1 to 64"},
		{"a name that is a list", "tasks:\n  - name: [migrate]" + exec, "#1", "name", "must be a string"},
		{"two tasks with the same name", "tasks:\n  - name: step" + exec + "\n  - name: step" + exec, "step", "name", "duplicate name (task #1"},
		{"a field given twice", "tasks:\n  - name: a" + exec + exec, "a", "exec", "defined twice"},
		{"a field name that is not a string", "tasks:\n  - name: a" + exec + "\n    ? [k]\n    : v", "a", "", "field name must be a string"},
		{"an unknown kind", "tasks:\n  - name: beam\n    teleport: {to: mars}", "beam", "teleport", "unknown kind or field"},
		{"a misspelt common field", "tasks:\n  - name: a" + exec + "\n    timeuot: 5m", "a", "timeuot", "unknown kind or field"},
		{"two kinds", "tasks:\n  - name: a" + exec + "\n    http: {url: 'http://hooks/x'}", "a", "http", "a second kind"},
		{"no kind", "tasks:\n  - name: lonely\n    timeout: 5m", "lonely", "", "no kind"},
		{"a kind that is not a mapping", "tasks:\n  - name: a\n    exec: /bin/true", "a", "exec", "expected a mapping"},
		{"a misspelt field inside a kind", "tasks:\n  - name: a\n    exec: {comand: [/bin/true]}", "a", "exec.comand", `unknown field "comand" (expected one of command, dir, env, grace_period)`},
		{"a misspelt field of a nested mapping", "tasks:\n  - name: a\n    http: {url: 'http://h/', headers: {Authorization: {env: T, prefx: x}}}", "a", "http.headers.Authorization.prefx", `unknown field "prefx"`},
		{"a command that is a string, not a list", "tasks:\n  - name: a\n    exec: {command: /bin/true}", "a", "exec.command", `string "/bin/true" where a list of strings was expected`},
		{"an environment value that is a list", "tasks:\n  - name: a\n    exec: {command: [/bin/true], env: {MODE: [a, b]}}", "a", "exec.env.MODE", "a list where a string was expected"},
		{"exec without a command", "tasks:\n  - name: a\n    exec: {env: {A: b}}", "a", "exec.command", "required"},
		{"exec with an empty command", "tasks:\n  - name: a\n    exec: {command: []}", "a", "exec.command", "required"},
		{"a timeout that is not a duration", "tasks:\n  - name: a" + exec + "\n    timeout: forever", "a", "timeout", "forever"},
		{"a timeout without a unit", "tasks:\n  - name: a" + exec + "\n    timeout: 600", "a", "timeout", "600"},
		{"a negative timeout", "tasks:\n  - name: a" + exec + "\n    timeout: -5m", "a", "timeout", "positive"},
		{"a zero timeout", "tasks:\n  - name: a" + exec + "\n    timeout: 0s", "a", "timeout", "positive"},
		{"a timeout that overflows", "tasks:\n  - name: a" + exec + "\n    timeout: 9999999h", "a", "timeout", "too large: at most 2562047h0m0s"},
		{"a grace period that overflows", "tasks:\n  - name: a\n    exec: {command: [/bin/true], grace_period: 9999999h}", "a", "exec.grace_period", "too large"},
		{"a request timeout that overflows", "tasks:\n  - name: a\n    http: {url: 'http://h/', request_timeout: 9999999h}", "a", "http.request_timeout", "too large"},
		{"a timeout that is a list", "tasks:\n  - name: a" + exec + "\n    timeout: [5m]", "a", "timeout", "must be a duration"},
		{"a when.from that is not a constraint", "tasks:\n  - name: a" + exec + "\n    when: {from: '<<0.30'}", "a", "when.from", "not a semver constraint"},
		{"a when.to that is not a constraint", "tasks:\n  - name: a" + exec + "\n    when: {to: 'newer please'}", "a", "when.to", "not a semver constraint"},
		{"an unknown when field", "tasks:\n  - name: a" + exec + "\n    when: {since: 1.0.0}", "a", "when.since", "expected one of from, install, to"},
		{"a when that is not a mapping", "tasks:\n  - name: a" + exec + "\n    when: always", "a", "when", "expected a mapping"},
		{"a when.install that is not a boolean", "tasks:\n  - name: a" + exec + "\n    when: {install: maybe}", "a", "when.install", "true or false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			specs, err := parse(c.doc)
			if err == nil {
				t.Fatalf("accepted: %+v", specs)
			}
			if fe := problemOf(t, err, c.task, c.field); !strings.Contains(fe.Error(), c.says) {
				t.Errorf("problem %q does not say %q", fe, c.says)
			}
			everyProblemIsPlaced(t, err)
		})
	}
}

var placeRe = regexp.MustCompile(`^task [^:]+: (?:[^:]+: )?line [1-9][0-9]* column [1-9][0-9]*: `)

// everyProblemIsPlaced fails the test unless every problem of err says the line and column it is about.
func everyProblemIsPlaced(t *testing.T, err error) {
	t.Helper()
	var fileErr *tasks.FileError
	if !errors.As(err, &fileErr) {
		t.Fatalf("error %v is not a *tasks.FileError", err)
	}
	for _, p := range fileErr.Problems {
		var fe *tasks.FieldError
		if !errors.As(p, &fe) || fe.Line < 1 || fe.Column < 1 || !placeRe.MatchString(p.Error()) {
			t.Errorf("problem %q does not say its line and column", p)
		}
	}
}

func TestProblemsArePlacedAtTheirLineAndColumn(t *testing.T) {
	const task = "tasks:\n  - name: a\n"
	cases := []struct {
		name, doc    string
		task, field  string
		line, column int
	}{
		{"a misspelt field, at its value", task + "    exec: {comand: [/bin/true]}", "a", "exec.comand", 3, 20},
		{"a required field that is missing, at the kind", task + "    exec:\n      env: {A: b}", "a", "exec.command", 4, 7},
		{"a value of the wrong type inside a map", task + "    exec:\n      command: [/bin/true]\n      env: {MODE: [a, b]}", "a", "exec.env.MODE", 5, 19},
		{"a list item the kind refuses", task + "    redis: {unlink: ['app:*', '']}", "a", "redis.unlink[1]", 3, 31},
		{"a field of a header whose name holds a dot", task + "    http:\n      url: http://hooks/x\n      headers:\n        X.Token: {env: UNSET_VARIABLE}", "a", "http.headers.X.Token.env", 6, 24},
		{"a misspelt field of a header's source, at its value", task + "    http:\n      url: http://hooks/x\n      headers:\n        Authorization: {env: TOKEN, prefx: 'Bearer '}", "a", "http.headers.Authorization.prefx", 6, 44},
		{"a name that breaks the pattern", "tasks:\n  - name: Bad_Name\n    exec: {command: [/bin/true]}", "#1", "name", 2, 11},
		{"a field given twice, at the second", task + "    exec: {command: [/bin/true]}\n    exec: {command: [/bin/true]}", "a", "exec", 4, 5},
		{"an aliased value, where the alias is written", "tasks:\n  - name: a\n    exec: {command: [/bin/true], env: &e {A: b}}\n  - name: b\n    exec: {command: *e}", "b", "exec.command", 5, 21},
		{"a merged field, where the anchor writes it", "tasks:\n  - name: a\n    exec: &e {command: [/bin/true], grace_period: soon}\n  - name: b\n    exec: {<<: *e, dir: /tmp}", "b", "exec.grace_period", 3, 51},
		{"a constraint of when", task + "    exec: {command: [/bin/true]}\n    when:\n      from: 'newer please'", "a", "when.from", 5, 13},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(c.doc)
			var fileErr *tasks.FileError
			if !errors.As(err, &fileErr) {
				t.Fatalf("got %v, want a *tasks.FileError", err)
			}
			everyProblemIsPlaced(t, err)
			for _, p := range fileErr.Problems {
				var fe *tasks.FieldError
				if errors.As(p, &fe) && fe.Task == c.task && fe.Field == c.field {
					if fe.Line != c.line || fe.Column != c.column {
						t.Errorf("%q placed at line %d column %d, want line %d column %d", p, fe.Line, fe.Column, c.line, c.column)
					}
					return
				}
			}
			t.Errorf("no problem names task %s field %s: %v", c.task, c.field, err)
		})
	}
}

func TestMalformedFilesAreRefusedSayingWhy(t *testing.T) {
	const task = "\n  - name: a\n    exec: {command: [/bin/true]}"
	cases := []struct{ name, doc, says string }{
		{"an empty file", "", "empty file"},
		{"a file of comments only", "# tasks come later\n", "empty file"},
		{"not YAML", "tasks: [\n  - name: a", "not valid YAML"},
		{"tabs for indentation", "tasks:\n\t- name: a", "not valid YAML"},
		{"a list instead of a mapping", "- name: a\n  exec: {command: [/bin/true]}", "expected a mapping with a tasks list"},
		{"a plain string", "migrate", "expected a mapping with a tasks list"},
		{"no tasks field", "steps:" + task, "no tasks list"},
		{"an unknown top-level field beside tasks", "version: 2\ntasks:" + task, `unknown top-level field "version"`},
		{"tasks that is a mapping", "tasks:\n  a: {exec: {command: [/bin/true]}}", "tasks must be a list"},
		{"tasks that is empty", "tasks:", "tasks must be a list"},
		{"tasks given twice", "tasks:" + task + "\ntasks: []", "tasks defined twice"},
		{"two YAML documents", "tasks:" + task + "\n---\ntasks:" + task, "more than one YAML document"},
		{"an alias to an unknown anchor", "tasks:\n  - name: a\n    exec: *nothing", "not valid YAML"},
		{"an anchor that contains itself", "tasks: &t\n  - name: a\n    exec: {command: *t}", `line 3 column 21: anchor "t" contains itself`},
		{"a mapping that merges itself", "tasks:\n  - &t {name: a, exec: {command: [/bin/true]}, <<: *t}", `anchor "t" contains itself`},
		{"lists of aliases that expand a billion times", billionLaughs(false), "aliases expand to more than 100000 values"},
		{"merge keys that merge a billion times", billionLaughs(true), "aliases expand to more than 100000 values"},
		{"one large anchor named by thousands of tasks", sharedAnchor(), "aliases expand to more than 100000 values"},
		{"a mapping of more entries than a task list holds", "tasks:\n  - name: a\n    exec:\n      command: [/bin/true]\n      env:\n" + manyEntries(50_000), "line 6 column 9: a mapping of more than"},
		{"a merge key that merges a string", "tasks:\n  - <<: just-a-string\n    name: a", "merge key"},
		{"a file larger than 1 MiB", "tasks:" + strings.Repeat(task, tasks.MaxFileSize/40), "larger than 1024 KiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			specs, err := parse(c.doc)
			var fileErr *tasks.FileError
			if !errors.As(err, &fileErr) {
				t.Fatalf("got %+v, %v; want a *tasks.FileError", specs, err)
			}
			if fileErr.Source != "tasks.yaml" || !strings.Contains(err.Error(), "task file tasks.yaml: ") || !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not name the file and say %q", err, c.says)
			}
			for _, p := range fileErr.Problems {
				if !unplaced[c.name] && !linePattern.MatchString(p.Error()) {
					t.Errorf("problem %q does not say its line and column", p)
				}
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("refusing it took %s", took)
			}
		})
	}
}

// manyEntries is a mapping of n distinct entries, indented as an exec task's env.
func manyEntries(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "        V%d: x\n", i)
	}
	return b.String()
}

// unplaced are the files whose problem has no line and column: the file as a whole, or a syntax
// error, whose position the YAML library gives as a line only.
var unplaced = map[string]bool{
	"an empty file": true, "a file of comments only": true, "not YAML": true, "tabs for indentation": true,
	"an alias to an unknown anchor": true, "a file larger than 1 MiB": true,
}

var linePattern = regexp.MustCompile(`\bline [1-9][0-9]* column [1-9][0-9]*: `)

// sharedAnchor is a task whose env of 256 variables is anchored and named by as many tasks as 1 MiB
// holds: each decoding is small, the whole is millions of values.
func sharedAnchor() string {
	var b strings.Builder
	b.WriteString("tasks:\n  - name: a\n    exec:\n      command: [/bin/true]\n      env: &env {")
	for i := range 256 {
		fmt.Fprintf(&b, "V%d: x, ", i)
	}
	b.WriteString("}\n")
	for i := 0; b.Len() < tasks.MaxFileSize-100; i++ {
		fmt.Fprintf(&b, "  - {name: t%d, exec: {command: [/bin/true], env: *env}}\n", i)
	}
	return b.String()
}

// billionLaughs is a few hundred bytes of nested anchors a0 to a8 in one task, each ten aliases of the
// one before, that would expand to 10^9 values: lists in a command, or mappings merged into an env.
func billionLaughs(merged bool) string {
	var b strings.Builder
	b.WriteString("tasks:\n  - name: a\n    exec:\n")
	if merged {
		b.WriteString("      command: [/bin/echo]\n      env:\n        <<:\n")
		b.WriteString("        - &a0 {k0: lol, k1: lol, k2: lol, k3: lol, k4: lol, k5: lol, k6: lol, k7: lol, k8: lol, k9: lol}\n")
	} else {
		b.WriteString("      command:\n        - /bin/echo\n")
		b.WriteString("        - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	}
	for i := 1; i < 9; i++ {
		aliases := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		if merged {
			fmt.Fprintf(&b, "        - &a%d {<<: [%s]}\n", i, aliases)
		} else {
			fmt.Fprintf(&b, "        - &a%d [%s]\n", i, aliases)
		}
	}
	return b.String()
}

func TestWellFormedVariantsAreAccepted(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // task names
	}{
		{"JSON", `{"tasks": [{"name": "migrate", "exec": {"command": ["/app/migrate", "up"]}, "timeout": "5m"}]}`, []string{"migrate"}},
		{"an empty list: nothing to run, the version is just recorded", "tasks: []", nil},
		{"a trailing document marker", "tasks:\n  - name: a\n    exec: {command: [/bin/true]}\n---\n", []string{"a"}},
		{"an anchor shared by two tasks", "tasks:\n  - name: a\n    exec: {command: [/bin/true], env: &env {MODE: full}}\n  - name: b\n    exec: {command: [/bin/false], env: *env}", []string{"a", "b"}},
		{"a timeout and a when shared through aliases", "tasks:\n  - name: a\n    exec: {command: [/bin/true]}\n    timeout: &t 5m\n    when: &w {from: '<1.0.0'}\n  - name: b\n    exec: {command: [/bin/true]}\n    timeout: *t\n    when: *w", []string{"a", "b"}},
		{"a merge key at the task level", "tasks:\n  - &base {name: a, exec: {command: [/bin/true]}, timeout: 1m}\n  - <<: *base\n    name: b", []string{"a", "b"}},
		{"a merge key inside a kind", "tasks:\n  - name: a\n    exec: &e {command: [/bin/true], env: {A: x}}\n  - name: b\n    exec:\n      <<: *e\n      dir: /tmp", []string{"a", "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			specs, err := parse(c.doc)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range specs {
				names = append(names, s.Name)
			}
			if strings.Join(names, ",") != strings.Join(c.want, ",") {
				t.Errorf("tasks %q, want %q", names, c.want)
			}
		})
	}
	t.Run("aliased values are the anchor's values, not its name", func(t *testing.T) {
		specs, err := parse("tasks:\n  - name: a\n    exec: {command: [/bin/true]}\n    timeout: &t 5m\n  - name: b\n    exec: {command: [/bin/true]}\n    timeout: *t\n  - <<: {name: c, exec: {command: [/bin/true]}}\n    timeout: 7m")
		if err != nil {
			t.Fatal(err)
		}
		if specs[1].Timeout != 5*time.Minute || specs[2].Timeout != 7*time.Minute {
			t.Errorf("timeouts %s and %s, want 5m (alias) and 7m (explicit over merged)", specs[1].Timeout, specs[2].Timeout)
		}
	})
}

func TestLoadFileRefusesWhatIsNotATaskFile(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, tasks.MaxFileSize+1); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	cases := []struct{ name, path, says string }{
		{"a missing file", filepath.Join(dir, "missing.yaml"), "no such file"},
		{"a directory", dir, "not a regular file but a directory"},
		{"an endless device", "/dev/zero", "not a regular file but a character device"},
		{"a file over the size bound, read only up to it", huge, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tasks.LoadFile(c.path, tasks.LoadContext{})
			var fileErr *tasks.FileError
			if !errors.As(err, &fileErr) || fileErr.Source != c.path || !strings.Contains(err.Error(), c.says) {
				t.Errorf("LoadFile(%s) = %v, want a *tasks.FileError naming it and saying %q", c.path, err, c.says)
			}
		})
	}
}
