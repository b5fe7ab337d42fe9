package tasks

import (
	"errors"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

// Fuzz targets; their seed corpora are in testdata/fuzz/<name>/. scripts/fuzz.sh runs each for a
// bounded time; plain `go test` runs the seeds only.

// FuzzParseTaskFile: whatever the bytes, Parse never panics; it either returns a valid task list or a
// *FileError whose task problems each name a task.
func FuzzParseTaskFile(f *testing.F) {
	f.Add([]byte("tasks:\n  - name: migrate\n    exec: {command: [/app/migrate, up]}\n    when: {from: '<0.30.0'}\n"))
	getenv := func(name string) string {
		if name == "SET" {
			return "value"
		}
		return ""
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := Parse(data, "fuzz.yaml", LoadContext{Getenv: getenv, GateTag: DefaultGateTag})
		if err != nil {
			fileErr, ok := err.(*FileError)
			if !ok {
				t.Fatalf("error %T is not a *FileError: %v", err, err)
			}
			if specs != nil || fileErr.Source != "fuzz.yaml" || len(fileErr.Problems) == 0 {
				t.Fatalf("specs %v, source %q, %d problems", specs, fileErr.Source, len(fileErr.Problems))
			}
			for _, p := range fileErr.Problems {
				var fe *FieldError
				if p == nil || (errors.As(p, &fe) && fe.Task == "") {
					t.Fatalf("a problem without a task: %#v", p)
				}
			}
			_ = err.Error()
			return
		}
		seen := map[string]bool{}
		for _, s := range specs {
			if !nameRe().MatchString(s.Name) || seen[s.Name] {
				t.Fatalf("accepted a bad or duplicate name %q", s.Name)
			}
			seen[s.Name] = true
			if _, ok := kinds[s.Kind]; !ok || s.Task == nil || s.Timeout <= 0 {
				t.Fatalf("accepted task %q with kind %q, task %v, timeout %s", s.Name, s.Kind, s.Task, s.Timeout)
			}
		}
	})
}

// FuzzConstraint: a when constraint never panics, whatever the constraint and the versions; a task
// it skips always says why, and an error means a constrained version is not semver.
func FuzzConstraint(f *testing.F) {
	f.Add("<0.30.0", "0.29.1", "0.30.0")
	f.Fuzz(func(t *testing.T, c, from, to string) {
		cons, err := constraint(c)
		if err != nil {
			return
		}
		for _, w := range []When{{From: c, from: cons}, {To: c, to: cons}, {From: c, To: c, from: cons, to: cons}} {
			ok, why, err := w.Match(from, to)
			switch {
			case err != nil:
				_, fromOK := version.Parse(from)
				_, toOK := version.Parse(to)
				if fromOK && toOK {
					t.Fatalf("Match(%q, %q) with %q: %v, though both are semantic versions", from, to, c, err)
				}
			case !ok && why == "":
				t.Fatalf("Match(%q, %q) with %q skips without saying why", from, to, c)
			case ok && w.to != nil:
				if v, _ := version.Parse(to); !cons.Check(v) {
					t.Fatalf("Match(%q, %q) ran a task whose to %q does not admit %s", from, to, c, to)
				}
			}
		}
	})
}
