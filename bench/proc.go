package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the bench started: the gate or the floor program.
type proc struct {
	cmd     *exec.Cmd
	stderr  *syncBuffer
	started time.Time
	ended   time.Time
	code    int
	maxRSS  int64         // bytes, from wait4's rusage
	cpu     time.Duration // user + system time, from wait4's rusage
	faults  int64         // minor page faults, from wait4's rusage
	done    chan struct{}
}

// syncBuffer is a bytes.Buffer that may be read while the child still writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// has reports whether the child logged a line with this static message.
func (b *syncBuffer) has(msg string) bool { return strings.Contains(b.String(), `"msg":"`+msg+`"`) }

// logged returns the time of the first JSON log line with this static message.
func (b *syncBuffer) logged(msg string) (time.Time, bool) {
	for _, line := range strings.Split(b.String(), "\n") {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			return rec.Time, true
		}
	}
	return time.Time{}, false
}

// startProc starts bin with only PATH and env in its environment. Its wall time runs from just before
// the fork to the moment wait4 returns.
func startProc(bin string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = cmd.Wait()
		p.ended = time.Now()
		ps := cmd.ProcessState
		p.code = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			p.maxRSS = ru.Maxrss * 1024 // Linux reports KiB
			p.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			p.faults = ru.Minflt
		}
		close(p.done)
	}()
	return p, nil
}

// wait waits for the process to exit, killing it after timeout or when ctx ends; the error says it had
// to be killed.
func (p *proc) wait(ctx context.Context, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.kill()
		return context.Cause(ctx)
	case <-timer.C:
		p.kill()
		return fmt.Errorf("%s did not exit within %s; stderr:\n%s", p.cmd.Path, timeout, p.stderr)
	}
}

// kill stops the process if it still runs.
func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) wall() time.Duration { return p.ended.Sub(p.started) }

// runProc starts bin and waits for it.
func runProc(ctx context.Context, bin string, timeout time.Duration, env []string, args ...string) (*proc, error) {
	p, err := startProc(bin, env, args...)
	if err != nil {
		return nil, err
	}
	return p, p.wait(ctx, timeout)
}
