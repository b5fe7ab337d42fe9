package runner

import (
	"errors"
	"fmt"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
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
	// ErrRedisRefused: Redis refused a command whatever its state: a key of the wrong type, an unknown,
	// renamed or disabled command, a corrupted fencing counter (exit 2).
	ErrRedisRefused = errors.New("runner: Redis refused a command")
	// ErrRedisUnwritable: Redis refuses writes: a read-only replica, out of memory, a failed save (exit 3).
	ErrRedisUnwritable = errors.New("runner: Redis refuses writes")
	// ErrUnreachable: Redis did not answer within MAINTENANCE_CONNECT_TIMEOUT (exit 3).
	ErrUnreachable = errors.New("runner: Redis unreachable")
	// ErrWaitTimeout: another replica's run did not finish within MAINTENANCE_WAIT_TIMEOUT (exit 3).
	ErrWaitTimeout = errors.New("runner: timed out waiting for another replica")
	// ErrMalformedReply: what answered at REDIS_URL sent a reply that is not the Redis protocol (exit 2).
	ErrMalformedReply = errors.New("runner: Redis sent a reply that cannot be read")
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

// refusal is err as a refusal no retry can change: refused credentials or a permission missing (ErrAuth),
// or a permanent Redis error (see permanent); nil when err is neither.
func refusal(what string, err error) error {
	if redisconn.IsAuthError(err) {
		return fmt.Errorf("%w: %s: %v", ErrAuth, what, err)
	}
	return permanent(what, err)
}

// permanent returns the error to end the run with when err is a Redis error no retry can cure
// (invariant 6), naming it with the server's own words; nil when err may be transient.
func permanent(what string, err error) error {
	if errors.Is(err, redisconn.ErrMalformedReply) {
		return fmt.Errorf("%w: %s: %v", ErrMalformedReply, what, err)
	}
	if errors.Is(err, lock.ErrCorruptFence) {
		return fmt.Errorf("%w: %s: %v", ErrRedisRefused, what, err)
	}
	switch redisconn.Classify(err) {
	case redisconn.Unwritable:
		return fmt.Errorf("%w: %s: Redis is read-only, full or short of replicas, the gate cannot write its lock or record: %v", ErrRedisUnwritable, what, err)
	case redisconn.Refused:
		if redisconn.IsAuthError(err) {
			return fmt.Errorf("%w: %s: %v", ErrAuth, what, err)
		}
		if redisconn.IsRedirect(err) {
			return fmt.Errorf("%w: %s: %v (a Redis Cluster node: set REDIS_MODE=cluster)", ErrRedisRefused, what, err)
		}
		if redisconn.IsNotACluster(err) {
			return fmt.Errorf("%w: %s: %v (not a Redis Cluster: leave REDIS_MODE unset, or set it to sentinel behind Sentinel)", ErrRedisRefused, what, err)
		}
		return fmt.Errorf("%w: %s: %v", ErrRedisRefused, what, err)
	}
	return nil
}
