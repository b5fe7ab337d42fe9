package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// The gate on Redis Cluster and behind Sentinel, with the built binary and real servers.

// topologyEnv is the environment of a replica of version 2.0.0 on the Redis at url, with a task list.
func topologyEnv(url, mode, tasksFile string) map[string]string {
	return map[string]string{
		"PEERDB_DEPLOYMENT_VERSION":   "2.0.0",
		"REDIS_URL":                   url,
		"REDIS_MODE":                  mode,
		"MAINTENANCE_LOCK_TTL":        "2s",
		"MAINTENANCE_WAIT_TIMEOUT":    "60s",
		"MAINTENANCE_TERMINATION_LOG": "",
		"MAINTENANCE_TASKS_FILE":      tasksFile,
	}
}

// holderAndWaiters starts a holder whose task t2 hangs until $DIR/go exists, and n waiters once the
// holder is in t2, and waits until every waiter listens for notices on subs (the node that serves
// the gate's events channel).
func holderAndWaiters(t *testing.T, env map[string]string, dir string, n int, subs redis.UniversalClient) (*replica, []*replica) {
	t.Helper()
	var all []*replica
	// Registered first, so run last: after every replica was killed and its output is complete.
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range all {
				t.Logf("%s:\n%s", r.cmd.Args, r.stderr)
			}
		}
	})
	env["MAINTENANCE_HOLDER"] = "holder"
	holder := startReplica(t, env)
	all = append(all, holder)
	waitFile(t, filepath.Join(dir, "hang"), holder)
	var waiters []*replica
	for i := range n {
		env["MAINTENANCE_HOLDER"] = "waiter-" + strconv.Itoa(i)
		waiters = append(waiters, startReplica(t, env))
	}
	all = append(all, waiters...)
	waitSubscribers(t, subs, int64(n))
	return holder, waiters
}

// wokenByNotice counts the replicas that ended their wait on the holder's completion notice rather
// than on their own poll (only the notice names the holder in the "done" line).
func wokenByNotice(replicas []*replica) int {
	n := 0
	for _, r := range replicas {
		for _, line := range strings.Split(r.stderr.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "another replica recorded the version, done" && rec["holder"] != nil {
				n++
			}
		}
	}
	return n
}

func TestReplicasOnAThreeMasterClusterRunTheTasksOnceWithAllKeysInOneSlot(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := cl.Client()
	ctx := context.Background()
	node, err := cl.NodeFor(ctx, gateKeys.Tag)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{"t1", "t2", "t3"}
	env := topologyEnv(cl.URL(), "cluster", writeTasks(t, dir, "t2", "0", names...))
	holder, waiters := holderAndWaiters(t, env, dir, 5, node.Client())
	touch(t, filepath.Join(dir, "go"))
	for i, r := range append([]*replica{holder}, waiters...) {
		if code := r.wait(t); code != 0 {
			t.Errorf("replica %d exited %d:\n%s", i, code, r.stderr)
		}
	}
	lines := readTaskLog(t, dir)
	if got, want := runCounts(lines, names...), "t1=1 t2=1 t3=1"; got != want {
		t.Errorf("task runs %s, want %s", got, want)
	}
	assertRecordedOnce(t, c, "2.0.0", lines)
	if n := wokenByNotice(waiters); n == 0 {
		t.Error("no waiter was woken by the completion notice: pub/sub does not reach them on the cluster")
	}
	// Every key of the gate is in the hash tag's slot, on the one node that serves it.
	local := node.Client()
	for _, k := range []string{gateKeys.Version, gateKeys.Fence, gateKeys.History} {
		if n, err := local.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Errorf("%s is not on %s, the node of the slot of %s (%v)", k, node.Addr, gateKeys.Tag, err)
		}
	}
	for _, k := range []string{gateKeys.Lock, gateKeys.Progress, gateKeys.Events} {
		want, _ := local.ClusterKeySlot(ctx, gateKeys.Tag).Result()
		if got, _ := local.ClusterKeySlot(ctx, k).Result(); got != want {
			t.Errorf("%s is in slot %d, not in the gate's slot %d", k, got, want)
		}
	}
	status := startReplica(t, env, "status", "--json")
	if code := status.wait(t); code != 0 {
		t.Errorf("status on the cluster exited %d:\n%s", code, status.stderr)
	}
}

func TestReplicasThroughSentinelRunTheTasksOnceAndAreWokenByTheNotice(t *testing.T) {
	st := redistest.StartSentinel(t)
	dir := t.TempDir()
	names := []string{"t1", "t2", "t3"}
	env := topologyEnv(st.URL(), "", writeTasks(t, dir, "t2", "0", names...))
	holder, waiters := holderAndWaiters(t, env, dir, 3, st.Master.Client())
	touch(t, filepath.Join(dir, "go"))
	for i, r := range append([]*replica{holder}, waiters...) {
		if code := r.wait(t); code != 0 {
			t.Errorf("replica %d exited %d:\n%s", i, code, r.stderr)
		}
	}
	lines := readTaskLog(t, dir)
	if got, want := runCounts(lines, names...), "t1=1 t2=1 t3=1"; got != want {
		t.Errorf("task runs %s, want %s", got, want)
	}
	assertRecordedOnce(t, st.Client(), "2.0.0", lines)
	if n := wokenByNotice(waiters); n == 0 {
		t.Error("no waiter was woken by the completion notice")
	}
}

func TestSentinelFailoverWhileReplicasWaitStillRecordsTheVersionOnce(t *testing.T) {
	st := redistest.StartSentinel(t)
	dir := t.TempDir()
	names := []string{"t1", "t2", "t3"}
	env := topologyEnv(st.URL(), "", writeTasks(t, dir, "t2", "0", names...))
	holder, waiters := holderAndWaiters(t, env, dir, 3, st.Master.Client())
	promoted := st.Failover()
	touch(t, filepath.Join(dir, "go"))
	for i, w := range waiters {
		if code := w.wait(t); code != 0 {
			t.Errorf("waiter %d exited %d across the failover:\n%s", i, code, w.stderr)
		}
	}
	// The holder either kept its lock across the failover and recorded, or lost it (its refreshes
	// failed while the master changed) and stopped with 4; then a waiter took over from progress.
	code := holder.wait(t)
	if code != 0 && code != 4 {
		t.Errorf("the holder exited %d across the failover, want 0 or 4:\n%s", code, holder.stderr)
	}
	lines := readTaskLog(t, dir)
	t.Logf("holder exited %d; task runs %s", code, runCounts(lines, names...))
	if code == 4 {
		t.Logf("the holder's log:\n%s", holder.stderr)
	}
	for _, name := range names {
		if countRuns(lines)[name] == 0 {
			t.Errorf("task %s never ran", name)
		}
	}
	if code == 0 && runCounts(lines, names...) != "t1=1 t2=1 t3=1" {
		t.Errorf("the holder kept its lock, yet tasks ran %s", runCounts(lines, names...))
	}
	assertRecordedOnce(t, promoted.Client(), "2.0.0", lines)
}
