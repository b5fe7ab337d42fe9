package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrSupervisorKilled: the supervisor of an exec task died of a signal the gate did not send (the OOM
// killer, a kill -9). The task did not fail on its own: its tree was killed by the gate afterwards.
var ErrSupervisorKilled = errors.New("tasks: supervisor killed")

// ErrTreeNotGone: after its supervisor exited, processes of an exec task's tree could not be confirmed
// gone. The lock must not be released (it expires by itself): the next holder would run beside them.
var ErrTreeNotGone = errors.New("tasks: the task's process tree could not be confirmed gone")

// treeVar is the environment variable that marks every process of one exec task's tree (the supervisor,
// the command and what it starts, also processes that left its group), so that the gate can find them
// among its own descendants when the supervisor did not kill them itself.
const treeVar = "PEERDB_MAINTENANCE_TREE"

var (
	treeSeq       atomic.Int64
	gateSubreaper sync.Once
)

// newTreeMark makes the gate a child subreaper (once: orphans of a task's tree are then adopted by
// the gate, not by init, when the supervisor dies) and returns a fresh marker for one task's tree.
func newTreeMark() string {
	gateSubreaper.Do(setSubreaper)
	return fmt.Sprintf("%s=%d-%d", treeVar, os.Getpid(), treeSeq.Add(1))
}

// sweepTree SIGKILLs every descendant of the gate that carries mark in its environment, or descends from
// one that does, and reaps those the gate adopted, until none is left or within runs out (ErrTreeNotGone).
// It runs after the supervisor has exited: when the supervisor did its job, it finds nothing.
func sweepTree(mark string, within time.Duration) error {
	self := os.Getpid()
	deadline := time.Now().Add(within)
	seen := map[int]bool{}
	want := []byte(mark + "\x00")
	for {
		table := procTable()
		var live, dead []int
		marked := map[int]bool{}
		queue := []int{self}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, c := range table.children[p] {
				queue = append(queue, c)
				if table.zombie[c] {
					if p == self && seen[c] {
						dead = append(dead, c)
					}
					continue
				}
				if marked[p] || hasMark(c, want) {
					marked[c] = true
					live = append(live, c)
				}
			}
		}
		for _, pid := range live {
			seen[pid] = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range dead {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		if len(live) == 0 && len(dead) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: processes %v still there %s after the supervisor exited", ErrTreeNotGone, append(live, dead...), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasMark reports whether the process's environment holds the entry want ("NAME=value\x00").
func hasMark(pid int, want []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.HasPrefix(b, want) || bytes.Contains(b, append([]byte{0}, want...))
}

// procs is a snapshot of /proc: each process's children, and which are zombies.
type procs struct {
	children map[int][]int
	zombie   map[int]bool
}

// procTable reads /proc (empty where there is none).
func procTable() procs {
	t := procs{children: map[int][]int{}, zombie: map[int]bool{}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, zombie := parentOf(pid); ppid > 0 {
			t.children[ppid] = append(t.children[ppid], pid)
			t.zombie[pid] = zombie
		}
	}
	return t
}
