package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/proctree"
)

// DefaultGracePeriod is how long a cancelled exec task has between SIGTERM and SIGKILL. The grace period
// never outlives the lock: when the holder's lock is lost (Env.LockLost) the group gets SIGKILL at once,
// and when the gate cannot act, the supervisor's lease (Env.Lease) ends it.
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
	// What the kernel cannot take would fail only at the start, under the lock, as the task's failure
	// (history, cooldown); a name with "=" would silently set another variable.
	for i, a := range f.Command {
		if strings.ContainsRune(a, 0) {
			errs = append(errs, Fieldf("command", "item %d holds a NUL character, which no program argument can", i+1))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(f.Env)) {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			errs = append(errs, Fieldf("env", "name %q: a variable name must be non-empty, without \"=\" or NUL", k))
		case strings.ContainsRune(f.Env[k], 0):
			errs = append(errs, Fieldf("env."+k, "holds a NUL character, which no environment value can"))
		}
	}
	if strings.ContainsRune(f.Dir, 0) {
		errs = append(errs, Fieldf("dir", "holds a NUL character, which no path can"))
	}
	t := &Exec{Command: f.Command, Env: f.Env, Dir: f.Dir, GracePeriod: DefaultGracePeriod}
	if f.GracePeriod != "" {
		d, problem := positiveDuration(f.GracePeriod, "10s, 1m")
		if problem != "" {
			errs = append(errs, Fieldf("grace_period", "%s", problem))
		}
		t.GracePeriod = d
	}
	return t, errors.Join(errs...)
}

// Run starts the command and waits for it, or for ctx.
func (e *Exec) Run(ctx context.Context, env Env) error {
	// A gate killed with SIGKILL, or paused past its lease, takes its command's whole tree along, so that
	// the next holder never runs the same task beside an orphan: see internal/proctree.
	var until time.Time
	var changed <-chan struct{}
	if env.Lease != nil {
		until, changed = env.Lease()
	}
	tree, err := proctree.Command(e.Command, until)
	if err != nil {
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	defer tree.Close()
	cmd := tree.Cmd()
	cmd.Dir = e.Dir
	cmd.Env = os.Environ()
	for k, v := range e.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env,
		"MAINTENANCE_FROM_VERSION="+env.FromVersion,
		"MAINTENANCE_TO_VERSION="+env.ToVersion,
		"MAINTENANCE_FENCING_TOKEN="+strconv.FormatInt(env.FencingToken, 10),
		tree.Mark(),
	)
	// Our own pipes rather than io.Writers: cmd.Wait then returns when the command exits, not when
	// every process that inherited its output (a background child) has closed it.
	out, err := startOutput(cmd, env.Logger)
	if err != nil {
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	if err := tree.Start(); err != nil {
		out.abort()
		return fmt.Errorf("start %s: %w", e.Command[0], err)
	}
	out.started()
	if changed != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			// Each refresh of the lock that worked moves the supervisor's deadline.
			for {
				select {
				case <-stop:
					return
				case <-changed:
				}
				until, changed = env.Lease()
				tree.Extend(until)
			}
		}()
	}
	end := func(werr error) error {
		defer out.drain()
		if err := tree.End(werr, drainWait); err != nil {
			return fmt.Errorf("%s: %w", e.Command[0], err)
		}
		if werr != nil {
			return fmt.Errorf("%s: %w", e.Command[0], werr)
		}
		return nil
	}
	select {
	case err := <-tree.Done():
		// The supervisor killed whatever the command left running before it exited, unless it was
		// killed itself.
		return end(err)
	case <-ctx.Done():
	}
	grace := e.GracePeriod
	if grace <= 0 {
		grace = DefaultGracePeriod
	}
	select {
	case <-env.LockLost:
		// A lock already lost gets no grace period: the next holder may be starting this very task.
		tree.Kill(drainWait)
	default:
		// The supervisor passes SIGTERM on to the command's process group; its lease still bounds the
		// grace period when the gate cannot act.
		tree.Signal(syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-tree.Done():
		case <-timer.C:
			env.Logger.Warn("task did not stop after SIGTERM, sending SIGKILL", "grace_period", grace.String())
			tree.Kill(drainWait)
		case <-env.LockLost:
			env.Logger.Warn("lock lost while the task winds down, sending SIGKILL")
			tree.Kill(drainWait)
		}
	}
	if err := end(nil); errors.Is(err, ErrTreeNotGone) || errors.Is(err, ErrLeaseExpired) {
		return err
	}
	return fmt.Errorf("%s stopped: %w", e.Command[0], context.Cause(ctx))
}

// drainWait bounds the wait for the output of processes that left the command's process group
// (setsid) and so survive its SIGKILL.
const drainWait = 2 * time.Second

// The errors of an exec task's process tree (internal/proctree), which the runner tells apart.
var (
	// ErrSupervisorKilled: the supervisor of an exec task died of a signal the gate did not send (the
	// OOM killer, a kill -9). The task did not fail on its own: its tree was killed by the gate afterwards.
	ErrSupervisorKilled = proctree.ErrSupervisorKilled
	// ErrTreeNotGone: after its supervisor exited, processes of an exec task's tree could not be
	// confirmed gone. The lock must not be released (it expires by itself).
	ErrTreeNotGone = proctree.ErrTreeNotGone
	// ErrLeaseExpired: the supervisor killed the task's tree because the lock's lease ran out before the
	// gate renewed it (the gate paused or starved): the lock is no longer surely held.
	ErrLeaseExpired = proctree.ErrLeaseExpired
)

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
