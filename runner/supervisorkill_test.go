package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

func TestAKilledSupervisorIsNotTheTasksFailureAndItsTreeDiesBeforeTheRelease(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	yaml := "tasks:\n  - name: loop\n    exec:\n      command: [sh, -c, 'cd " + dir + "; echo $$ > pid; echo $PPID > ppid.tmp; mv ppid.tmp ppid; while :; do sleep 0.05; done']\n"
	specs, err := tasks.Parse([]byte(yaml), "test.yaml", tasks.LoadContext{})
	if err != nil {
		t.Fatal(err)
	}
	r, logs := h.runner(specs)
	done := start(context.Background(), r)
	ppid := filepath.Join(dir, "ppid")
	waitStarted(t, dir, "ppid")
	b, _ := os.ReadFile(ppid)
	supervisor, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	b, _ = os.ReadFile(filepath.Join(dir, "pid"))
	command, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	out := wait(t, done)
	if err := syscall.Kill(command, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the run ended while the task's command %d still runs (kill 0: %v)", command, err)
	}
	if !errors.Is(out.err, tasks.ErrSupervisorKilled) || !errors.Is(out.err, ErrTaskFailed) {
		t.Fatalf("run = %v, want the supervisor killed (exit 1)\n%s", out.err, logs)
	}
	if len(h.history()) != 0 || h.exists(h.keys.Version) || h.exists(h.keys.Lock) {
		t.Errorf("a killed supervisor was recorded as the task's failure, or left the lock: history %+v", h.history())
	}
}
