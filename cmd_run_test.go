package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

func TestTaskFileAndCommandTogetherIsAUsageError(t *testing.T) {
	code, _, stderr := runIn(t, map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1", "MAINTENANCE_TASKS_FILE": "/x.yaml"}, "--", "true")
	if code != 2 || !strings.Contains(stderr, "choose one") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

func TestRunDryRunFlagPrintsThePlanAndRecordsNothing(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URL(), "PEERDB_DEPLOYMENT_VERSION": "1.0.0", "LOG_FORMAT": "text", "MAINTENANCE_TERMINATION_LOG": ""}
	code, out, stderr := runIn(t, env, "run", "--dry-run", "--", "touch", filepath.Join(t.TempDir(), "ran"))
	if code != 0 || !strings.Contains(out, "plan for (none: fresh install) -> 1.0.0") || !strings.Contains(out, "RUN") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if getKey(t, srv, gateKeys.Version) != "" || getKey(t, srv, gateKeys.Lock) != "" {
		t.Error("dry run recorded or took the lock")
	}
}
