package runner

import (
	"errors"
	"fmt"
)

// Sentinel errors the caller maps to exit codes (DESIGN.md section 6).
var (
	// ErrTaskFailed: a task failed, or one failed for this version within the failure cooldown (exit 1).
	ErrTaskFailed = errors.New("runner: task failed")
	// ErrConfig: a configuration problem found after loading, such as a version a task's constraint
	// cannot evaluate (exit 2).
	ErrConfig = errors.New("runner: configuration error")
	// ErrAuth: Redis refused the credentials or the permissions (exit 2).
	ErrAuth = errors.New("runner: Redis authentication failed")
	// ErrUnreachable: Redis did not answer within MAINTENANCE_CONNECT_TIMEOUT (exit 3).
	ErrUnreachable = errors.New("runner: Redis unreachable")
	// ErrWaitTimeout: another replica's run did not finish within MAINTENANCE_WAIT_TIMEOUT (exit 3).
	ErrWaitTimeout = errors.New("runner: timed out waiting for another replica")
	// ErrDowngrade: the recorded version is newer and MAINTENANCE_DOWNGRADE=fail (exit 5).
	ErrDowngrade = errors.New("runner: downgrade refused")
)

// TaskError is a failed task.
type TaskError struct {
	Task string
	Err  error
}

func (e *TaskError) Error() string { return fmt.Sprintf("task %s failed: %v", e.Task, e.Err) }

// Unwrap returns ErrTaskFailed and the task's own error.
func (e *TaskError) Unwrap() []error { return []error{ErrTaskFailed, e.Err} }
