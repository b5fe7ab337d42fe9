package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultGracePeriod is how long a cancelled exec task has between SIGTERM and SIGKILL.
const DefaultGracePeriod = 10 * time.Second

// Exec runs a command in its own process group. Its output is logged line by line; its environment
// is the gate's plus Env plus MAINTENANCE_FROM_VERSION, MAINTENANCE_TO_VERSION and
// MAINTENANCE_FENCING_TOKEN. When cancelled, the whole group gets SIGTERM, then SIGKILL after
// GracePeriod.
type Exec struct {
	Command     []string
	Env         map[string]string
	Dir         string
	GracePeriod time.Duration
}

type execFields struct {
	Command     []string          `yaml:"command"`
	Env         map[string]string `yaml:"env"`
	Dir         string            `yaml:"dir"`
	GracePeriod string            `yaml:"grace_period"`
}

func init() { Register("exec", decodeExec) }

func decodeExec(node *yaml.Node, _ LoadContext) (Task, error) {
	var f execFields
	if err := DecodeStrict(node, &f); err != nil {
		return nil, err
	}
	var errs []error
	if len(f.Command) == 0 || f.Command[0] == "" {
		errs = append(errs, Fieldf("command", "required: a list whose first item is the program"))
	}
	t := &Exec{Command: f.Command, Env: f.Env, Dir: f.Dir, GracePeriod: DefaultGracePeriod}
	if f.GracePeriod != "" {
		d, err := time.ParseDuration(f.GracePeriod)
		if err != nil || d < 0 {
			errs = append(errs, Fieldf("grace_period", "%q is not a duration (Go syntax: 10s)", f.GracePeriod))
		}
		t.GracePeriod = d
	}
	return t, errors.Join(errs...)
}

// Run starts the command and waits for it, or for ctx.
func (e *Exec) Run(ctx context.Context, env Env) error {
	cmd := exec.Command(e.Command[0], e.Command[1:]...)
	cmd.Dir = e.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = os.Environ()
	for k, v := range e.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env,
		"MAINTENANCE_FROM_VERSION="+env.FromVersion,
		"MAINTENANCE_TO_VERSION="+env.ToVersion,
		"MAINTENANCE_FENCING_TOKEN="+strconv.FormatInt(env.FencingToken, 10),
	)
	stdout := &lineLogger{log: env.Logger, stream: "stdout"}
	stderr := &lineLogger{log: env.Logger, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Close the output pipes soon after the command exits even if a background child keeps them open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer stdout.flush()
	defer stderr.flush()

	select {
	case err := <-done:
		// Whatever the command left running in its group goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Command[0], err)
		}
		return nil
	case <-ctx.Done():
	}
	pgid := -cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	grace := time.NewTimer(e.GracePeriod)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		env.Logger.Warn("task did not stop after SIGTERM, sending SIGKILL", "grace_period", e.GracePeriod.String())
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-done
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	return fmt.Errorf("%s stopped: %w", e.Command[0], context.Cause(ctx))
}

// maxLine is the longest output line logged as one record; longer lines are split.
const maxLine = 16 << 10

// lineLogger logs what a command writes, one record per line.
type lineLogger struct {
	mu     sync.Mutex
	log    *slog.Logger
	stream string
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) >= maxLine {
				l.emit(l.buf[:maxLine])
				l.buf = l.buf[maxLine:]
				continue
			}
			break
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = nil
	}
}

func (l *lineLogger) emit(line []byte) {
	l.log.Info("task output", "stream", l.stream, "line", string(bytes.TrimSuffix(line, []byte("\r"))))
}
