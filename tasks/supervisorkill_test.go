package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

func TestAKilledSupervisorsTreeIsGoneWhenRunReturns(t *testing.T) {
	dir := t.TempDir()
	spec := parseOne(t, fmt.Sprintf(`
tasks:
  - name: loop
    exec: {command: [/bin/sh, -c, 'cd %s; echo $PPID > ppid; echo $$ > pid; while :; do sleep 0.05; done']}`, dir))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := run(ctx, spec.Task, tasks.Env{})
		errc <- err
	}()
	supervisor, err := strconv.Atoi(waitFile(t, filepath.Join(dir, "ppid")))
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "pid"))
	// The OOM killer, or kill -9: the supervisor dies without killing the command's tree.
	if err := syscall.Kill(supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		t.Fatal("Run did not return after its supervisor was killed")
	}
	if !gone(t, filepath.Join(dir, "pid")) {
		t.Error("Run returned while the task's command still runs: the next holder would run beside it")
	}
	if !errors.Is(err, tasks.ErrSupervisorKilled) {
		t.Errorf("Run = %v, want ErrSupervisorKilled (not the command's failure)", err)
	}
}
