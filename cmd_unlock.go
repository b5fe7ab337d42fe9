package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/escape"
)

func cmdUnlock(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("unlock", flag.ContinueOnError)
	if done, err := parseFlags(fs, args, "unlock", stdout); done || err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	r, log, err := inspect(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer r.Close()
	h, err := r.Unlock(ctx)
	if err != nil {
		return fail(log, "cannot release the lock", err)
	}
	if h == nil {
		_, err = fmt.Fprintf(stdout, "lock %s was free: nothing removed\n", r.Keys().Lock)
		return err
	}
	_, err = fmt.Fprintf(stdout, "removed lock %s: holder %s%s, version %s, held since %s (%s ago)\nprogress is kept: the next holder resumes after the last finished task\n",
		r.Keys().Lock, escape.Text(h.Holder), podSuffix(h.Pod), escape.Text(h.Version), h.Started.Format(time.RFC3339), ago(h.Started))
	return err
}
