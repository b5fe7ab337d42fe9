package proctree

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// treeVar is the environment variable that marks every process of one tree (the supervisor, the
// command and what it starts, also processes that left its group), so that the gate can find them
// among its descendants when the supervisor did not kill them itself.
const treeVar = "PEERDB_MAINTENANCE_TREE"

var (
	treeSeq       atomic.Int64
	gateSubreaper sync.Once
)

// newTreeMark makes the gate a child subreaper (once: orphans of a tree are then adopted by the gate,
// not by init, when the supervisor dies) and returns a fresh marker for one tree.
func newTreeMark() string {
	gateSubreaper.Do(setSubreaper)
	return fmt.Sprintf("%s=%d-%d", treeVar, os.Getpid(), treeSeq.Add(1))
}

// ownChildren lists the gate's children (with their start times) before a tree starts: processes the
// gate started itself, which the sweep spares. The gate itself starts none (go-redis and pgx start no
// process); a test process that runs the gate's code in-process has its redis-servers there.
func ownChildren() map[int]uint64 {
	t := procTable()
	own := map[int]uint64{}
	for _, c := range t.children[os.Getpid()] {
		own[c] = t.started[c]
	}
	return own
}

// sweep SIGKILLs every descendant of the gate but the children in spare (and theirs): once the
// supervisor is gone, whatever the gate adopted is the tree's, marked or not (a process started under
// env -i, sudo or su - has lost the mark), since the gate runs one tree at a time. Processes that carry
// mark are killed wherever they are. It reaps those it killed, until none is left or within runs out
// (ErrTreeNotGone). When the supervisor did its job, it finds nothing.
func sweep(mark string, spare map[int]uint64, within time.Duration) error {
	self := os.Getpid()
	deadline := time.Now().Add(within)
	seen := map[int]bool{}
	want := []byte(mark + "\x00")
	for {
		table := procTable()
		var live, dead []int
		queue := []int{self}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, c := range table.children[p] {
				if p == self {
					if st, ok := spare[c]; ok && st == table.started[c] && !hasMark(c, want) {
						continue
					}
				}
				queue = append(queue, c)
				if table.zombie[c] {
					if p == self && seen[c] {
						dead = append(dead, c)
					}
					continue
				}
				live = append(live, c)
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

// descendants lists the live descendants of root, read from /proc.
func descendants(root int) []int {
	t := procTable()
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range t.children[p] {
			queue = append(queue, c)
			if !t.zombie[c] {
				out = append(out, c)
			}
		}
	}
	return out
}

// procs is a snapshot of /proc: each process's children, which are zombies, and when each started.
type procs struct {
	children map[int][]int
	zombie   map[int]bool
	started  map[int]uint64
}

// procTable reads /proc (empty where there is none).
func procTable() procs {
	t := procs{children: map[int][]int{}, zombie: map[int]bool{}, started: map[int]uint64{}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, zombie, started := stat(pid); ppid > 0 {
			t.children[ppid] = append(t.children[ppid], pid)
			t.zombie[pid] = zombie
			t.started[pid] = started
		}
	}
	return t
}

// stat reads a process's parent pid from /proc/<pid>/stat (0 when it cannot), whether it is a zombie
// (already dead), and its start time (clock ticks after boot: with the pid, it names one process).
func stat(pid int) (ppid int, zombie bool, started uint64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, 0
	}
	// The command name is in parentheses and may hold spaces: the fields after the last ")" are
	// state, ppid, and starttime the 20th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	started, _ = strconv.ParseUint(f[19], 10, 64)
	return ppid, f[0] == "Z", started
}
