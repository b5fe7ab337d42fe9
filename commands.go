package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/escape"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// command is one subcommand: its flags and what it does.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"run":      {"run the gate", cmdRun},
		"status":   {"show the gate's state", cmdStatus},
		"history":  {"show the last attempts", cmdHistory},
		"install":  {"copy this binary into a directory (a volume shared with another image), to run the gate there; no Redis", cmdInstall},
		"unlock":   {"remove a stuck lock; refuses while the holder is alive (its lock refreshed lately) unless --force, which asks the holder to stop first", cmdUnlock},
		"validate": {"check configuration and a task file without touching Redis", cmdValidate},
		"version":  {"print version, commit and Go version", cmdVersion},
	}
}

// parseFlags parses a command's flags. A --help prints the command's usage and returns done = true.
func parseFlags(fs *flag.FlagSet, args []string, synopsis string, stdout io.Writer) (done bool, err error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: peerdb-maintenance %s\n\n%s\n", synopsis, commands[fs.Name()].summary)
			if hasFlags(fs) {
				fmt.Fprintln(stdout, "\nFlags:")
				fs.SetOutput(stdout)
				fs.PrintDefaults()
			}
			if fs.Name() != "version" && fs.Name() != "install" {
				fmt.Fprintln(stdout, "\nEnvironment (durations in Go syntax: 30s, 2m, 1h30m):")
				_ = config.WriteVars(stdout)
			}
			return true, nil
		}
		return false, &usageError{msg: fmt.Sprintf("%s: %v (see peerdb-maintenance %s --help)", fs.Name(), err, fs.Name())}
	}
	return false, nil
}

// noArgs refuses arguments after the flags of a command that takes none: "status extra" is a typo
// or a misplaced flag, not something to ignore.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("%s takes no arguments, got %q (see peerdb-maintenance %s --help)", fs.Name(), fs.Args(), fs.Name())}
	}
	return nil
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// newLogger builds the one logger of the process: JSON by default, on stderr. go-redis's own
// diagnostics go through it too.
func newLogger(format string, level slog.Level, stderr io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	// The text handler quotes values with control characters; the JSON handler leaves DEL, C1
	// controls and bidirectional formatting raw, which a terminal showing the logs would obey.
	var log *slog.Logger
	if format == "text" {
		log = slog.New(slog.NewTextHandler(stderr, opts))
	} else {
		log = slog.New(slog.NewJSONHandler(escape.JSON(stderr), opts))
	}
	redisconn.SetLogger(log)
	return log
}

// earlyLogger logs before the configuration is known to be valid: it honours LOG_FORMAT and LOG_LEVEL
// when they are valid and falls back to JSON at info otherwise.
func earlyLogger(getenv func(string) string, stderr io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(getenv("LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	return newLogger(strings.ToLower(getenv("LOG_FORMAT")), level, stderr)
}

// loadConfig loads the configuration; inspect commands (status, history, unlock) do not need a
// deployment version.
func loadConfig(getenv func(string) string, inspect bool) (*config.Config, error) {
	if inspect {
		orig := getenv
		getenv = func(k string) string {
			if v := orig(k); v != "" || k != "PEERDB_DEPLOYMENT_VERSION" {
				return v
			}
			return "none"
		}
	}
	return config.Load(getenv)
}

// loadTasks loads the task list: the file of MAINTENANCE_TASKS_FILE, else the command after "--".
func loadTasks(ctx context.Context, cfg *config.Config, argv []string, getenv func(string) string) ([]tasks.Spec, error) {
	if cfg.TasksFile != "" && len(argv) > 0 {
		return nil, &config.Error{Problems: []config.Problem{{Var: "MAINTENANCE_TASKS_FILE",
			Problem: "set, and a command is given after -- as well: choose one"}}}
	}
	if len(argv) > 0 {
		return tasks.FromArgs(argv), nil
	}
	if cfg.TasksFile == "" {
		return nil, nil
	}
	lc := tasks.LoadContext{Getenv: getenv, GateTag: keys.For(cfg.KeyPrefix, cfg.Name).Tag, Context: ctx}
	return tasks.LoadFile(cfg.TasksFile, lc)
}

// tasksFileNamed names MAINTENANCE_TASKS_FILE in the error of a task file that cannot be read at all
// (missing, a directory, not readable): the variable is what to fix, as for every bad variable.
func tasksFileNamed(err error) error {
	var fileErr *tasks.FileError
	var pathErr *fs.PathError
	if errors.As(err, &fileErr) && len(fileErr.Problems) == 1 && errors.As(fileErr.Problems[0], &pathErr) {
		return fmt.Errorf("MAINTENANCE_TASKS_FILE: %w", err)
	}
	return err
}

// fail logs the error that ends the process, with its exit code, and returns it.
func fail(log *slog.Logger, msg string, err error) error {
	err = permissionRefused(err)
	log.Error(msg, "err", err, "exit_code", exitCode(err))
	return err
}

// permissionRefused marks Redis refusing a command to the gate's user as refused credentials (exit 2)
// wherever the run met it: an ACL user without XADD passes the connection check and fails only at the
// record, which would otherwise read as a lost lock (exit 4) or an unreachable Redis (exit 3). A
// task's own failure stays a task failure.
func permissionRefused(err error) error {
	var sig *SignalError
	if err == nil || errors.Is(err, runner.ErrAuth) || errors.Is(err, runner.ErrTaskFailed) || errors.As(err, &sig) ||
		!redisconn.IsAuthError(err) {
		return err
	}
	return fmt.Errorf("%w: Redis refused a command to this user (see docs/security.md for the commands the gate needs): %w", runner.ErrAuth, err)
}
