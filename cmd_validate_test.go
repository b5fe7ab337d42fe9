package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/mdtest"
)

func TestValidateReportsTheTasksOrEveryProblem(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("tasks:\n  - name: migrate\n    exec: {command: [/app/migrate, up]}\n"), 0o644)
	os.WriteFile(bad, []byte("tasks:\n  - name: Bad_Name\n    exec: {command: []}\n  - name: other\n    teleport: {}\n"), 0o644)
	code, out, _ := runIn(t, nil, "validate", good)
	if code != 0 || !strings.Contains(out, "1 tasks ok") || !strings.Contains(out, "migrate (exec") {
		t.Errorf("validate good: exit %d, %q", code, out)
	}
	code, _, stderr := runIn(t, map[string]string{"MAINTENANCE_TASKS_FILE": bad}, "validate")
	if code != 2 {
		t.Fatalf("validate bad: exit %d, want 2", code)
	}
	for _, want := range []string{"Bad_Name", "exec.command", "task other", "teleport"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate bad: output does not mention %q:\n%s", want, stderr)
		}
	}
	if code, _, _ := runIn(t, nil, "validate"); code != 2 {
		t.Errorf("validate without a file: exit %d, want 2", code)
	}
}

func TestTheDocumentedTaskExamplesAreValid(t *testing.T) {
	for _, c := range []struct{ doc, first string }{
		{"README.md", "tasks:\n  - name: catalog-schema"},
		{"docs/tasks.md", "tasks:\n  - name: wait-flow-api"},
	} {
		doc, err := os.ReadFile(c.doc)
		if err != nil {
			t.Fatal(err)
		}
		var example string
		for _, b := range mdtest.Blocks(doc) {
			if b.Info == "yaml" && strings.HasPrefix(b.Text, c.first) {
				example = b.Text
				break
			}
		}
		if example == "" {
			t.Fatalf("%s has no yaml block starting with %q", c.doc, c.first)
		}
		path := filepath.Join(t.TempDir(), "tasks.yaml")
		if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := runIn(t, map[string]string{"HOOK_TOKEN": "x", "PEERDB_CATALOG_DSN": "postgres://u@h/db"}, "validate", path)
		if code != 0 {
			t.Fatalf("the task example of %s does not validate:\n%s", c.doc, stderr)
		}
		if c.doc == "README.md" {
			continue
		}
		for _, kind := range []string{"(peerdb", "(sql", "(exec", "(http", "(redis"} {
			if !strings.Contains(out, kind) {
				t.Errorf("the every-kind example of %s has no %s task:\n%s", c.doc, kind[1:], out)
			}
		}
	}
}
