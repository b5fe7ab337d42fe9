package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// cmdValidate checks the configuration and a task file without touching Redis.
func cmdValidate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	if done, err := parseFlags(fs, args, "validate [tasks-file]  (default: MAINTENANCE_TASKS_FILE)", stdout); done || err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return &usageError{msg: "validate: at most one task file"}
	}
	log := earlyLogger(getenv, stderr)
	cfg, err := loadConfig(getenv, true)
	if err != nil {
		return fail(log, "invalid configuration", err)
	}
	if fs.NArg() == 1 {
		cfg.TasksFile = fs.Arg(0)
	}
	if cfg.TasksFile == "" {
		return &usageError{msg: "validate: no task file: pass one or set MAINTENANCE_TASKS_FILE"}
	}
	specs, err := loadTasks(ctx, cfg, nil, getenv)
	if err != nil && fs.NArg() == 0 {
		err = tasksFileNamed(err)
	}
	if err != nil {
		return fail(log, "invalid task list", err)
	}
	fmt.Fprintf(stdout, "%s: %d tasks ok\n", cfg.TasksFile, len(specs))
	for i, s := range specs {
		fmt.Fprintf(stdout, "  %d. %s (%s, timeout %s)\n", i+1, s.Name, s.Kind, s.Timeout)
	}
	return nil
}
