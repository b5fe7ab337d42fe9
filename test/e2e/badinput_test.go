package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// Every environment variable, malformed every way we could think of, through the built binary: exit 2,
// the error names the variable, and the gate has not said a word to Redis.

// silentRedis listens where REDIS_URL points and counts the connections it is offered.
func silentRedis(t *testing.T) (addr string, connections *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	connections = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connections.Add(1)
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), connections
}

func TestEveryMalformedVariableExits2NamingIt(t *testing.T) {
	addr, connections := silentRedis(t)
	files := redistest.WriteTLSFiles(t, t.TempDir())
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tls := "rediss://" + addr + "/0"
	cases := []struct {
		variable, value string
		also            []string // other variables the case needs, name then value
	}{
		{"PEERDB_DEPLOYMENT_VERSION", "", nil},
		{"PEERDB_DEPLOYMENT_VERSION", "1.0 beta", nil},
		{"PEERDB_DEPLOYMENT_VERSION", "v1\n2", nil},
		{"PEERDB_DEPLOYMENT_VERSION", "1.0.0\x1b[2J", nil},
		{"PEERDB_DEPLOYMENT_VERSION", "1.0.0\u202e", nil},
		{"PEERDB_DEPLOYMENT_VERSION", strings.Repeat("9", 201), nil},
		{"REDIS_URL", "http://" + addr, nil},
		{"REDIS_URL", "redis//" + addr, nil},
		{"REDIS_URL", "redis://127.0.0.1:sixthree/0", nil},
		{"REDIS_URL", "redis://127.0.0.1:99999/0", nil},
		{"REDIS_URL", "redis://127.0.0.1:0/0", nil},
		{"REDIS_URL", "redis://" + addr + "/zero", nil},
		{"REDIS_URL", "redis://" + addr + "/0/1", nil},
		{"REDIS_URL", "redis://" + addr + "/0?colour=blue", nil},
		{"REDIS_URL", "redis://" + addr + "/0?dial_timeout=soon", nil},
		{"REDIS_URL", "rediss://" + addr + "/0?skip_verify=maybe", nil},
		{"REDIS_URL", "redis://[::1/0", nil},
		{"REDIS_URL", "redis://:pa/ss@" + addr + "/0", nil},
		{"REDIS_URL", "redis://" + addr + "?addr=" + addr + "&addr=nohost", []string{"REDIS_MODE", "cluster"}},
		{"REDIS_URL", "redis://" + addr, []string{"REDIS_MODE", "sentinel"}},
		{"REDIS_URL", "unix:///run/redis.sock?master_name=m", nil},
		{"REDIS_MODE", "replica", nil},
		{"REDIS_MODE", "Cluster", nil},
		{"REDIS_CA_FILE", filepath.Join(dir, "missing.pem"), []string{"REDIS_URL", tls}},
		{"REDIS_CA_FILE", notPEM, []string{"REDIS_URL", tls}},
		{"REDIS_CA_FILE", dir, []string{"REDIS_URL", tls}},
		{"REDIS_CA_FILE", "/dev/zero", []string{"REDIS_URL", tls}},
		{"REDIS_CA_FILE", files.CA, nil}, // with a plain redis:// URL
		{"REDIS_CERT_FILE", files.ClientCert, []string{"REDIS_URL", "redis://" + addr}},
		{"REDIS_CERT_FILE", notPEM, []string{"REDIS_URL", tls, "REDIS_KEY_FILE", files.ClientKey}},
		{"REDIS_CERT_FILE", files.ClientCert, []string{"REDIS_URL", tls, "REDIS_KEY_FILE", files.ServerKey}}, // not its key
		{"REDIS_KEY_FILE", "", []string{"REDIS_URL", tls, "REDIS_CERT_FILE", files.ClientCert}},
		{"REDIS_CERT_FILE", "", []string{"REDIS_URL", tls, "REDIS_KEY_FILE", files.ClientKey}},
		{"MAINTENANCE_NAME", "pre upgrade", nil},
		{"MAINTENANCE_NAME", "a/b", nil},
		{"MAINTENANCE_NAME", "{tag}", nil},
		{"MAINTENANCE_NAME", strings.Repeat("n", 65), nil},
		{"MAINTENANCE_KEY_PREFIX", "acme:{gate}", nil},
		{"MAINTENANCE_KEY_PREFIX", "acme gate", nil},
		{"MAINTENANCE_KEY_PREFIX", strings.Repeat("p", 129), nil},
		{"MAINTENANCE_TASKS_FILE", filepath.Join(dir, "missing.yaml"), nil},
		{"MAINTENANCE_TASKS_FILE", dir, nil},
		{"MAINTENANCE_LOCK_TTL", "soon", nil},
		{"MAINTENANCE_LOCK_TTL", "30", nil},
		{"MAINTENANCE_LOCK_TTL", "500ms", nil},
		{"MAINTENANCE_LOCK_TTL", "0", nil},
		{"MAINTENANCE_LOCK_TTL", "-30s", nil},
		{"MAINTENANCE_LOCK_TTL", "9999999999h", nil},
		{"MAINTENANCE_WAIT_TIMEOUT", "forever", nil},
		{"MAINTENANCE_WAIT_TIMEOUT", "0s", nil},
		{"MAINTENANCE_WAIT_TIMEOUT", "-5m", nil},
		{"MAINTENANCE_CONNECT_TIMEOUT", "2 minutes", nil},
		{"MAINTENANCE_CONNECT_TIMEOUT", "0", nil},
		{"MAINTENANCE_FORCE", "yes", nil},
		{"MAINTENANCE_DOWNGRADE", "allow", nil},
		{"MAINTENANCE_DOWNGRADE", "SKIP", nil},
		{"MAINTENANCE_FAILURE_COOLDOWN", "-1s", nil},
		{"MAINTENANCE_FAILURE_COOLDOWN", "a while", nil},
		{"MAINTENANCE_DRY_RUN", "maybe", nil},
		{"MAINTENANCE_HOLDER", "pod-a\nversion: 9.9.9", nil},
		{"MAINTENANCE_HOLDER", strings.Repeat("h", 254), nil},
		{"POD_NAME", "flow-worker-0\tx", nil},
		{"LOG_FORMAT", "xml", nil},
		{"LOG_LEVEL", "verbose", nil},
		{"LOG_LEVEL", "debug+2", nil},
	}
	for _, c := range cases {
		t.Run(c.variable+"="+strconv.Quote(truncate(c.value)), func(t *testing.T) {
			env := map[string]string{"PEERDB_DEPLOYMENT_VERSION": "2.0.0", "REDIS_URL": "redis://" + addr + "/0",
				"MAINTENANCE_CONNECT_TIMEOUT": "1s", c.variable: c.value}
			for i := 0; i+1 < len(c.also); i += 2 {
				env[c.also[i]] = c.also[i+1]
			}
			if c.value == "" {
				delete(env, c.variable)
			}
			r := runGate(t, env)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, c.variable) {
				t.Errorf("the error does not name %s:\n%s", c.variable, r.stderr)
			}
		})
	}
	t.Run("every bad variable at once is named in one error", func(t *testing.T) {
		env := map[string]string{"REDIS_URL": tls} // a good URL, so that the TLS files are judged too
		var want []string
		for _, c := range cases {
			if _, set := env[c.variable]; !set && c.value != "" && c.variable != "MAINTENANCE_TASKS_FILE" {
				env[c.variable] = c.value
				want = append(want, c.variable)
			}
		}
		r := runGate(t, env)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("exit %d, want 2 and one line:\n%s", r.code, r.stderr)
		}
		for _, v := range append(want, "PEERDB_DEPLOYMENT_VERSION") {
			if !strings.Contains(r.stderr, v) {
				t.Errorf("the error does not name %s", v)
			}
		}
	})
	if n := connections.Load(); n != 0 {
		t.Errorf("the gate connected to Redis %d times with a bad configuration", n)
	}
}

func truncate(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// REDIS_MODE=cluster against a Redis without cluster support is a configuration mistake, not an
// unreachable Redis: exit 2 at once, naming the variable, rather than exit 3 after the connect timeout.
func TestClusterModeAgainstAStandaloneRedisExits2NamingREDIS_MODE(t *testing.T) {
	srv := redistest.Start(t)
	r := runGate(t, map[string]string{"PEERDB_DEPLOYMENT_VERSION": "2.0.0", "REDIS_URL": srv.URL(), "REDIS_MODE": "cluster",
		"MAINTENANCE_CONNECT_TIMEOUT": "20s"})
	if r.code != 2 || !strings.Contains(r.stderr, "REDIS_MODE") {
		t.Fatalf("exit %d, want 2 naming REDIS_MODE:\n%s", r.code, r.stderr)
	}
	if getKey(t, srv, gateKeys.Lock) != "" || getKey(t, srv, gateKeys.Version) != "" {
		t.Error("a refused run left a lock or recorded")
	}
}
