package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/escape"
	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// inspect opens a runner for a read-only command and connects to Redis. With withTasks it loads the
// task file too when one is set, so that status can compare progress with the definitions; a task file
// that does not load is logged and left out, as status must work while the file is being fixed.
func inspect(ctx context.Context, getenv func(string) string, stderr io.Writer, withTasks ...bool) (*runner.Runner, *slog.Logger, error) {
	cfg, err := loadConfig(getenv, true)
	if err != nil {
		return nil, nil, fail(earlyLogger(getenv, stderr), "invalid configuration", err)
	}
	log := newLogger(cfg.LogFormat, cfg.LogLevel, stderr).With("gate", cfg.Name)
	var specs []tasks.Spec
	if len(withTasks) > 0 && withTasks[0] && cfg.TasksFile != "" {
		if specs, err = loadTasks(ctx, cfg, nil, getenv); err != nil {
			log.Warn("task file not loaded: progress is shown without comparing it with the task definitions", "err", err)
		}
	}
	r := runner.New(cfg, runner.Options{Logger: log, Getenv: getenv, Specs: specs})
	if err := r.Connect(ctx); err != nil {
		r.Close()
		return nil, nil, fail(log, "cannot reach Redis", err)
	}
	return r, log, nil
}

func cmdStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int64("n", 5, "history entries to show")
	if done, err := parseFlags(fs, args, "status [--json] [-n N]", stdout); done || err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *n <= 0 {
		return &usageError{msg: "status: -n must be positive"}
	}
	r, log, err := inspect(ctx, getenv, stderr, true)
	if err != nil {
		return err
	}
	defer r.Close()
	st, err := r.Status(ctx, *n)
	if err != nil {
		return fail(log, "cannot read the gate's state", err)
	}
	if *asJSON {
		return writeJSON(stdout, st)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// Every value read from Redis is escaped: anyone who can write there must not drive the terminal.
	q := escape.Text
	fmt.Fprintf(w, "gate:\t%s\n", q(st.Gate))
	fmt.Fprintf(w, "version:\t%s\n", orNone(q(st.Version), "(none recorded)"))
	if st.Lock == nil {
		fmt.Fprintf(w, "lock:\tfree\n")
	} else {
		fmt.Fprintf(w, "lock:\theld by %s%s for version %s since %s (%s ago), expires in %s\n", q(st.Lock.Holder.Holder),
			podSuffix(st.Lock.Pod), q(st.Lock.Version), st.Lock.Started.Format(time.RFC3339), ago(st.Lock.Started), st.Lock.TTL.Round(time.Millisecond))
	}
	if st.Current != nil {
		fmt.Fprintf(w, "task:\t%s %s, running for %s\n", q(st.Current.Step), q(st.Current.Task), ago(st.Current.Started))
	}
	if st.Progress != nil {
		fmt.Fprintf(w, "progress:\tversion %s, fencing token %d, done: %s\n", q(st.Progress.Version), st.Progress.FencingToken, orNone(q(strings.Join(st.Progress.Done, ", ")), "none"))
		for _, c := range st.Progress.Changed {
			fmt.Fprintf(w, "changed:\t%s done under digest %s, the task file now has %s: it runs again\n", q(c.Task), orNone(q(c.DoneDigest), "(none)"), c.LoadedDigest)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nhistory (last %d):\n", *n)
	return writeHistory(stdout, st.History)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(escape.JSON(w))
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeHistory(out io.Writer, entries []runner.Entry) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintln(out, "  (no attempts yet)")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FINISHED\tVERSION\tPREVIOUS\tOUTCOME\tHOLDER\tTOKEN\tDURATION\tTASK\tERROR")
	q := escape.Text
	for _, e := range entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Finished.Format(time.RFC3339), q(e.Version), orNone(q(e.Previous), "-"),
			q(e.Outcome), q(e.Holder), e.FencingToken, e.Finished.Sub(e.Started).Round(time.Millisecond), orNone(q(e.Task), "-"), orNone(q(e.Error), "-"))
	}
	return w.Flush()
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func podSuffix(pod string) string {
	if pod == "" {
		return ""
	}
	return " (pod " + escape.Text(pod) + ")"
}

func ago(t time.Time) time.Duration { return time.Since(t).Round(time.Second) }
