package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// An edited task file between two attempts of one version (a ConfigMap changed between two pod
// starts): the changed migrate must run again before the version is recorded (invariant 7).
func TestAChangedTaskRunsAgainBeforeTheVersionIsRecorded(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ran")
	checkOK := filepath.Join(dir, "check-ok")
	load := func(migrate string) []tasks.Spec {
		t.Helper()
		specs, err := tasks.Parse([]byte(`tasks:
  - name: migrate
    exec: {command: [sh, -c, 'echo `+migrate+` >> `+out+`']}
  - name: check
    exec: {command: [test, -e, `+checkOK+`]}
`), "tasks.yaml", tasks.LoadContext{Getenv: os.Getenv, GateTag: h.keys.Tag})
		if err != nil {
			t.Fatal(err)
		}
		return specs
	}
	ctx := context.Background()
	r1, _ := h.runner(load("old-migrate"))
	if _, err := r1.Run(ctx); err == nil {
		t.Fatal("attempt 1 succeeded although check fails")
	}
	if err := os.WriteFile(checkOK, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// status, with the edited file loaded, shows that migrate's mark is of another definition.
	edited := load("new-migrate")
	rs, _ := h.runner(edited)
	st, err := rs.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Progress == nil || len(st.Progress.Changed) != 1 || st.Progress.Changed[0].Task != "migrate" ||
		st.Progress.Changed[0].LoadedDigest != edited[0].Digest || st.Progress.Changed[0].DoneDigest == edited[0].Digest {
		t.Errorf("status progress = %+v, want migrate shown as changed", st.Progress)
	}

	r2, logs := h.runner(edited)
	if _, err := r2.Run(ctx); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	if got := strings.Fields(string(data)); strings.Join(got, ",") != "old-migrate,new-migrate" {
		t.Errorf("migrate runs = %v, want the old then the new definition", got)
	}
	if h.get(h.keys.Version) != "1.1.0" {
		t.Error("version not recorded")
	}
	if !strings.Contains(logs.String(), "it changed, and runs again") {
		t.Errorf("the changed task is not logged:\n%s", logs)
	}
}

// A mark written by an earlier release carries no digest: it does not count as done.
func TestAMarkWithoutADigestIsNotDone(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.rdb.HSet(ctx, h.keys.Progress, "version", "1.1.0", "done:migrate", `{"finished":"2026-01-01T00:00:00Z","fencing_token":3}`)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)})
	if _, err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.get("migrate") != 1 {
		t.Error("a mark without a digest was taken as done")
	}
}
