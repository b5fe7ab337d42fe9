// Package proctree runs an exec task's command as a process tree that cannot outlive its holder's lock:
// the second keeper of invariant 1 (DESIGN.md section 7), beside the lock's keeper. The command runs
// under a supervisor (the gate's own binary started again under the name supervisorName) that kills
// and reaps the whole tree when the gate closes the lifeline, when the gate dies however it dies, and
// when the lease runs out: the supervisor keeps its own deadline on the monotonic clock, moved forward
// only by the gate (Extend, after each refresh of the lock that succeeded), so that a gate that cannot
// act (stopped by SIGSTOP, a frozen cgroup, a long pause) still has its tree killed before its lock can
// expire. When the supervisor itself is killed, the gate sweeps what is left (End): every process it
// adopted as a child subreaper, marked or not, since it runs one task at a time and starts nothing else.
package proctree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	// ErrSupervisorKilled: the supervisor died of a signal the gate did not send (the OOM killer, a
	// kill -9). The command did not fail on its own: its tree was killed by the gate afterwards.
	ErrSupervisorKilled = errors.New("tasks: supervisor killed")
	// ErrTreeNotGone: after its supervisor exited, processes of the tree could not be confirmed gone. The
	// lock must not be released (it expires by itself): the next holder would run beside them.
	ErrTreeNotGone = errors.New("tasks: the task's process tree could not be confirmed gone")
	// ErrLeaseExpired: the supervisor's deadline passed before the gate extended it (the gate paused or
	// starved longer than its lock is surely held), and it killed the tree.
	ErrLeaseExpired = errors.New("tasks: the lease ran out before the gate renewed it, the task's tree was killed")
)

// Tree is one command's process tree under its supervisor, seen from the gate.
type Tree struct {
	cmd      *exec.Cmd
	mark     string
	spare    map[int]uint64 // the gate's own children before the tree started: not the tree's
	lifeline *os.File
	report   *os.File
	mu       sync.Mutex // serializes Extend and Kill on the lifeline
	cut      bool
	reported chan string
	done     chan error
}

// Command prepares argv to run under a supervisor whose lease runs until until (zero: no lease). The
// caller sets Dir, Env (with Mark), Stdout and Stderr of Cmd, then calls Start.
func Command(argv []string, until time.Time) (*Tree, error) {
	self, err := os.Executable()
	if err != nil {
		// No /proc (a bare root): the path the gate was started by.
		self, err = exec.LookPath(os.Args[0])
	}
	if err != nil {
		return nil, fmt.Errorf("find the gate's own binary to supervise the command: %w", err)
	}
	name := argv[0]
	if !strings.Contains(name, "/") {
		// Looked up here, as exec.Command would, so that a missing program is a clear error.
		if name, err = exec.LookPath(name); err != nil {
			return nil, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		_, _ = r.Close(), w.Close()
		return nil, err
	}
	deadline := "-"
	if !until.IsZero() {
		deadline = fmt.Sprint(monoDeadline(until))
	}
	cmd := &exec.Cmd{Path: self, Args: append([]string{supervisorName, deadline, name}, argv[1:]...), ExtraFiles: []*os.File{r, rw}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return &Tree{cmd: cmd, mark: newTreeMark(), spare: ownChildren(), lifeline: w, report: rr,
		reported: make(chan string, 1), done: make(chan error, 1)}, nil
}

// Cmd is the supervisor's command, to be given its Dir, Env and output before Start.
func (t *Tree) Cmd() *exec.Cmd { return t.cmd }

// Mark is the environment entry that marks every process of this tree.
func (t *Tree) Mark() string { return t.mark }

// Start starts the supervisor. Done then reports its exit.
func (t *Tree) Start() error {
	err := t.cmd.Start()
	// The lifeline's read end and the report's write end are the supervisor's now.
	_, _ = t.cmd.ExtraFiles[0].Close(), t.cmd.ExtraFiles[1].Close()
	if err != nil {
		t.Close()
		return err
	}
	go func() {
		b, _ := io.ReadAll(t.report)
		t.reported <- strings.TrimSpace(string(b))
	}()
	go func() { t.done <- t.cmd.Wait() }()
	return nil
}

// Done receives the supervisor's exit (once).
func (t *Tree) Done() <-chan error { return t.done }

// Signal sends sig to the supervisor's group: the supervisor passes it on to the command's group.
func (t *Tree) Signal(sig syscall.Signal) { _ = syscall.Kill(-t.cmd.Process.Pid, sig) }

// Extend moves the supervisor's deadline to until (never back: the supervisor ignores an earlier one).
// until is the time the lock is surely held until; it is sent as a point on the monotonic clock that
// every process of the host shares, so that a gate paused before the write cannot extend it further.
func (t *Tree) Extend(until time.Time) {
	var msg [8]byte
	binary.LittleEndian.PutUint64(msg[:], uint64(monoDeadline(until)))
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.cut {
		_, _ = t.lifeline.Write(msg[:])
	}
}

// Kill has the supervisor SIGKILL the command's whole tree, reap it and exit; the supervisor's own
// group is SIGKILLed only if it does not exit within wait (End then kills the rest).
func (t *Tree) Kill(wait time.Duration) {
	t.cutLifeline()
	select {
	case <-t.done:
	case <-time.After(wait):
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		<-t.done
	}
}

func (t *Tree) cutLifeline() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cut = true
	_ = t.lifeline.Close()
}

// Close releases the gate's ends of the pipes.
func (t *Tree) Close() {
	t.cutLifeline()
	_ = t.report.Close()
}

// End runs once the supervisor has exited with werr. When it reported the tree gone, End returns nil
// (werr is then the command's own result), or ErrLeaseExpired when the supervisor killed it because the
// lease ran out. When it did not report (it was killed before it could kill the tree), the gate kills
// and reaps the rest of the tree itself, so that End never returns while a process of the tree runs:
// ErrSupervisorKilled, or ErrTreeNotGone when that cannot be confirmed within wait.
func (t *Tree) End(werr error, wait time.Duration) error {
	report := ""
	select {
	case report = <-t.reported:
	case <-time.After(wait):
	}
	switch report {
	case reportExited:
		return nil
	case reportExpired:
		return ErrLeaseExpired
	}
	if err := sweep(t.mark, t.spare, wait); err != nil {
		return fmt.Errorf("the supervisor exited (%v) without confirming its tree gone: %w", werr, err)
	}
	if werr == nil {
		werr = errors.New("exited without a report")
	}
	return fmt.Errorf("%w (%v): the task's process tree was killed; the task did not fail on its own", ErrSupervisorKilled, werr)
}

// monoDeadline is until as a point on the host's monotonic clock (in nanoseconds). The clock is read
// before until's distance from now: a pause between the two brings the deadline nearer, never later.
func monoDeadline(until time.Time) int64 {
	now := monoNow()
	return now + int64(time.Until(until))
}
