package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// A FIFO where a file is expected blocks an open(2) until someone opens the other end; a gate stuck
// there ignores SIGTERM (the signal is handled, but the goroutine that would exit is in the open).

// exitsByItself waits for a started replica; when it hangs, it is sent SIGTERM, then killed, and the
// test fails: a wrong file must neither hang the gate nor need SIGKILL.
func exitsByItself(t *testing.T, r *replica) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(15 * time.Second):
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		t.Fatalf("hung until SIGTERM (exit %d); stderr:\n%s", r.code, r.stderr)
	case <-time.After(5 * time.Second):
		t.Fatalf("hung, and ignored SIGTERM; stderr:\n%s", r.stderr)
	}
	return -1
}

func mkfifo(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAFIFOInPlaceOfAFileIsRefusedWithoutBlocking(t *testing.T) {
	fifo := mkfifo(t, "tasks.yaml")
	sqlTasks := filepath.Join(t.TempDir(), "sql.yaml")
	if err := os.WriteFile(sqlTasks, []byte("tasks:\n  - name: schema\n    sql: {dsn: 'postgres://u@127.0.0.1/db', files: ["+fifo+"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1.0.0", "REDIS_URL": "redis://127.0.0.1:1/0", "MAINTENANCE_CONNECT_TIMEOUT": "1s"}
	cases := []struct {
		name  string
		env   []string
		args  []string
		names string
	}{
		{"validate fifo", nil, []string{"validate", fifo}, "named pipe"},
		{"MAINTENANCE_TASKS_FILE=fifo", []string{"MAINTENANCE_TASKS_FILE", fifo}, nil, "MAINTENANCE_TASKS_FILE"},
		{"an SQL file that is a FIFO", nil, []string{"validate", sqlTasks}, "sql.files[0]"},
		{"REDIS_CA_FILE=fifo", []string{"REDIS_URL", "rediss://127.0.0.1:1/0", "REDIS_CA_FILE", fifo}, nil, "REDIS_CA_FILE"},
		{"REDIS_CERT_FILE=fifo", []string{"REDIS_URL", "rediss://127.0.0.1:1/0", "REDIS_CERT_FILE", fifo, "REDIS_KEY_FILE", fifo}, nil, "REDIS_CERT_FILE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for i := 0; i+1 < len(c.env); i += 2 {
				e[c.env[i]] = c.env[i+1]
			}
			r := startReplica(t, e, c.args...)
			if code := exitsByItself(t, r); code != 2 || !strings.Contains(r.stderr.String(), c.names) || !strings.Contains(r.stderr.String(), "named pipe") {
				t.Errorf("exit %d, want 2 naming %s and saying it is a named pipe:\n%s", code, c.names, r.stderr)
			}
		})
	}
}

func TestAFIFOAsTheTerminationLogDoesNotHoldUpADoneGate(t *testing.T) {
	srv := redistest.Start(t)
	fifo := mkfifo(t, "termination-log")
	r := startReplica(t, baseEnv(srv, "MAINTENANCE_TERMINATION_LOG", fifo), "--", "true")
	if code := exitsByItself(t, r); code != 0 {
		t.Fatalf("exit %d, want 0 (the version is recorded):\n%s", code, r.stderr)
	}
	if v := getKey(t, srv, gateKeys.Version); v != "2.0.0" {
		t.Errorf("recorded %q, want 2.0.0", v)
	}
	if !strings.Contains(r.stderr.String(), "could not write the termination message") {
		t.Errorf("the refused termination log is not logged:\n%s", r.stderr)
	}
}
