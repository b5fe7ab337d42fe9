package packaging_test

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redistest"
)

const (
	composeFile = "examples/docker-compose.yml"
	gateService = "peerdb-maintenance"
	appService  = "app"
)

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Restart     string   `yaml:"restart"`
	ReadOnly    bool     `yaml:"read_only"`
	User        string   `yaml:"user"`
	Healthcheck any      `yaml:"healthcheck"`
	Command     []string `yaml:"command"`
}

// loadCompose parses the compose example. Its environment must use the mapping form.
func loadCompose(t *testing.T) map[string]composeService {
	t.Helper()
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, composeFile), &f); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	for _, name := range []string{"redis", gateService, appService} {
		if _, ok := f.Services[name]; !ok {
			t.Fatalf("%s has no service %s", composeFile, name)
		}
	}
	return f.Services
}

var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)

// interpolate resolves ${VAR:-default} as compose does with VAR unset, and $$ to $.
func interpolate(s string) string {
	s = composeVar.ReplaceAllString(s, "$3")
	return strings.ReplaceAll(s, "$$", "$")
}

// composeGateEnv returns the gate's environment after interpolation.
func composeGateEnv(gate composeService) map[string]string {
	env := map[string]string{}
	for k, v := range gate.Environment {
		env[k] = interpolate(v)
	}
	return env
}

// composeTaskFile returns the host path of the file mounted at the gate's MAINTENANCE_TASKS_FILE.
func composeTaskFile(t *testing.T, gate composeService) string {
	t.Helper()
	target := gate.Environment["MAINTENANCE_TASKS_FILE"]
	for _, v := range gate.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			if len(parts) < 3 || parts[2] != "ro" {
				t.Errorf("the task file is mounted writable (%s); mount it :ro", v)
			}
			return filepath.Join(repoRoot(t), "examples", filepath.FromSlash(parts[0]))
		}
	}
	t.Fatalf("no volume of %s is mounted at MAINTENANCE_TASKS_FILE %q", gateService, target)
	return ""
}

func TestComposeExampleWiresGateBetweenRedisAndApp(t *testing.T) {
	services := loadCompose(t)
	gate, app, redis := services[gateService], services[appService], services["redis"]

	if gate.Build == nil {
		t.Fatalf("%s is not built from the repository's Dockerfile", gateService)
	}
	ctx := filepath.Join(repoRoot(t), "examples", filepath.FromSlash(gate.Build.Context))
	if filepath.Clean(ctx) != repoRoot(t) || gate.Build.Dockerfile != "Dockerfile" {
		t.Errorf("build context %s, dockerfile %s: want the repository root and its Dockerfile", gate.Build.Context, gate.Build.Dockerfile)
	}
	if gate.DependsOn["redis"].Condition != "service_healthy" || redis.Healthcheck == nil {
		t.Errorf("%s should wait for a healthy redis (depends_on condition service_healthy, and a redis healthcheck)", gateService)
	}
	if c := app.DependsOn[gateService].Condition; c != "service_completed_successfully" {
		t.Errorf("%s depends on %s with condition %q, want service_completed_successfully", appService, gateService, c)
	}
	if gate.Restart != "no" || gate.Healthcheck != nil {
		t.Errorf("%s: restart %q, healthcheck %v; a one-shot is never restarted and has no healthcheck", gateService, gate.Restart, gate.Healthcheck)
	}
	if !gate.ReadOnly || gate.User != "65532:65532" {
		t.Errorf("%s: read_only %v, user %q; want a read-only root filesystem and the image's user", gateService, gate.ReadOnly, gate.User)
	}

	known := knownVariables()
	for k := range gate.Environment {
		if !known[k] {
			t.Errorf("%s sets %s, which the binary does not read", gateService, k)
		}
	}
	env := composeGateEnv(gate)
	u, err := url.Parse(env["REDIS_URL"])
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", env["REDIS_URL"], err)
	}
	if _, ok := services[u.Hostname()]; !ok {
		t.Errorf("REDIS_URL host %q is not a service of the compose file", u.Hostname())
	}
	taskFile, err := os.ReadFile(composeTaskFile(t, gate))
	if err != nil {
		t.Fatal(err)
	}
	checkGateAccepts(t, gateRun{env: env, taskFile: string(taskFile)})
	if cmd := interpolate(strings.Join(app.Command, " ")); !strings.Contains(cmd, "{peerdb:maintenance:default}:version") {
		t.Errorf("the stand-in app does not read the gate's recorded version: %q", cmd)
	}
}

func TestComposeGateRunsInScratchRoot(t *testing.T) {
	gate := loadCompose(t)[gateService]
	env := composeGateEnv(gate)
	taskFile, err := os.ReadFile(composeTaskFile(t, gate))
	if err != nil {
		t.Fatal(err)
	}
	res, srv := runComposeGate(t, env, string(taskFile))
	if res.code != 0 {
		t.Fatalf("the compose gate exited %d, want 0 (service_completed_successfully)\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if !ranVersionTask(res) {
		t.Errorf("the compose task file's exec task did not run:\n%s%s", res.stdout, res.stderr)
	}
	if got := recorded(t, srv, "default"); got != env["PEERDB_DEPLOYMENT_VERSION"] {
		t.Errorf("recorded %q, want %q", got, env["PEERDB_DEPLOYMENT_VERSION"])
	}
}

// runComposeGate runs the built binary as a compose gate service runs: in an empty root with its task
// file mounted at MAINTENANCE_TASKS_FILE and /dev/null from the runtime, env as the service's environment,
// and REDIS_URL pointed at a real Redis on loopback (the redis service), which it returns.
func runComposeGate(t *testing.T, env map[string]string, taskFile string) (rootRun, *redistest.Server) {
	t.Helper()
	root := scratchRoot(t, map[string]string{"/dev/null": "", env["MAINTENANCE_TASKS_FILE"]: taskFile})
	srv := redistest.Start(t)
	env["REDIS_URL"] = "redis://" + srv.Addr + "/0"
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	return runInRoot(t, root, environ), srv
}
