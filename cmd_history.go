package main

import (
	"context"
	"flag"
	"io"
)

func cmdHistory(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int64("n", 20, "entries to show, newest first")
	if done, err := parseFlags(fs, args, "history [--json] [-n N]", stdout); done || err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *n <= 0 {
		return &usageError{msg: "history: -n must be positive"}
	}
	r, log, err := inspect(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer r.Close()
	entries, err := r.History(ctx, *n)
	if err != nil {
		return fail(log, "cannot read history", err)
	}
	if *asJSON {
		return writeJSON(stdout, entries)
	}
	return writeHistory(stdout, entries)
}
