package tasks

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// gateKeys are keys of the gate itself, which no redis task may remove.
var gateKeys = []string{DefaultGateTag + ":version", DefaultGateTag + ":lock", DefaultGateTag + ":fence"}

func loadRedis(t *testing.T, yaml string) *Redis {
	t.Helper()
	specs, err := Parse([]byte("tasks:\n  - name: cache\n    redis: "+yaml+"\n"), "test", LoadContext{GateTag: DefaultGateTag})
	if err != nil {
		t.Fatal(err)
	}
	return specs[0].Task.(*Redis)
}

func TestRedisUnlinkRemovesMatchingKeysInBatchesAndLogsTheCount(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client()
	for i := range 250 {
		c.Set(ctx, "peerdb:ui:cache:"+strconv.Itoa(i), "x", 0)
	}
	c.Set(ctx, "peerdb:ui:session:1", "keep", 0)
	for _, k := range gateKeys {
		c.Set(ctx, k, "keep", 0)
	}
	task := loadRedis(t, `{unlink: ["peerdb:ui:cache:*", "peerdb:nothing:*"], batch: 100}`)
	env, log := runEnv(t, nil)
	env.Redis = c
	if err := task.Run(ctx, env); err != nil {
		t.Fatal(err)
	}
	if n := c.DBSize(ctx).Val(); n != int64(1+len(gateKeys)) {
		t.Fatalf("%d keys left, want the session key and the gate's %d keys", n, len(gateKeys))
	}
	for _, want := range []string{`pattern=peerdb:ui:cache:* count=250`, `pattern=peerdb:nothing:* count=0`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestRedisUnlinkOnClusterRemovesMatchingKeysFromEveryMaster(t *testing.T) {
	ctx := context.Background()
	a, _ := startClusterNode(t)
	b, bBus := startClusterNode(t)
	ca, cb := a.Client(), b.Client()
	if err := ca.ClusterAddSlotsRange(ctx, 0, 8191).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cb.ClusterAddSlotsRange(ctx, 8192, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	if err := ca.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", b.Port, bBus).Err(); err != nil {
		t.Fatal(err)
	}
	clusterOK := func() bool {
		for _, c := range []*redis.Client{ca, cb} {
			info := c.ClusterInfo(ctx).Val()
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:2") {
				return false
			}
		}
		return true
	}
	redistest.Eventually(t, 20*time.Second, clusterOK, "the two-master cluster never formed")
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{a.Addr, b.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	for i := range 100 {
		if err := cc.Set(ctx, "peerdb:ui:cache:"+strconv.Itoa(i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range append(gateKeys, "peerdb:ui:session:1") {
		if err := cc.Set(ctx, k, "keep", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if ca.DBSize(ctx).Val() == 0 || cb.DBSize(ctx).Val() == 0 {
		t.Fatal("the keys should be spread over both masters")
	}
	task := loadRedis(t, `{unlink: ["peerdb:ui:cache:*"], batch: 10}`)
	env, log := runEnv(t, nil)
	env.Redis = cc
	if err := task.Run(ctx, env); err != nil {
		t.Fatal(err)
	}
	if left := ca.DBSize(ctx).Val() + cb.DBSize(ctx).Val(); left != int64(len(gateKeys)+1) {
		t.Fatalf("%d keys left over both masters, want the gate's %d and the session key", left, len(gateKeys))
	}
	if !strings.Contains(log.String(), "count=100") {
		t.Errorf("log lacks count=100:\n%s", log)
	}
}

// startClusterNode starts an empty cluster node and returns it with its cluster bus port (set
// explicitly: the default, port+10000, may be beyond 65535 for an ephemeral port).
func startClusterNode(t *testing.T) (*redistest.Server, int) {
	bus := redistest.FreePort(t)
	return redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(bus)), bus
}

func TestRedisUnreachableServerFailsWithTheConnectionError(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	srv.Kill()
	task := loadRedis(t, `{unlink: ["peerdb:ui:*"]}`)
	env, _ := runEnv(t, nil)
	env.Redis = c
	err := task.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want a refused connection, got %v", err)
	}
}

func TestRedisCancelledContextStopsWithItsCause(t *testing.T) {
	c := redistest.Start(t).Client()
	task := loadRedis(t, `{unlink: ["peerdb:ui:*"]}`)
	env, _ := runEnv(t, nil)
	env.Redis = c
	ctx, cancel := context.WithCancelCause(context.Background())
	sigterm := errors.New("interrupted by SIGTERM")
	cancel(sigterm)
	if err := task.Run(ctx, env); !errors.Is(err, sigterm) {
		t.Fatalf("want the context's cause, got %v", err)
	}
}

func TestRedisPatternsThatCouldMatchTheGateKeysAreRefused(t *testing.T) {
	tag := "{peerdb:maintenance:default}"
	cases := []struct {
		pattern string
		refused bool
	}{
		{"*", true},
		{"{*", true},
		{"{peerdb*", true},
		{"?peerdb:*", true},
		{"[{]peerdb:maintenance:default}:*", true},
		{"[^a]peerdb:maintenance:*", true},
		{"{peerdb:maintenance:[a-z]efault}:lock", true},
		{"{peerdb:maintenance:default}:version", true},
		{"*:version", true},
		{"\\{peerdb:*", true},
		{"peerdb:ui:cache:*", false},
		{"{peerdb:maintenance:other}:*", false},
		{"[^{]*", false},
		{"{peerdb:cache}:*", false},
		{"\\*", false},
		{"{peerdb:maintenance:default", false}, // a key equal to "{peerdb:maintenance:default" cannot start with the tag
	}
	for _, c := range cases {
		if got := globCouldMatchPrefix(c.pattern, tag); got != c.refused {
			t.Errorf("pattern %q: could match %s… = %t, want %t", c.pattern, tag, got, c.refused)
		}
	}
	// The check follows the gate's own tag, given by the loader.
	_, err := Parse([]byte("tasks:\n  - name: cache\n    redis: {unlink: [\"{gates:pre}:*\"]}\n"), "test", LoadContext{GateTag: "{gates:pre}"})
	if err == nil || !strings.Contains(err.Error(), "could match the gate's own keys") {
		t.Errorf("a pattern on another gate's tag should be refused for that gate: %v", err)
	}
}

func TestRedisGlobCheckAgreesWithRedisItself(t *testing.T) {
	// The automaton must never call a pattern safe when Redis would match one of the gate's keys.
	ctx := context.Background()
	c := redistest.Start(t).Client()
	keys := append(gateKeys, "peerdb:ui:cache:1", "{peerdb:other}:x")
	for _, k := range keys {
		c.Set(ctx, k, "x", 0)
	}
	patterns := []string{"*", "{*", "*lock", "[{]*", "[^p]*", "?peerdb*", "\\{*", "peerdb:*", "{peerdb:o*", "*:[a-f]ence", "*[!]*"}
	for _, p := range patterns {
		var matched []string
		iter := c.Scan(ctx, 0, p, 100).Iterator()
		for iter.Next(ctx) {
			matched = append(matched, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range matched {
			if strings.HasPrefix(k, DefaultGateTag) && !globCouldMatchPrefix(p, DefaultGateTag) {
				t.Errorf("Redis matches gate key %q with %q, but the load-time check allows the pattern", k, p)
			}
		}
	}
}
