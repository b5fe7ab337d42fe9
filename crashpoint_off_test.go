//go:build !crashpoints

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// The shipped build (no crashpoints tag) has no crash points: a MAINTENANCE_TEST_PAUSE_AT set by mistake
// changes nothing, the holder runs its task and records instead of pausing forever with the lock.
func TestShippedBuildIgnoresTheCrashPointVariables(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	pause := filepath.Join(dir, "paused")
	env := map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1.0.0", "REDIS_URL": srv.URL(), "MAINTENANCE_CONNECT_TIMEOUT": "5s",
		"MAINTENANCE_TEST_PAUSE_AT": "before-tasks", "MAINTENANCE_TEST_PAUSE_FILE": pause}
	if code, _, stderr := runIn(t, env, "--", "true"); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, stderr)
	}
	if _, err := os.Stat(pause); err == nil {
		t.Fatal("the shipped build paused at a crash point")
	}
}
