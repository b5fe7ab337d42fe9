package tasks

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// An exec task does not run as the gate's child but as the child of a supervisor: the gate's own
// binary started again under the name supervisorName, in the task's process group. Why a supervising
// child: a parent-death signal reaches only the direct child, so when the gate is SIGKILLed outside a
// container (where no init kills the rest) the command's own children lived on, and the next holder
// ran the task beside them. The supervisor holds the read end of a pipe (the lifeline) whose write end
// only the gate holds; the kernel closes it when the gate dies, however it dies, and the supervisor
// then SIGKILLs every descendant (found in /proc, also those that left the group with setsid; as a child
// subreaper it adopts the orphans of the processes it kills) and reaps them all before it exits. The
// gate closes the lifeline itself to kill the tree (grace period over, lock lost), so that it knows when
// every descendant is gone: the supervisor exits only then. A pipe rather than a pidfd or a cgroup: it
// needs no recent kernel, no cgroup delegation and no privilege, and works the same in a container and
// on a laptop.
const supervisorName = "peerdb-maintenance-supervisor"

// lifelineFD is the supervisor's file descriptor of the lifeline (the first of exec.Cmd.ExtraFiles).
const lifelineFD = 3

// reportFD is the supervisor's end of the report pipe (the second of exec.Cmd.ExtraFiles): it writes
// one line there just before it exits, once the tree is gone. A supervisor that exits without that line
// was killed by someone else, and the gate kills the tree itself (see sweepTree).
const reportFD = 4

func init() {
	if len(os.Args) > 1 && os.Args[0] == supervisorName {
		os.Exit(supervise(os.Args[1:]))
	}
}

// supervisedCommand returns the command that runs argv under a supervisor (in a process group of its
// own, the command in another), the write end of its lifeline: closing it (or the gate's death)
// kills the command's whole tree, and the read end of its report pipe.
func supervisedCommand(argv []string) (*exec.Cmd, *os.File, *os.File, error) {
	self, err := os.Executable()
	if err != nil {
		// No /proc (a bare root): the path the gate was started by.
		self, err = exec.LookPath(os.Args[0])
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("find the gate's own binary to supervise the command: %w", err)
	}
	name := argv[0]
	if !strings.Contains(name, "/") {
		// Looked up here, as exec.Command would, so that a missing program is a clear error.
		if name, err = exec.LookPath(name); err != nil {
			return nil, nil, nil, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		_, _ = r.Close(), w.Close()
		return nil, nil, nil, err
	}
	cmd := &exec.Cmd{Path: self, Args: append([]string{supervisorName, name}, argv[1:]...), ExtraFiles: []*os.File{r, rw}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, w, rr, nil
}

// supervise runs argv in a process group of its own and exits as it does. It passes SIGTERM, SIGINT and
// SIGHUP on to that group. When the command exits, or the lifeline closes first, it SIGKILLs what is
// left of the tree and reaps it all before exiting, so that the gate sees the supervisor exit only once
// every descendant is gone.
func supervise(argv []string) int {
	code := superviseTree(argv)
	// Only now is the tree gone: a supervisor killed before this line leaves the gate to kill it.
	_, _ = os.NewFile(reportFD, "report").WriteString("exited\n")
	if code < 0 {
		// Die of the command's signal, so that the gate reports it as the command's.
		sig := syscall.Signal(-code)
		signal.Reset(sig)
		_ = syscall.Kill(os.Getpid(), sig)
		return 128 + int(sig)
	}
	return code
}

// superviseTree runs argv and kills what is left of its tree; it returns the command's exit code, or
// minus the signal that killed it.
func superviseTree(argv []string) int {
	syscall.CloseOnExec(lifelineFD)
	syscall.CloseOnExec(reportFD)
	setSubreaper()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start %s: %v\n", argv[0], err)
		return 127
	}
	cmdPid := proc.Pid
	exited, allGone := make(chan syscall.WaitStatus, 1), make(chan struct{})
	go reap(cmdPid, exited, allGone)
	lifeline := make(chan struct{})
	go func() {
		// Nothing is ever written: the read ends when the gate closes the write end or dies.
		_, _ = io.Copy(io.Discard, os.NewFile(lifelineFD, "lifeline"))
		close(lifeline)
	}()
	for {
		select {
		case s := <-sigs:
			_ = syscall.Kill(-cmdPid, s.(syscall.Signal))
		case ws := <-exited:
			killTree(cmdPid, allGone)
			if ws.Signaled() {
				return -int(ws.Signal())
			}
			return ws.ExitStatus()
		case <-lifeline:
			killTree(cmdPid, allGone)
			return 137
		}
	}
}

// reap waits for every child of the supervisor (the command, and the orphans it adopts as a subreaper),
// sends the command's status on exited, and closes allGone when no child is left.
func reap(cmdPid int, exited chan<- syscall.WaitStatus, allGone chan<- struct{}) {
	defer close(allGone)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case err == syscall.EINTR:
		case err != nil:
			return // ECHILD: no child left, so no descendant either (orphans are adopted before)
		case pid == cmdPid:
			exited <- ws
		}
	}
}

// killTree SIGKILLs the command's process group and every descendant of the supervisor (found in /proc,
// also those that left the group with setsid) until all are gone and reaped. Orphans of killed processes
// are adopted by the supervisor, so each round finds the ones forked meanwhile.
func killTree(cmdPid int, allGone <-chan struct{}) {
	for {
		_ = syscall.Kill(-cmdPid, syscall.SIGKILL)
		for _, pid := range descendants(os.Getpid()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-allGone:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
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

// parentOf reads a process's parent pid from /proc/<pid>/stat (0 when it cannot), and whether it is a
// zombie (already dead).
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name is in parentheses and may hold spaces: the fields after the last ")" are
	// state, then ppid.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid, f[0] == "Z"
}
