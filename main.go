// Command peerdb-maintenance is a Redis-coordinated upgrade gate for PeerDB: exactly one replica runs
// the maintenance tasks for a new deployment version, records it, and every replica exits 0 so that
// the main container starts only after maintenance is done.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = ""
	commit  = ""
)

func main() {
	err := run(notifyContext(context.Background()), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	os.Exit(exitCode(err))
}

// run is the whole program but its signal handling (main's): it dispatches to one command. A panic in
// it (an internal error) ends as one log line and exit 2, never as a stack trace.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &InternalError{Panic: p}
			earlyLogger(getenv, stderr).Error("internal error, stopped", "err", err, "exit_code", exitCode(err))
		}
	}()
	name, rest := "run", args
	if len(args) > 0 {
		if _, ok := commands[args[0]]; ok {
			name, rest = args[0], args[1:]
		} else if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			name = "help"
		}
	}
	if name == "help" {
		err = help(args[1:], stdout)
	} else {
		err = commands[name].run(ctx, rest, getenv, stdout, stderr)
	}
	// Commands log their own failures; a bad command line has no logger yet.
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "peerdb-maintenance: %s\n", ue.msg)
	}
	return err
}

// InternalError is a panic recovered at the top of the program: a bug, reported in one line (exit 2).
type InternalError struct{ Panic any }

func (e *InternalError) Error() string { return fmt.Sprintf("internal error: %v", e.Panic) }

// SignalError is the cause of a run cancelled by SIGINT or SIGTERM.
type SignalError struct{ Signal os.Signal }

func (e *SignalError) Error() string { return "interrupted by " + e.Signal.String() }

// notifyContext is signal.NotifyContext with a typed cause, so that the exit code can name the signal.
// It has no stop: the handler stays until the process exits, right after the run. signal.Stop would
// hand each signal's mask to another OS thread and wait for it, which took a waiter 12 ms (median) and
// up to 55 ms between its notice and its exit when 100 replicas woke at once on two cores.
func notifyContext(parent context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() { cancel(&SignalError{Signal: <-ch}) }()
	return ctx
}

// usageError is a bad command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode maps an error to the exit codes of DESIGN.md section 6. It is the only place that does.
func exitCode(err error) int {
	var (
		internal *InternalError
		sig      *SignalError
		cfgErr   *config.Error
		fileErr  *tasks.FileError
		usage    *usageError
		install  *installError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &sig):
		if sig.Signal == syscall.SIGINT {
			return 130
		}
		return 143
	case errors.As(err, &internal), errors.Is(err, runner.ErrMalformedReply):
		return 2
	case errors.As(err, &cfgErr), errors.As(err, &fileErr), errors.As(err, &usage), errors.As(err, &install),
		errors.Is(err, runner.ErrConfig), errors.Is(err, runner.ErrAuth), errors.Is(err, runner.ErrRedisRefused),
		errors.Is(err, runner.ErrHolderAlive):
		return 2
	case errors.Is(err, runner.ErrUnreachable), errors.Is(err, runner.ErrWaitTimeout), errors.Is(err, runner.ErrRedisUnwritable):
		return 3
	case errors.Is(err, lock.ErrLost):
		return 4
	case errors.Is(err, runner.ErrDowngrade):
		return 5
	default:
		return 1
	}
}

// help prints the usage, or with "env" the table of environment variables.
func help(topic []string, stdout io.Writer) error {
	switch strings.Join(topic, " ") {
	case "":
		usage(stdout)
		return nil
	case "env":
		return config.WriteVars(stdout)
	}
	return &usageError{msg: fmt.Sprintf("help: unknown topic %q: help env lists the environment, COMMAND --help shows a command", strings.Join(topic, " "))}
}

func usage(w io.Writer) {
	fmt.Fprint(w, usageText)
	fmt.Fprintln(w, "\nEnvironment (the primary interface; durations in Go syntax: 30s, 2m, 1h30m; also: help env):")
	_ = config.WriteVars(w)
}

const usageText = `peerdb-maintenance: a Redis-coordinated upgrade gate for PeerDB.

Usage:
  peerdb-maintenance [run] [--dry-run] [-- command args...]   run the gate (default)
  peerdb-maintenance status [--json] [-n N]                   recorded version, lock holder, current task, history
  peerdb-maintenance history [--json] [-n N]                  the last N attempts
  peerdb-maintenance unlock [--force]                         remove a stuck lock (waits for it to expire); a live
                                                              holder only with --force, which asks it to stop first
  peerdb-maintenance validate [tasks-file]                    check configuration and a task file; no Redis
  peerdb-maintenance install DIR                              copy this binary to DIR/peerdb-maintenance, to run it
                                                              inside another image; no Redis
  peerdb-maintenance version                                  print version, commit and Go version

Every command takes --help. Configuration is read from the environment, listed below; every bad
value is named in one error (exit 2) before Redis is contacted.

Exit codes: 0 done or nothing to do, 1 task failed, 2 bad configuration, usage, Redis credentials or certificate,
a TLS mismatch, a reply that is not the Redis protocol, an internal error,
or a command Redis refuses (WRONGTYPE, an unknown or renamed command, NOPERM, a corrupted fencing counter),
3 timed out (Redis unreachable, or waiting for another replica) or a Redis that refuses writes (READONLY, OOM,
MISCONF), 4 lock lost, 5 downgrade refused,
130/143 interrupted by SIGINT/SIGTERM.
`
