//go:build chaos

package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// taskScript is every task of the chaos run. It appends to $CHAOS_LOG a start line, a heartbeat every
// 100ms (from itself and from its grandchild, when it forks one) and an end line, so that a task's
// interval is from its start line to its last line, whether it ended or was killed:
//
//	start  RUN PID NS TOKEN VERSION TASK REPLICA DEF
//	beat   RUN PID NS
//	orphan RUN PID NS
//	end    RUN PID NS TOKEN VERSION TASK REPLICA DEF
//
// RUN names one execution of one task; NS is the wall clock in nanoseconds (one machine); DEF is the
// generation of the task's definition that ran (CHAOS_DEF). With CHAOS_ORPHAN=1 the task also
// double-forks a child under env -i, which keeps only what it needs to write (not the tree's mark) and
// beats ("orphan" lines) until it is killed: only the supervisor, or the gate's sweep once the
// supervisor is gone, stops it.
const taskScript = `run="$1-$MAINTENANCE_FENCING_TOKEN-$$"
export CHAOS_RUN="$run"
echo "start $run $$ $(date +%s%N) $MAINTENANCE_FENCING_TOKEN $MAINTENANCE_TO_VERSION $1 $CHAOS_REPLICA $CHAOS_DEF" >> "$CHAOS_LOG"
if [ "$CHAOS_IGNORE_TERM" = 1 ]; then trap '' TERM; fi
gc=
if [ "$CHAOS_FORK" = 1 ]; then
  sh -c 'while :; do echo "beat $CHAOS_RUN $$ $(date +%s%N)" >> "$CHAOS_LOG"; sleep 0.1; done' &
  gc=$!
fi
if [ "$CHAOS_ORPHAN" = 1 ]; then
  ( env -i PATH="$PATH" CHAOS_LOG="$CHAOS_LOG" CHAOS_RUN="$run" sh -c 'while :; do echo "orphan $CHAOS_RUN $$ $(date +%s%N)" >> "$CHAOS_LOG"; sleep 0.1; done' & )
fi
i=0
while [ "$i" -lt "$CHAOS_BEATS" ]; do
  echo "beat $run $$ $(date +%s%N)" >> "$CHAOS_LOG"
  sleep 0.1
  i=$((i+1))
done
if [ -n "$gc" ]; then kill -9 "$gc"; wait "$gc" 2>/dev/null; fi
echo "end $run $$ $(date +%s%N) $MAINTENANCE_FENCING_TOKEN $MAINTENANCE_TO_VERSION $1 $CHAOS_REPLICA $CHAOS_DEF" >> "$CHAOS_LOG"
`

// writeTaskFile writes the round's task file (JSON, read as YAML) into dir and returns its path.
func writeTaskFile(dir string, r round) (string, error) {
	type execTask struct {
		Command     []string          `json:"command"`
		Env         map[string]string `json:"env"`
		GracePeriod string            `json:"grace_period"`
	}
	type task struct {
		Name string            `json:"name"`
		Exec execTask          `json:"exec"`
		When map[string]string `json:"when,omitempty"`
	}
	var list struct {
		Tasks []task `json:"tasks"`
	}
	flag := map[bool]string{true: "1", false: "0"}
	for _, t := range r.tasks {
		tk := task{Name: t.name, Exec: execTask{Command: []string{"sh", "-c", taskScript, "task", t.name},
			Env: map[string]string{"CHAOS_BEATS": strconv.Itoa(t.beats), "CHAOS_IGNORE_TERM": flag[t.ignoreTerm], "CHAOS_FORK": flag[t.fork],
				"CHAOS_DEF": strconv.Itoa(t.def), "CHAOS_ORPHAN": flag[t.orphan]},
			GracePeriod: r.grace.String()}}
		if t.when {
			tk.When = map[string]string{"from": "<1000.0.0"}
		}
		list.Tasks = append(list.Tasks, tk)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return "", err
	}
	// Written aside and renamed, so that a replica starting meanwhile reads the old file or the new one.
	path := filepath.Join(dir, "tasks.json")
	if err := os.WriteFile(path+".new", b, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(path+".new", path)
}

// replica is one gate process of a round.
type replica struct {
	name string
	slot int
	cmd  *exec.Cmd
	done chan struct{}

	mu     sync.Mutex
	killed bool // we sent SIGKILL
	termed bool // we sent SIGTERM
	exit   int  // exit code, -1 when ended by a signal
	signal syscall.Signal
	ended  time.Time
}

// startReplica starts the gate binary with env, its output in dir/<name>.log.
func startReplica(bin, dir, name string, slot int, env []string) (*replica, error) {
	out, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(env, "MAINTENANCE_HOLDER="+name, "CHAOS_REPLICA="+name)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	p := &replica{name: name, slot: slot, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		out.Close()
		p.mu.Lock()
		p.ended = time.Now()
		p.exit = cmd.ProcessState.ExitCode()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.signal = ws.Signal()
			}
		}
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// send signals the replica unless it has exited, remembering the signals that explain its end.
func (p *replica) send(sig syscall.Signal) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	p.mu.Lock()
	switch sig {
	case syscall.SIGKILL:
		p.killed = true
	case syscall.SIGTERM:
		p.termed = true
	}
	p.mu.Unlock()
	return p.cmd.Process.Signal(sig) == nil
}

func (p *replica) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// documented are the exit codes of DESIGN.md section 6.
var documented = map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 130: true, 143: true}

// exitProblem says what is wrong with how the replica ended, or "" when it ended as documented.
func (p *replica) exitProblem() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.signal == syscall.SIGKILL && p.killed:
		return ""
	case p.signal != 0:
		return fmt.Sprintf("replica %s ended by signal %s, which the gate should have turned into an exit code", p.name, p.signal)
	case !documented[p.exit]:
		return fmt.Sprintf("replica %s exited %d, not a documented exit code", p.name, p.exit)
	case p.exit == 143 && !p.termed:
		return fmt.Sprintf("replica %s exited 143 without a SIGTERM", p.name)
	}
	return ""
}

func (p *replica) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signal != 0 {
		return fmt.Sprintf("%s: %s", p.name, p.signal)
	}
	return fmt.Sprintf("%s: exit %d", p.name, p.exit)
}
