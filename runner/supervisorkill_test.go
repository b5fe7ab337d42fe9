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
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"

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

// A child started under env -i (as sudo's env_reset or su - would) carries no mark of the task's tree
// and, once its parent exits, descends from nothing marked: when the supervisor is SIGKILLed it is
// adopted by the gate, and it must still be gone before the lock is released.
func TestAnUnmarkedOrphanOfAKilledSupervisorDiesBeforeTheRelease(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "task.sh")
	body := `env -i /bin/sh -c '/bin/sh -c "echo \$\$ > ` + dir + `/orphan.tmp; mv ` + dir + `/orphan.tmp ` + dir + `/orphan; while :; do sleep 0.05; done" &'
cd ` + dir + `; echo $PPID > ppid.tmp; mv ppid.tmp ppid; while :; do sleep 0.05; done
`
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := "tasks:\n  - name: loop\n    exec:\n      command: [sh, " + script + "]\n"
	specs, err := tasks.Parse([]byte(yaml), "test.yaml", tasks.LoadContext{})
	if err != nil {
		t.Fatal(err)
	}
	r, logs := h.runner(specs)
	done := start(context.Background(), r)
	waitStarted(t, dir, "ppid")
	waitStarted(t, dir, "orphan")
	b, _ := os.ReadFile(filepath.Join(dir, "ppid"))
	supervisor, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	var child int
	redistest.Eventually(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "orphan"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return child > 0
	}, "the orphan never wrote its pid")
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if env, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/environ"); err != nil || strings.Contains(string(env), "PEERDB_MAINTENANCE_TREE") {
		t.Fatalf("the orphan carries the tree's mark, or is gone already (%v): the test proves nothing", err)
	}
	if err := syscall.Kill(supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Whether the orphan still ran at the moment the lock was released.
	aliveAtRelease := make(chan bool, 1)
	go func() {
		for h.exists(h.keys.Lock) {
			time.Sleep(5 * time.Millisecond)
		}
		aliveAtRelease <- running(child)
	}()
	out := wait(t, done)
	if <-aliveAtRelease {
		t.Errorf("the lock was released while the task's unmarked orphan %d still ran\n%s", child, logs)
	}
	if !errors.Is(out.err, tasks.ErrSupervisorKilled) {
		t.Errorf("run = %v, want the supervisor killed", out.err)
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}
