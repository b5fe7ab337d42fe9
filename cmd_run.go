package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
)

// cmdRun is the gate's run (the default command).
func cmdRun(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	dryRun := fs.Bool("dry-run", false, "print the plan and change nothing (MAINTENANCE_DRY_RUN)")
	if done, err := parseFlags(fs, args, "[run] [--dry-run] [-- command args...]", stdout); done || err != nil {
		return err
	}
	if err := checkCommand(args, fs.Args()); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, false)
	if err != nil {
		return fail(earlyLogger(getenv, stderr), "invalid configuration", err)
	}
	log := newLogger(cfg.LogFormat, cfg.LogLevel, stderr).With("gate", cfg.Name)
	specs, err := loadTasks(cfg, fs.Args(), getenv)
	if err != nil {
		return fail(log, "invalid task list", tasksFileNamed(err))
	}
	cfg.DryRun = cfg.DryRun || *dryRun
	r := runner.New(cfg, runner.Options{Specs: specs, Logger: log, Getenv: getenv, Out: stdout,
		Pause: crashPointHook(getenv)})
	defer r.Close()
	if _, err := r.Run(ctx); err != nil {
		return fail(log, "maintenance gate failed", err)
	}
	return nil
}

// checkCommand refuses what is left after the flags unless it is a command after "--": a mistyped
// subcommand ("stauts") must be a usage error, never a task that runs under the lock.
func checkCommand(args, rest []string) error {
	dashes := len(args) - len(rest) - 1
	switch {
	case len(rest) > 0 && (dashes < 0 || args[dashes] != "--"):
		return &usageError{msg: fmt.Sprintf("unknown command %q (see peerdb-maintenance --help; a command to run goes after --)", rest[0])}
	case len(rest) == 0 && len(args) > 0 && args[len(args)-1] == "--":
		return &usageError{msg: "nothing after --: give the command to run, or leave out --"}
	case len(rest) > 0 && rest[0] == "":
		return &usageError{msg: "the command after -- is empty"}
	}
	return nil
}
