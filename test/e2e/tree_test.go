package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

// parentName is the command name of pid's parent ("" when either is gone).
func parentName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 2 {
		return ""
	}
	comm, err := os.ReadFile("/proc/" + f[1] + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(comm))
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	redistest.Eventually(t, 20*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, "%s was never written", path)
	return pid
}

// A SIGKILLed holder's task dies with its whole tree, also outside a container where no init would kill
// the rest: a grandchild (sh -c 'sh -c loop'), and a great-grandchild that left the process group.
func TestSIGKILLedHolderTakesItsTasksWholeTreeAlong(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	inner := `echo $$ > "$DIR/grandchild"; while :; do sleep 0.05; done`
	// Forked from a subshell that exits at once (a double fork): an orphan before the holder is killed,
	// adopted by the supervisor as a subreaper, or else by init, out of the supervisor's reach.
	escaped := `( setsid sh -c 'echo $$ > "$DIR/escaped"; while :; do sleep 0.05; done' & ) ;`
	script := escaped + ` sh -c '` + strings.ReplaceAll(inner, `'`, `'\''`) + `'`
	a := startReplica(t, baseEnv(srv, "DIR", dir, "MAINTENANCE_HOLDER", "holder-a"), "--", "sh", "-c", script)
	grandchild := readPid(t, filepath.Join(dir, "grandchild"))
	escapedPid := readPid(t, filepath.Join(dir, "escaped"))
	t.Cleanup(func() { _ = syscall.Kill(grandchild, syscall.SIGKILL); _ = syscall.Kill(escapedPid, syscall.SIGKILL) })
	redistest.Eventually(t, 10*time.Second, func() bool { return parentName(escapedPid) != "sh" },
		"the process that left the group (pid %d) was never orphaned", escapedPid)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t)
	for name, pid := range map[string]int{"grandchild": grandchild, "process that left the group": escapedPid} {
		redistest.Eventually(t, 10*time.Second, func() bool { return !alive(pid) },
			"the killed holder's %s (pid %d) still runs", name, pid)
	}
}
