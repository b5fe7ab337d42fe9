package proctree

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// An exec task does not run as the gate's child but as the child of a supervisor: the gate's own
// binary started again under the name supervisorName, in a process group of its own. Why a supervising
// child: a parent-death signal reaches only the direct child, so when the gate is SIGKILLed outside a
// container (where no init kills the rest) the command's own children lived on, and the next holder
// ran the task beside them. The supervisor holds the read end of a pipe (the lifeline) whose write end
// only the gate holds; the kernel closes it when the gate dies, however it dies, and the supervisor
// then SIGKILLs every descendant (found in /proc, also those that left the group with setsid; as a child
// subreaper it adopts the orphans of the processes it kills) and reaps them all before it exits. The
// gate closes the lifeline itself to kill the tree (grace period over, lock lost), so that it knows when
// every descendant is gone: the supervisor exits only then. Through the same pipe the gate sends the
// lease: after each refresh of the lock that worked, the point on the monotonic clock until which the
// lock is surely held; the supervisor kills the tree when that point passes with no later one received,
// whatever the gate does. A pipe rather than a pidfd or a cgroup: it needs no recent kernel, no cgroup
// delegation and no privilege, and works the same in a container and on a laptop.
const supervisorName = "peerdb-maintenance-supervisor"

// lifelineFD is the supervisor's file descriptor of the lifeline (the first of exec.Cmd.ExtraFiles).
// The gate writes the lease there: 8 bytes each, a little-endian point on the monotonic clock.
const lifelineFD = 3

// reportFD is the supervisor's end of the report pipe (the second of exec.Cmd.ExtraFiles): it writes
// one line there just before it exits, once the tree is gone (reportExited, or reportExpired when the
// lease ran out). A supervisor that exits without that line was killed by someone else, and the gate
// kills the tree itself (see sweep).
const reportFD = 4

const (
	reportExited  = "exited"
	reportExpired = "lease-expired"
)

// codeExpired is the supervisor's exit code when it killed the tree because the lease ran out.
const codeExpired = 137

func init() {
	if len(os.Args) > 2 && os.Args[0] == supervisorName {
		os.Exit(supervise(os.Args[1], os.Args[2:]))
	}
}

// supervise runs argv in a process group of its own and exits as it does. It passes SIGTERM, SIGINT and
// SIGHUP on to that group. When the command exits, the lifeline closes or the lease deadline (a point on
// the monotonic clock, "-" for none) passes first, it SIGKILLs what is left of the tree and reaps it all
// before exiting, so that the gate sees the supervisor exit only once every descendant is gone.
func supervise(deadline string, argv []string) int {
	code, expired := superviseTree(deadline, argv)
	// Only now is the tree gone: a supervisor killed before this line leaves the gate to kill it.
	report := reportExited
	if expired {
		report = reportExpired
	}
	_, _ = os.NewFile(reportFD, "report").WriteString(report + "\n")
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
// minus the signal that killed it, and whether the lease ran out.
func superviseTree(deadline string, argv []string) (int, bool) {
	syscall.CloseOnExec(lifelineFD)
	syscall.CloseOnExec(reportFD)
	setSubreaper()
	var until int64 // zero: no lease
	if deadline != "-" {
		until, _ = strconv.ParseInt(deadline, 10, 64)
		until = max(until, 1)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start %s: %v\n", argv[0], err)
		return 127, false
	}
	cmdPid := proc.Pid
	exited, allGone := make(chan syscall.WaitStatus, 1), make(chan struct{})
	go reap(cmdPid, exited, allGone)
	lifeline, extend := make(chan struct{}), make(chan int64, 16)
	go readLifeline(lifeline, extend)
	lease := time.NewTimer(time.Hour)
	defer lease.Stop()
	check := func() {
		if until != 0 {
			lease.Reset(time.Duration(until - monoNow()))
		}
	}
	check()
	for {
		select {
		case s := <-sigs:
			_ = syscall.Kill(-cmdPid, s.(syscall.Signal))
		case ws := <-exited:
			killTree(cmdPid, allGone)
			if ws.Signaled() {
				return -int(ws.Signal()), false
			}
			return ws.ExitStatus(), false
		case <-lifeline:
			killTree(cmdPid, allGone)
			return 137, false
		case d := <-extend:
			if until != 0 && d > until {
				until = d
			}
			check()
		case <-lease.C:
			// A supervisor starved of CPU may wake with extensions already written by the gate: take
			// every one waiting before judging the deadline. Each is a refresh that worked, so honouring
			// it never stretches the lease past the lock; it only spares a tree the lock still covers.
			runtime.Gosched()
			for pending := true; pending; {
				select {
				case d := <-extend:
					if until != 0 && d > until {
						until = d
					}
				default:
					pending = false
				}
			}
			if until == 0 || monoNow() < until {
				check()
				continue
			}
			fmt.Fprintf(os.Stderr, "%s: the lease ran out before the gate renewed it (the gate paused or starved?): killing the task's tree\n", supervisorName)
			killTree(cmdPid, allGone)
			return codeExpired, true
		}
	}
}

// readLifeline sends each lease the gate writes on extend, and closes lifeline when the gate closes its
// end or dies.
func readLifeline(lifeline chan<- struct{}, extend chan<- int64) {
	defer close(lifeline)
	f := os.NewFile(lifelineFD, "lifeline")
	var msg [8]byte
	for {
		if _, err := io.ReadFull(f, msg[:]); err != nil {
			return
		}
		extend <- int64(binary.LittleEndian.Uint64(msg[:]))
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
