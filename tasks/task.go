// Package tasks defines the maintenance tasks the gate runs: the Task interface, the registry of kinds,
// and the loading and validation of task files. Each kind lives in a file of its own and registers
// itself; the runner never knows which kinds exist.
package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// DefaultTimeout bounds a task that sets no timeout of its own.
const DefaultTimeout = 10 * time.Minute

// Env is what a running task may know of its run.
type Env struct {
	// FromVersion is the recorded version, empty on a fresh install.
	FromVersion string
	// ToVersion is the version being installed.
	ToVersion string
	// FencingToken is the holder's fencing token; tasks pass it on so that stores can refuse stale writers.
	FencingToken int64
	// Getenv reads the process environment.
	Getenv func(string) string
	// Logger carries the task's name.
	Logger *slog.Logger
	// Redis is the gate's own Redis connection.
	Redis redis.UniversalClient
	// GateTag is the hash tag of the gate's own keys ({prefix:name}); tasks must not touch keys under it.
	GateTag string
	// LockTTL is MAINTENANCE_LOCK_TTL: an sql task's transaction may not sit idle for longer (zero: 30s).
	LockTTL time.Duration
	// LockLost is closed when the holder's lock is lost or no longer surely held: whatever the task
	// still runs must stop at once, without a grace period (nil: never).
	LockLost <-chan struct{}
	// Lease returns the time until which the holder's lock is surely held, and a channel closed when
	// that changes (a refresh that worked). An exec task's supervisor kills the task's tree when the
	// lease runs out, whatever the gate does. Nil: no lease.
	Lease func() (time.Time, <-chan struct{})
}

// Task is one configured unit of maintenance work. Run must return when ctx is done.
type Task interface {
	Run(ctx context.Context, env Env) error
}

// Spec is one entry of a task list: the common fields and the kind's Task.
type Spec struct {
	Name    string
	Kind    string
	Timeout time.Duration
	When    When
	Task    Task
	// Digest identifies the definition as loaded (kind, the kind's fields, when, timeout, and the files
	// an sql task read): a progress mark made under another digest does not count as done.
	Digest string
}

// Decoder builds a Task from a kind's YAML node. It returns every problem it finds as a FieldError
// (field relative to the kind, like "command"), joined with errors.Join. Everything that can be checked
// before a lock is taken (files readable, variables set, patterns allowed) is checked here.
type Decoder func(node *yaml.Node, lc LoadContext) (Task, error)

// LoadContext is what a decoder may consult while loading.
type LoadContext struct {
	// Getenv reads the process environment.
	Getenv func(string) string
	// GateTag is the hash tag of the gate's own keys ({prefix:name}).
	GateTag string
	// Context bounds the reading of files (task file, SQL files): cancelling it stops a read. Nil
	// is context.Background().
	Context context.Context
}

// ctx returns the load's context.
func (lc LoadContext) ctx() context.Context {
	if lc.Context == nil {
		return context.Background()
	}
	return lc.Context
}

var kinds = map[string]Decoder{}

// Register adds a kind. It is called from the init function of the kind's file.
func Register(kind string, decode Decoder) {
	if _, dup := kinds[kind]; dup {
		panic("tasks: kind registered twice: " + kind)
	}
	kinds[kind] = decode
}

// Kinds lists the registered kinds in order.
func Kinds() []string {
	ks := make([]string, 0, len(kinds))
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// FieldError is a problem with one field of one task.
type FieldError struct {
	Task  string // task name, or "#N" when the task has no usable name
	Field string // dotted path, e.g. "exec.command"
	// Line and Column place the problem in the task file (1-based); zero when not known yet: the
	// loader places a kind decoder's problem at its field.
	Line, Column int
	Problem      string
}

func (e *FieldError) Error() string {
	problem := e.Problem
	if e.Line > 0 {
		problem = fmt.Sprintf("line %d column %d: %s", e.Line, e.Column, e.Problem)
	}
	if e.Field == "" {
		return fmt.Sprintf("task %s: %s", e.Task, problem)
	}
	return fmt.Sprintf("task %s: %s: %s", e.Task, e.Field, problem)
}

// Fieldf returns a FieldError for a kind decoder; the loader fills in the task name and prefixes the kind.
func Fieldf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// decodeKind decodes a kind's mapping into v with DecodeStrict. Unknown fields and wrong types are
// reported, and decoding goes on, so that the caller can still check the other fields and report
// every problem at once; ok is false only when node is not a mapping at all.
func decodeKind(node *yaml.Node, v any) (errs []error, ok bool) {
	if target(node).Kind != yaml.MappingNode {
		return []error{at(node, "", "expected a mapping")}, false
	}
	if err := DecodeStrict(node, v); err != nil {
		return []error{err}, true
	}
	return nil, true
}

// getenv reads the environment through lc.Getenv, or finds nothing when it is not set.
func (lc LoadContext) getenv(name string) string {
	if lc.Getenv != nil {
		return lc.Getenv(name)
	}
	return ""
}
