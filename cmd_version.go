package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func cmdVersion(_ context.Context, args []string, _ func(string) string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if done, err := parseFlags(fs, args, "version", stdout); done || err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	v, c := buildVersion()
	_, err := fmt.Fprintf(stdout, "peerdb-maintenance %s (commit %s, %s)\n", v, c, runtime.Version())
	return err
}

// buildVersion returns the version and commit injected at build time, falling back to the module
// build information.
func buildVersion() (string, string) {
	v, c := version, commit
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}
