package tasks_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

func digestOf(t *testing.T, yaml string) string {
	t.Helper()
	specs, err := tasks.Parse([]byte(yaml), "tasks.yaml", tasks.LoadContext{Getenv: func(string) string { return "" }, GateTag: "{p:n}"})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs[0].Digest) != tasks.DigestLen {
		t.Fatalf("digest %q is not %d hex digits", specs[0].Digest, tasks.DigestLen)
	}
	return specs[0].Digest
}

func TestTheDigestFollowsTheDefinitionNotItsLayout(t *testing.T) {
	dir := t.TempDir()
	sqlFile := filepath.Join(dir, "001.sql")
	if err := os.WriteFile(sqlFile, []byte("SELECT 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := digestOf(t, "tasks:\n  - name: m\n    exec: {command: [migrate, up], env: {A: '1', B: '2'}}\n")
	same := map[string]string{
		"keys reordered, flow style, comments": "tasks:\n  - exec:\n      env: {B: \"2\", A: \"1\"} # env\n      command:\n        - migrate\n        - up\n    name: m\n",
		"the default timeout written out":      "tasks:\n  - name: m\n    timeout: 10m\n    exec: {command: [migrate, up], env: {A: '1', B: '2'}}\n",
		"another name":                         "tasks:\n  - name: other\n    exec: {command: [migrate, up], env: {A: '1', B: '2'}}\n",
	}
	for name, yaml := range same {
		if d := digestOf(t, yaml); d != base {
			t.Errorf("%s: digest %s, want %s", name, d, base)
		}
	}
	changed := map[string]string{
		"another argument": "tasks:\n  - name: m\n    exec: {command: [migrate, down], env: {A: '1', B: '2'}}\n",
		"another env":      "tasks:\n  - name: m\n    exec: {command: [migrate, up], env: {A: '1', B: '3'}}\n",
		"a timeout":        "tasks:\n  - name: m\n    timeout: 5m\n    exec: {command: [migrate, up], env: {A: '1', B: '2'}}\n",
		"a when":           "tasks:\n  - name: m\n    when: {from: '<1.0.0'}\n    exec: {command: [migrate, up], env: {A: '1', B: '2'}}\n",
	}
	for name, yaml := range changed {
		if d := digestOf(t, yaml); d == base {
			t.Errorf("%s: digest unchanged", name)
		}
	}

	sqlTask := "tasks:\n  - name: s\n    sql: {dsn: 'postgres://u@localhost/db', files: [" + sqlFile + "]}\n"
	before := digestOf(t, sqlTask)
	if err := os.WriteFile(sqlFile, []byte("SELECT 2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if digestOf(t, sqlTask) == before {
		t.Error("an edited SQL file leaves the task's digest unchanged")
	}
}
