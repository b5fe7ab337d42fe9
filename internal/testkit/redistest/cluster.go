package redistest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is a Redis Cluster of masters only, each a redis-server owned by the test.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts n masters with cluster mode on, splits the hash slots evenly among them, joins
// them with CLUSTER MEET and waits until every node reports cluster_state:ok. It needs no redis-cli.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Binary(t)
	c := &Cluster{t: t}
	for range n {
		port := freeClusterPort(t)
		s := &Server{t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
		s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.Dir, "--logfile", filepath.Join(s.Dir, "redis.log"),
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}
		t.Cleanup(s.Kill)
		s.start()
		c.Nodes = append(c.Nodes, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, s := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr})
		args := []any{"cluster", "addslots"}
		for slot := i * clusterSlots / n; slot < (i+1)*clusterSlots/n; slot++ {
			args = append(args, slot)
		}
		err := cl.Do(ctx, args...).Err()
		if err == nil && i > 0 {
			err = cl.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.Nodes[0].Port)).Err()
		}
		_ = cl.Close()
		if err != nil {
			t.Fatalf("cluster node %s: %v", s.Addr, err)
		}
	}
	Eventually(t, 30*time.Second, func() bool { return c.healthy(ctx) },
		"the cluster did not reach cluster_state:ok with %d known nodes within 30s", n)
	return c
}

// healthy reports whether every node sees the whole cluster and every slot served.
func (c *Cluster) healthy(ctx context.Context) bool {
	for _, s := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr})
		info, err := cl.ClusterInfo(ctx).Result()
		_ = cl.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") ||
			!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r", len(c.Nodes))) {
			return false
		}
	}
	return true
}

// freeClusterPort returns a free loopback port whose cluster bus port (port + 10000) is free too.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := FreePort(t)
		if port+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	t.Fatal("no free port pair (port, port+10000) for a cluster node")
	return 0
}

// URL returns redis://<first node>?addr=<second>&addr=<third>..., for REDIS_MODE=cluster.
func (c *Cluster) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + c.Nodes[0].Addr)
	for i, s := range c.Nodes[1:] {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString("addr=" + s.Addr)
	}
	return b.String()
}

// Client returns a cluster client for all nodes, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	var addrs []string
	for _, s := range c.Nodes {
		addrs = append(addrs, s.Addr)
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// NodeFor returns the node that serves key's hash slot.
func (c *Cluster) NodeFor(ctx context.Context, key string) (*Server, error) {
	cl := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr})
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	n := len(c.Nodes)
	for i, s := range c.Nodes {
		if int(slot) >= i*clusterSlots/n && int(slot) < (i+1)*clusterSlots/n {
			return s, nil
		}
	}
	return nil, fmt.Errorf("slot %d of %s is served by no node", slot, key)
}
