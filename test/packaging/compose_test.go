package packaging_test

import (
	"context"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

const (
	composeFile = "examples/docker-compose.yml"
	gateService = "peerdb-maintenance"
	appService  = "app"
)

// composeFileName matches the names docker compose looks for (compose.yaml, docker-compose.yml,
// compose.override.yaml, ...); examples/compose-tasks.yaml is a task file, not a compose file.
var composeFileName = regexp.MustCompile(`^(docker-)?compose(\.[^.]+)?\.ya?ml$`)

// loadComposeFiles loads compose files as `docker compose -f a -f b` does, with the Compose
// specification's own loader: merged in order, validated against the specification's schema (an
// unknown or misspelled key fails), interpolated with every variable unset (the ${VAR:-default}
// defaults), relative paths resolved against the first file's directory. consistent also checks the
// project as a whole (every service has an image, every reference resolves): a file meant to be merged
// into another is loaded alone without it.
func loadComposeFiles(consistent bool, paths ...string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(filepath.Dir(paths[0])),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(consistent),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// loadComposeFile loads one complete compose file (see loadComposeFiles).
func loadComposeFile(path string) (*types.Project, error) { return loadComposeFiles(true, path) }

// loadCompose loads the compose example and checks it has the services the tests read.
func loadCompose(t *testing.T) types.Services {
	t.Helper()
	p, err := loadComposeFile(filepath.Join(repoRoot(t), filepath.FromSlash(composeFile)))
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	for _, name := range []string{"redis", gateService, appService} {
		if _, ok := p.Services[name]; !ok {
			t.Fatalf("%s has no service %s", composeFile, name)
		}
	}
	return p.Services
}

func TestComposeFilesLoad(t *testing.T) {
	var files []string
	err := filepath.WalkDir(filepath.Join(repoRoot(t), "examples"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && composeFileName.MatchString(d.Name()) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no compose file under examples/ (want %s)", composeFile)
	}
	for _, f := range files {
		if filepath.ToSlash(f) == filepath.ToSlash(filepath.Join(repoRoot(t), peerdbComposeFile)) {
			continue // merged into PeerDB's compose file: loaded both ways by loadPeerDBCompose
		}
		if _, err := loadComposeFile(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	loadPeerDBCompose(t)
	// The loader's validation is what catches a misspelled key: show that it does.
	bad := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(bad, []byte("services:\n  a:\n    image: x\n    read_olny: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadComposeFile(bad); err == nil || !strings.Contains(err.Error(), "read_olny") {
		t.Errorf("a misspelled key loaded: %v", err)
	}
}

// composeGateEnv returns the gate's environment after interpolation.
func composeGateEnv(gate types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range gate.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// composeTaskFile returns the host path of the file mounted at the gate's MAINTENANCE_TASKS_FILE.
func composeTaskFile(t *testing.T, gate types.ServiceConfig) string {
	t.Helper()
	target := composeGateEnv(gate)["MAINTENANCE_TASKS_FILE"]
	for _, v := range gate.Volumes {
		if v.Target == target {
			if v.Type != types.VolumeTypeBind || !v.ReadOnly {
				t.Errorf("the task file is mounted as %s, read-only %v; bind-mount it :ro", v.Type, v.ReadOnly)
			}
			return v.Source
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
	if filepath.Clean(gate.Build.Context) != repoRoot(t) || gate.Build.Dockerfile != "Dockerfile" {
		t.Errorf("build context %s, dockerfile %s: want the repository root and its Dockerfile", gate.Build.Context, gate.Build.Dockerfile)
	}
	if gate.DependsOn["redis"].Condition != types.ServiceConditionHealthy || redis.HealthCheck == nil {
		t.Errorf("%s should wait for a healthy redis (depends_on condition service_healthy, and a redis healthcheck)", gateService)
	}
	if c := app.DependsOn[gateService].Condition; c != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("%s depends on %s with condition %q, want service_completed_successfully", appService, gateService, c)
	}
	if gate.Restart != types.RestartPolicyNo || gate.HealthCheck != nil {
		t.Errorf("%s: restart %q, healthcheck %v; a one-shot is never restarted and has no healthcheck", gateService, gate.Restart, gate.HealthCheck)
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
	if cmd := strings.Join(app.Command, " "); !strings.Contains(cmd, "{peerdb:maintenance:default}:version") {
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

// readOnlyInjectionErrors returns what Compose refuses in p: a read_only service given a config or a
// secret whose source is inline content or an environment variable. Compose copies such a source into
// the container when it creates it, which a read-only root filesystem forbids: current Compose refuses
// the service ("cannot create config ... in read-only service ...: `file` is the sole supported option"),
// older ones fail on the copy. A `file:` source is bind-mounted and works on a read-only service.
func readOnlyInjectionErrors(p *types.Project) []string {
	var errs []string
	for name, s := range p.Services {
		if !s.ReadOnly {
			continue
		}
		for _, c := range s.Configs {
			if o := p.Configs[c.Source]; o.Content != "" || o.Environment != "" {
				errs = append(errs, "config "+c.Source+" of read-only service "+name+" is copied into the container")
			}
		}
		for _, c := range s.Secrets {
			if o := p.Secrets[c.Source]; o.Content != "" || o.Environment != "" {
				errs = append(errs, "secret "+c.Source+" of read-only service "+name+" is copied into the container")
			}
		}
	}
	return errs
}

func TestComposeExamplesGiveReadOnlyServicesOnlyFilesComposeCanMount(t *testing.T) {
	p, err := loadComposeFile(filepath.Join(repoRoot(t), filepath.FromSlash(composeFile)))
	if err != nil {
		t.Fatal(err)
	}
	_, peerdb := loadPeerDBCompose(t)
	_, upgrade := loadPeerDBUpgradeCompose(t)
	for file, p := range map[string]*types.Project{composeFile: p, peerdbComposeFile: peerdb, peerdbUpgradeComposeFile: upgrade} {
		for _, e := range readOnlyInjectionErrors(p) {
			t.Errorf("%s: %s, which Compose refuses for a read-only service", file, e)
		}
	}
	// The check sees the shape Compose refuses.
	var a types.ServiceConfig
	a.Name, a.ReadOnly, a.Configs = "a", true, []types.ServiceConfigObjConfig{{Source: "c"}}
	bad := &types.Project{Services: types.Services{"a": a}, Configs: types.Configs{"c": {Name: "c", Content: "tasks: []\n"}}}
	if len(readOnlyInjectionErrors(bad)) != 1 {
		t.Errorf("a read-only service with an inline config passed the check")
	}
}
