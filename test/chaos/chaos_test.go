//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

var (
	seedFlag     = flag.Uint64("chaos.seed", 1, "seed of the schedule")
	durationFlag = flag.Duration("chaos.duration", 2*time.Minute, "time budget: no round starts after it")
	roundFlag    = flag.Int("chaos.round", 0, "run only this round of the seed's schedule, to replay a failure (0: every round)")
	replicasFlag = flag.Int("chaos.replicas", 3, "gate replicas per round")
	binFlag      = flag.String("chaos.bin", "", "a gate binary to judge instead of building this repository's")
)

// gate is the gate name every replica uses; its keys are what the checker reads.
var gate = keys.For("peerdb:maintenance", "chaos")

// harness is what every round shares: the binary, Redis, the proxies in front of it (one per
// replica slot) and a client that bypasses them.
type harness struct {
	t       *testing.T
	bin     string
	work    string
	redis   *redistest.Server
	direct  *redis.Client
	proxies []*redistest.Proxy
	seen    map[string]bool // history entries checked in earlier rounds
}

func TestChaos(t *testing.T) {
	seed, replicas := *seedFlag, *replicasFlag
	work, err := os.MkdirTemp("", "peerdb-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, work: work, seen: map[string]bool{}}
	h.bin = *binFlag
	if h.bin == "" {
		h.bin = buildGate(t, work)
	}
	h.redis = redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	h.direct = h.redis.Client()
	for range replicas {
		h.proxies = append(h.proxies, redistest.StartProxy(t, h.redis.Addr))
	}
	t.Logf("chaos: seed %d, budget %s, %d replicas, work directory %s", seed, *durationFlag, replicas, work)
	deadline := time.Now().Add(*durationFlag)
	failed := false
	drawn := map[kind]int{}
	for n := 1; ; n++ {
		if *roundFlag != 0 && n != *roundFlag {
			if n > *roundFlag {
				break
			}
			continue
		}
		if *roundFlag == 0 && n > 1 && time.Now().After(deadline) {
			break
		}
		r := plan(seed, n, replicas)
		for _, e := range r.events {
			drawn[e.kind]++
		}
		began := time.Now()
		violations, actions := h.run(r)
		actions = append(actions, fmt.Sprintf("round took %s", time.Since(began).Round(time.Millisecond)))
		if len(violations) > 0 {
			failed = true
			t.Errorf("chaos seed %d round %d violated:\n  %s\nschedule:\n%swhat happened:\n  %s\nreplay: make chaos SEED=%d ROUND=%d (logs in %s)",
				seed, n, strings.Join(violations, "\n  "), r, strings.Join(actions, "\n  "), seed, n, filepath.Join(work, fmt.Sprint(n)))
		} else if testing.Verbose() {
			t.Logf("round %d passed\n%swhat happened:\n  %s", n, r, strings.Join(actions, "\n  "))
		} else {
			t.Logf("round %d passed: %s", n, strings.Join(r.faults(), ", "))
		}
	}
	var counts []string
	for _, w := range weighted {
		counts = append(counts, fmt.Sprintf("%s %d", w.k, drawn[w.k]))
	}
	t.Logf("chaos: faults drawn (seed %d): %s", seed, strings.Join(counts, ", "))
	if !failed {
		_ = os.RemoveAll(work)
	}
}

// buildGate builds the gate binary the way the Makefile does (static, no test-only code).
func buildGate(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "peerdb-maintenance")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the gate: %v\n%s", err, out)
	}
	return bin
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

func ctxTimeout(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	time.AfterFunc(d, cancel)
	return ctx
}
