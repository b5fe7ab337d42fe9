package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// soakReplicas is how many replicas start at once in every round of the soak.
const soakReplicas = 10

// TestSoakRoundsOfTenReplicasWithRandomKillsRecordEveryVersionOnce upgrades one gate round after
// round (1.0.0, 1.0.1, ...), ten replicas at once, and in most rounds SIGKILLs the lock holder or a
// random replica at a random moment, chosen with a seeded math/rand. After every round the version
// is recorded with exactly one succeeded history entry, no task ran after that record, every task
// ran at least once and at most once more than the number of holders killed, the lock is gone and
// progress is empty. It runs for about 45s (8s with -short); SOAK_SEED=<n> makes the same choices
// of fault, moment and replica again.
func TestSoakRoundsOfTenReplicasWithRandomKillsRecordEveryVersionOnce(t *testing.T) {
	budget := 45 * time.Second
	if testing.Short() {
		budget = 8 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SOAK_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with SOAK_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	srv := redistest.Start(t)
	c := srv.Client()
	dir := t.TempDir()
	names := []string{"t1", "t2", "t3"}
	tasksFile := writeTasks(t, dir, "", "0.2", names...)
	began := time.Now()
	var rounds, holderKills, replicaKills, repeated int
	for round := 0; round < 2 || time.Since(began) < budget; round++ {
		version := fmt.Sprintf("1.0.%d", round)
		replicas := map[string]*replica{}
		for i := range soakReplicas {
			name := "r" + strconv.Itoa(i)
			replicas[name] = startReplica(t, baseEnv(srv, "PEERDB_DEPLOYMENT_VERSION", version,
				"MAINTENANCE_TASKS_FILE", tasksFile, "MAINTENANCE_HOLDER", name))
		}
		// A quarter of the rounds run undisturbed, a quarter lose a random replica, half lose the
		// holder at a random point of its run: before, inside or between tasks, or around the record.
		fault, delay := rng.IntN(4), time.Duration(rng.Int64N(int64(700*time.Millisecond)))
		killed, holderKilled := "", false
		switch fault {
		case 1:
			time.Sleep(delay)
			killed = "r" + strconv.Itoa(rng.IntN(soakReplicas))
		case 2, 3:
			redistest.Eventually(t, 20*time.Second, func() bool { return getKey(t, srv, gateKeys.Lock) != "" },
				"round %d (%s): nobody took the lock", round, version)
			time.Sleep(delay)
			if v, err := c.Get(context.Background(), gateKeys.Lock).Result(); err == nil {
				killed, holderKilled = lock.ParseValue(v).Holder, true
			}
		}
		if r := replicas[killed]; r != nil {
			_ = r.cmd.Process.Signal(syscall.SIGKILL)
		}
		for name, r := range replicas {
			want := 0
			if name == killed {
				want = 128 + int(syscall.SIGKILL)
			}
			if code := r.wait(t); code != want && !(name == killed && code == 0) {
				t.Fatalf("round %d (%s, seed %d): replica %s exited %d, want %d:\n%s", round, version, seed, name, code, want, r.stderr)
			}
		}
		repeated += checkSoakRound(t, srv, dir, version, names, killed != "")
		rounds++
		if killed != "" && holderKilled {
			holderKills++
		} else if killed != "" {
			replicaKills++
		}
	}
	t.Logf("%d rounds in %s: %d holders and %d random replicas killed, %d interrupted tasks repeated",
		rounds, time.Since(began).Round(time.Second), holderKills, replicaKills, repeated)
}

// checkSoakRound checks the state after one round of the soak for version.
// It returns how many tasks ran twice.
func checkSoakRound(t *testing.T, srv *redistest.Server, dir, version string, names []string, killed bool) int {
	t.Helper()
	c := srv.Client()
	var lines []taskLine
	for _, l := range readTaskLog(t, dir) {
		if l.Version == version {
			lines = append(lines, l)
		}
	}
	assertRecordedOnce(t, c, version, lines)
	runs := countRuns(lines)
	most := 1
	if killed {
		most = 2
	}
	repeated := 0
	for _, name := range names {
		if runs[name] > 1 {
			repeated++
		}
		if runs[name] < 1 || runs[name] > most {
			t.Errorf("version %s: task %s ran %d times, want 1 to %d", version, name, runs[name], most)
		}
	}
	// A holder killed after its record but before its release leaves the lock until its TTL ends.
	redistest.Eventually(t, 2*time.Second+2*time.Second, func() bool { return getKey(t, srv, gateKeys.Lock) == "" },
		"version %s: the lock is still held after the round", version)
	if n, _ := c.Exists(context.Background(), gateKeys.Progress).Result(); n != 0 {
		t.Errorf("version %s: progress is left after the round", version)
	}
	if t.Failed() {
		t.FailNow()
	}
	return repeated
}
