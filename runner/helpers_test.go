package runner

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/logtest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// funcTask is a task written in Go, so that tests can block, count and fail tasks at will.
type funcTask func(ctx context.Context, env tasks.Env) error

func (f funcTask) Run(ctx context.Context, env tasks.Env) error { return f(ctx, env) }

func spec(name string, f funcTask) tasks.Spec {
	return tasks.Spec{Name: name, Kind: "test", Timeout: time.Minute, Task: f, Digest: "test:" + name}
}

// counter counts task runs per name.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) task(name string, err error) tasks.Spec {
	return spec(name, func(context.Context, tasks.Env) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n == nil {
			c.n = map[string]int{}
		}
		c.n[name]++
		return err
	})
}

func (c *counter) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// syncBuffer is a log sink safe for concurrent writes.
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

type harness struct {
	t    *testing.T
	srv  *redistest.Server
	rdb  *redis.Client
	keys keys.Keys
	env  map[string]string
}

func TestMain(m *testing.M) {
	redisconn.SetLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// newHarness starts a redis-server and returns the environment of a gate on it.
func newHarness(t *testing.T) *harness {
	srv := redistest.Start(t)
	h := &harness{t: t, srv: srv, rdb: srv.Client(), env: map[string]string{
		"PEERDB_DEPLOYMENT_VERSION":    "1.1.0",
		"REDIS_URL":                    srv.URL(),
		"MAINTENANCE_HOLDER":           "test-holder",
		"MAINTENANCE_LOCK_TTL":         "2s",
		"MAINTENANCE_WAIT_TIMEOUT":     "20s",
		"MAINTENANCE_CONNECT_TIMEOUT":  "5s",
		"MAINTENANCE_FAILURE_COOLDOWN": "0",
		"MAINTENANCE_TERMINATION_LOG":  "",
		"LOG_LEVEL":                    "debug",
	}}
	h.keys = keys.For("peerdb:maintenance", "default")
	return h
}

// runner builds a runner from the harness environment plus overrides.
func (h *harness) runner(specs []tasks.Spec, override ...string) (*Runner, *syncBuffer) {
	h.t.Helper()
	env := map[string]string{}
	for k, v := range h.env {
		env[k] = v
	}
	for i := 0; i+1 < len(override); i += 2 {
		env[override[i]] = override[i+1]
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		h.t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	r := New(cfg, Options{Specs: specs, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Out: logs})
	h.t.Cleanup(func() {
		_ = r.Close()
		logtest.CheckLines(h.t, logs.String())
	})
	return r, logs
}

func (h *harness) get(key string) string {
	v, err := h.rdb.Get(context.Background(), key).Result()
	if err != nil && err != redis.Nil {
		h.t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

func (h *harness) setVersion(v string) {
	if err := h.rdb.Set(context.Background(), h.keys.Version, v, 0).Err(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) history() []Entry {
	msgs, err := h.rdb.XRevRange(context.Background(), h.keys.History, "+", "-").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []Entry
	for _, m := range msgs {
		out = append(out, entryFromStream(m))
	}
	return out
}

func (h *harness) exists(key string) bool {
	n, err := h.rdb.Exists(context.Background(), key).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return n == 1
}

// holdLockExternally sets the lock key as another holder would, and returns its value.
func (h *harness) holdLockExternally(ttl time.Duration) string {
	v := `othertoken00000000000000{"holder":"other-pod","version":"1.1.0","started":"2026-01-01T00:00:00Z"}`
	if err := h.rdb.Set(context.Background(), h.keys.Lock, v, ttl).Err(); err != nil {
		h.t.Fatal(err)
	}
	return v
}

type runResult struct {
	res Result
	err error
}

// start runs r in the background.
func start(ctx context.Context, r *Runner) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		res, err := r.Run(ctx)
		ch <- runResult{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s")
		return runResult{}
	}
}
