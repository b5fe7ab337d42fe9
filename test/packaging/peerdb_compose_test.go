package packaging_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/flowapitest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

const peerdbComposeFile = "examples/peerdb-compose/docker-compose.yml"

// peerdbServices are the services of PeerDB's own docker-compose.yml, which examples/peerdb-compose is
// merged into: read from testdata/peerdb-services.txt, itself copied from PeerDB-io/peerdb's
// docker-compose.yml (commit 6b52fb6 and tag v0.36.0), never written from memory.
var peerdbServices = readServiceList("testdata/peerdb-services.txt")

// readServiceList reads a list of service names, one a line, skipping comments and blank lines.
func readServiceList(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	return names
}

// The services the example gates, and those it must not: flow-api is called by the tasks, flow-worker runs
// PeerDB's maintenance workflows, flow-snapshot-worker finishes the snapshots the start workflow waits for.
var (
	peerdbGated   = []string{"peerdb", "peerdb-ui"}
	peerdbUngated = []string{"flow-api", "flow-worker", "flow-snapshot-worker"}
)

// peerdbBase writes a stand-in of PeerDB's compose file: its services by name, each with an image, so
// that the example can be merged into it by compose-go exactly as `docker compose -f PeerDB's -f ours`.
func peerdbBase(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("services:\n")
	for _, name := range peerdbServices {
		fmt.Fprintf(&b, "  %s:\n    image: peerdb-stand-in/%s\n", name, name)
	}
	path := filepath.Join(t.TempDir(), "docker-compose.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadPeerDBCompose loads the example twice with the Compose specification's loader: alone (what it
// changes of PeerDB's services) and merged into PeerDB's services (what compose runs, validated).
func loadPeerDBCompose(t *testing.T) (alone, merged *types.Project) {
	t.Helper()
	example := filepath.Join(repoRoot(t), filepath.FromSlash(peerdbComposeFile))
	var err error
	if alone, err = loadComposeFiles(false, example); err != nil {
		t.Fatalf("%s: %v", peerdbComposeFile, err)
	}
	if merged, err = loadComposeFiles(true, peerdbBase(t), example); err != nil {
		t.Fatalf("%s merged into PeerDB's compose file: %v", peerdbComposeFile, err)
	}
	return alone, merged
}

// peerdbComposeTaskFile returns the task file the gate finds at MAINTENANCE_TASKS_FILE.
func peerdbComposeTaskFile(t *testing.T, p *types.Project) string {
	t.Helper()
	gate := p.Services[gateService]
	target := composeGateEnv(gate)["MAINTENANCE_TASKS_FILE"]
	for _, m := range gate.Configs {
		if m.Target == target {
			if c, ok := p.Configs[m.Source]; ok && c.Content != "" {
				return c.Content
			}
			t.Fatalf("config %s mounted at %s has no content", m.Source, target)
		}
	}
	t.Fatalf("no config of %s is mounted at MAINTENANCE_TASKS_FILE %q", gateService, target)
	return ""
}

func TestPeerDBComposeExampleGatesPeerDBsServicesButNotFlowAPIOrTheWorkers(t *testing.T) {
	alone, f := loadPeerDBCompose(t)
	gate, ok := f.Services[gateService]
	if !ok {
		t.Fatalf("%s has no service %s", peerdbComposeFile, gateService)
	}
	for name, s := range alone.Services {
		if name == gateService || name == "redis" {
			continue
		}
		if !slices.Contains(peerdbServices, name) {
			t.Errorf("service %s is not one of PeerDB's compose file (%v): the merge would add it instead of gating one", name, peerdbServices)
		}
		if s.Image != "" || s.Build != nil || len(s.Environment) > 0 {
			t.Errorf("service %s changes more of PeerDB's service than depends_on", name)
		}
	}
	for _, name := range peerdbGated {
		if c := f.Services[name].DependsOn[gateService].Condition; c != "service_completed_successfully" {
			t.Errorf("%s waits for the gate with condition %q, want service_completed_successfully", name, c)
		}
	}
	for _, name := range peerdbUngated {
		if _, gated := f.Services[name].DependsOn[gateService]; gated {
			t.Errorf("%s waits for the gate, which needs it running", name)
		}
	}
	for _, name := range []string{"flow-api", "flow-worker"} {
		if c := gate.DependsOn[name].Condition; c != "service_started" && c != "service_healthy" {
			t.Errorf("the gate depends on %s with condition %q, want it started first", name, c)
		}
	}
	if gate.DependsOn["redis"].Condition != "service_healthy" || f.Services["redis"].HealthCheck == nil {
		t.Errorf("the gate should wait for a healthy redis")
	}
	// Not read_only: its task file is inline content, which Compose copies into the container
	// (TestComposeExamplesGiveReadOnlyServicesOnlyFilesComposeCanMount).
	if gate.Restart != "no" || gate.HealthCheck != nil || gate.User != "65532:65532" {
		t.Errorf("gate: restart %q, healthcheck %v, user %q; want a one-shot as user 65532", gate.Restart, gate.HealthCheck, gate.User)
	}
	known := knownVariables()
	for k := range gate.Environment {
		if !known[k] {
			t.Errorf("%s sets %s, which the binary does not read", gateService, k)
		}
	}
	env := composeGateEnv(gate)
	if u, err := url.Parse(env["REDIS_URL"]); err != nil || u.Hostname() != "redis" {
		t.Errorf("REDIS_URL %q does not point at the redis service", env["REDIS_URL"])
	}

	taskFile := peerdbComposeTaskFile(t, f)
	checkGateAccepts(t, gateRun{env: env, taskFile: taskFile})
	specs, err := tasks.Parse([]byte(taskFile), "tasks.yaml", tasks.LoadContext{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, s := range specs {
		p, ok := s.Task.(*tasks.PeerDB)
		if !ok {
			continue
		}
		actions = append(actions, p.Action)
		if p.URL != "http://flow-api:8113" || p.TaskQueue != tasks.QueuePeerflow {
			t.Errorf("task %s calls %s on queue %s, want flow-api's gateway http://flow-api:8113 and the stock worker's queue", s.Name, p.URL, p.TaskQueue)
		}
	}
	if want := []string{"wait-ready", "maintenance-start", "maintenance-end"}; !slices.Equal(actions, want) {
		t.Errorf("peerdb actions %v, want %v", actions, want)
	}
}

// The example's task file, run by the built binary against the stand-in of flow-api (only the stock
// worker) and a real Redis: the gate exits 0, the mirror is running again, the version is recorded.
func TestPeerDBComposeGateRunsItsTasksAgainstFlowAPI(t *testing.T) {
	_, f := loadPeerDBCompose(t)
	env := composeGateEnv(f.Services[gateService])
	api := flowapitest.Start(t)
	api.Do(func(s *flowapitest.Server) {
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}
	})
	taskFile := strings.ReplaceAll(peerdbComposeTaskFile(t, f), "http://flow-api:8113", api.URL)
	res, srv := runComposeGate(t, env, taskFile)
	if res.code != 0 {
		t.Fatalf("the gate exited %d, want 0\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if got := recorded(t, srv, "default"); got != env["PEERDB_DEPLOYMENT_VERSION"] {
		t.Errorf("recorded %q, want %q", got, env["PEERDB_DEPLOYMENT_VERSION"])
	}
	if n := api.Count("POST /v1/instance/maintenance"); n != 2 {
		t.Errorf("flow-api got %d maintenance requests, want a start and an end", n)
	}
	api.Do(func(s *flowapitest.Server) {
		if s.ModeEnabled || s.Mirrors[0].Status != "STATUS_RUNNING" {
			t.Errorf("after the gate: mode %t, mirror %s; want maintenance over and the mirror running", s.ModeEnabled, s.Mirrors[0].Status)
		}
	})
}
