package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the Sentinel topology monitors its master under.
const MasterName = "mymaster"

// Sentinel is a master, one replica of it and one sentinel monitoring them, all owned by the test.
type Sentinel struct {
	t       testing.TB
	Master  *Server
	Replica *Server
	// Sentinel is the redis-server --sentinel process.
	Sentinel *Server
}

// StartSentinel starts the three processes and waits until the replica is in sync and the sentinel
// knows it, so that a failover can promote it.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	// No 5s pause before the diskless full sync that the replica (and a demoted master) starts with.
	master := Start(t, "--repl-diskless-sync-delay", "0")
	replica := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port), "--repl-diskless-sync-delay", "0")
	port := FreePort(t)
	s := &Server{t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
	conf := filepath.Join(s.Dir, "sentinel.conf")
	body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 2000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, s.Dir, filepath.Join(s.Dir, "redis.log"), MasterName, master.Port, MasterName, MasterName, MasterName)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s.args = []string{conf, "--sentinel"}
	t.Cleanup(s.Kill)
	s.start()
	st := &Sentinel{t: t, Master: master, Replica: replica, Sentinel: s}
	ctx := context.Background()
	Eventually(t, 30*time.Second, func() bool { return st.replicaReady(ctx) },
		"the sentinel did not see the replica %s in sync within 30s", replica.Addr)
	// A replica reported up after a diskless sync gets the command stream only after its first
	// REPLCONF ACK, up to a second later: a failover before that would lose every write. Wait until
	// a write reaches it.
	if err := master.Client().Set(ctx, "redistest:replication-check", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rc := replica.Client()
	Eventually(t, 30*time.Second, func() bool { return rc.Get(ctx, "redistest:replication-check").Val() == "1" },
		"the replica %s did not receive a write within 30s", replica.Addr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sentinel log:\n%s", st.Log())
		}
	})
	return st
}

// replicaReady reports whether some replica known to the sentinel is in sync with its master.
func (s *Sentinel) replicaReady(ctx context.Context) bool {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer sc.Close()
	replicas, err := sc.Replicas(ctx, MasterName).Result()
	if err != nil {
		return false
	}
	for _, r := range replicas {
		if r["master-link-status"] == "ok" && r["flags"] == "slave" {
			return true
		}
	}
	return false
}

// Log returns the sentinel's log file.
func (s *Sentinel) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Sentinel.Dir, "redis.log"))
	return string(b)
}

// URL returns redis://<sentinel>?master_name=mymaster.
func (s *Sentinel) URL() string {
	return fmt.Sprintf("redis://%s?master_name=%s", s.Sentinel.Addr, MasterName)
}

// MasterAddr returns the master's address as the sentinel reports it.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	return a[0] + ":" + a[1], nil
}

// Client returns a client that follows the sentinel to the current master, closed when the test ends.
func (s *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: []string{s.Sentinel.Addr}})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Failover asks the sentinel to promote the replica (SENTINEL FAILOVER, retried while the sentinel
// finds no replica good enough yet), waits for its +switch-master event, which is when clients
// switch, and then makes the old master a replica of the new one. Sentinel does that last step
// itself only at its next check of the old master, up to 10s later; until then the old master still
// accepts writes that the failover will discard. Failover returns the new master.
func (s *Sentinel) Failover() *Server {
	s.t.Helper()
	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer sc.Close()
	events := sc.Subscribe(ctx, "+switch-master")
	defer events.Close()
	if _, err := events.Receive(ctx); err != nil {
		s.t.Fatalf("sentinel: subscribe to +switch-master: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := sc.Failover(ctx, MasterName).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("SENTINEL FAILOVER kept failing for 30s: %v", err)
		}
	}
	var promoted, demoted *Server
	select {
	case m := <-events.Channel():
		// "<name> <old ip> <old port> <new ip> <new port>"
		f := strings.Fields(m.Payload)
		for _, c := range []*Server{s.Master, s.Replica} {
			if len(f) == 5 && c.Addr == f[3]+":"+f[4] {
				promoted = c
			} else {
				demoted = c
			}
		}
		if promoted == nil {
			s.t.Fatalf("sentinel switched to an unknown master: %s", m.Payload)
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("the sentinel did not switch the master within 30s; its log:\n%s", s.Log())
	}
	cl := demoted.Client()
	if err := cl.SlaveOf(ctx, "127.0.0.1", strconv.Itoa(promoted.Port)).Err(); err != nil {
		s.t.Fatalf("make the old master a replica: %v", err)
	}
	return promoted
}
