package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// DefaultGracePeriod is how long a cancelled exec task has between SIGTERM and SIGKILL. The grace period
// never outlives the lock: when the holder's lock is lost (Env.LockLost) the group gets SIGKILL at once.
const DefaultGracePeriod = 10 * time.Second

// Exec runs a command in its own process group. Its output is logged line by line; its environment
// is the gate's plus Env plus MAINTENANCE_FROM_VERSION, MAINTENANCE_TO_VERSION and
// MAINTENANCE_FENCING_TOKEN. When cancelled, the whole group gets SIGTERM, then SIGKILL after
// GracePeriod.
type Exec struct {
	Command []string
	Env     map[string]string
	Dir     string
	// GracePeriod is the time between SIGTERM and SIGKILL; zero means DefaultGracePeriod.
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
		if err != nil || d <= 0 {
			errs = append(errs, Fieldf("grace_period", "%q is not a positive duration (Go syntax: 10s)", f.GracePeriod))
		}
		t.GracePeriod = d
	}
	return t, errors.Join(errs...)
}

// Run starts the command and waits for it, or for ctx.
func (e *Exec) Run(ctx context.Context, env Env) error {
	// A gate killed with SIGKILL takes its command's whole tree along (outside a container nothing else
	// would), so that the next holder never runs the same task beside an orphan: see supervise.go.
	cmd, lifeline, err := supervisedCommand(e.Command)
	if err != nil {
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	defer lifeline.Close()
	cmd.Dir = e.Dir
	cmd.Env = os.Environ()
	for k, v := range e.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env,
		"MAINTENANCE_FROM_VERSION="+env.FromVersion,
		"MAINTENANCE_TO_VERSION="+env.ToVersion,
		"MAINTENANCE_FENCING_TOKEN="+strconv.FormatInt(env.FencingToken, 10),
	)
	// Our own pipes rather than io.Writers: cmd.Wait then returns when the command exits, not when
	// every process that inherited its output (a background child) has closed it.
	out, err := startOutput(cmd, env.Logger)
	if err != nil {
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	err = cmd.Start()
	_ = cmd.ExtraFiles[0].Close() // the lifeline's read end is the supervisor's now
	if err != nil {
		out.abort()
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	out.started()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pgid := -cmd.Process.Pid
	// killTree has the supervisor SIGKILL the command's whole tree and reap it, then exit; the
	// supervisor's own group is SIGKILLed only if it does not exit in time.
	killTree := func() {
		_ = lifeline.Close()
		select {
		case <-done:
		case <-time.After(drainWait):
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			<-done
		}
	}

	select {
	case err := <-done:
		// The supervisor killed whatever the command left running before it exited.
		out.drain()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Command[0], err)
		}
		return nil
	case <-ctx.Done():
	}
	grace := e.GracePeriod
	if grace <= 0 {
		grace = DefaultGracePeriod
	}
	select {
	case <-env.LockLost:
		// A lock already lost gets no grace period: the next holder may be starting this very task.
		killTree()
	default:
		// The supervisor passes SIGTERM on to the command's process group.
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			env.Logger.Warn("task did not stop after SIGTERM, sending SIGKILL", "grace_period", grace.String())
			killTree()
		case <-env.LockLost:
			env.Logger.Warn("lock lost while the task winds down, sending SIGKILL")
			killTree()
		}
	}
	out.drain()
	return fmt.Errorf("%s stopped: %w", e.Command[0], context.Cause(ctx))
}

// drainWait bounds the wait for the output of processes that left the command's process group
// (setsid) and so survive its SIGKILL.
const drainWait = 2 * time.Second

// output carries a command's stdout and stderr to line loggers through pipes of our own.
type output struct {
	readers []*os.File
	writers []*os.File
	loggers []*lineLogger
	wg      sync.WaitGroup
}

func startOutput(cmd *exec.Cmd, log *slog.Logger) (*output, error) {
	o := &output{}
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			o.abort()
			return nil, err
		}
		o.readers, o.writers = append(o.readers, r), append(o.writers, w)
		o.loggers = append(o.loggers, &lineLogger{log: log, stream: stream})
	}
	cmd.Stdout, cmd.Stderr = o.writers[0], o.writers[1]
	return o, nil
}

// started closes our copies of the write ends and starts logging.
func (o *output) started() {
	for _, w := range o.writers {
		_ = w.Close()
	}
	for i, r := range o.readers {
		o.wg.Add(1)
		go func(r *os.File, l *lineLogger) {
			defer o.wg.Done()
			_, _ = io.Copy(l, r)
		}(r, o.loggers[i])
	}
}

// drain waits until every writer is gone (bounded by drainWait), then logs what is left.
func (o *output) drain() {
	finished := make(chan struct{})
	go func() { o.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(drainWait):
		for _, r := range o.readers {
			_ = r.Close() // unblocks the copies
		}
		<-finished
	}
	for i, r := range o.readers {
		_ = r.Close()
		o.loggers[i].flush()
	}
}

// abort closes every pipe when the command did not start.
func (o *output) abort() {
	for _, f := range append(o.readers, o.writers...) {
		_ = f.Close()
	}
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
		switch i := bytes.IndexByte(l.buf, '\n'); {
		case i >= 0 && i <= maxLine:
			l.emit(l.buf[:i])
			l.buf = l.buf[i+1:]
		case len(l.buf) > maxLine:
			// Split before a character that starts at or before maxLine, never inside one.
			n := maxLine
			for k := 0; k < utf8.UTFMax && n > 1 && !utf8.RuneStart(l.buf[n]); k++ {
				n--
			}
			l.emit(l.buf[:n])
			l.buf = l.buf[n:]
		default:
			return len(p), nil
		}
	}
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
