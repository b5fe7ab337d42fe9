package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"
)

func cmdUnlock(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("unlock", flag.ContinueOnError)
	force := fs.Bool("force", false, "also when the holder is alive: ask it to stop (its tasks are killed, it records nothing and exits 4), wait for it to release the lock, and delete the lock only after a whole TTL without that")
	if done, err := parseFlags(fs, args, "unlock [--force]", stdout); done || err != nil {
		return err
	}
	r, log, err := inspect(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := r.Unlock(ctx, *force)
	if err != nil {
		return fail(log, "cannot release the lock", err)
	}
	h := res.Holder
	if h == nil {
		_, err = fmt.Fprintf(stdout, "lock %s was free: nothing removed\n", r.Keys().Lock)
		return err
	}
	what := "removed lock"
	switch {
	case res.Stopped:
		what = "the holder stopped and released lock"
	case res.Expired:
		what = "lock expired on its own, nothing deleted:"
	}
	_, err = fmt.Fprintf(stdout, "%s %s: holder %s%s, version %s, held since %s (%s ago)\nprogress is kept: the next holder resumes after the last finished task\n",
		what, r.Keys().Lock, h.Holder, podSuffix(h.Pod), h.Version, h.Started.Format(time.RFC3339), ago(h.Started))
	return err
}
