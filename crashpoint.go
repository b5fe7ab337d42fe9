//go:build crashpoints

package main

import (
	"context"
	"os"
)

// crashPointHook returns, for fault tests, a hook that stops the holder at one crash point
// (MAINTENANCE_TEST_PAUSE_AT): it creates MAINTENANCE_TEST_PAUSE_FILE and blocks until the run is
// cancelled, so that the test can SIGKILL the process exactly there. It exists only in builds made
// with -tags crashpoints; the shipped binary has no way to pause a holder.
func crashPointHook(getenv func(string) string) func(context.Context, string) {
	at, file := getenv("MAINTENANCE_TEST_PAUSE_AT"), getenv("MAINTENANCE_TEST_PAUSE_FILE")
	if at == "" || file == "" {
		return nil
	}
	return func(ctx context.Context, point string) {
		if point != at {
			return
		}
		if f, err := os.Create(file); err == nil {
			f.Close()
		}
		<-ctx.Done()
	}
}
