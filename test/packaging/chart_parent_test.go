package packaging_test

import (
	corev1 "k8s.io/api/core/v1"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	exampleChartDir = "examples/chart"
	exampleRelease  = "prod"
	exampleGate     = "prod-peerdb-maintenance"
)

// exampleChart copies the example parent chart and the chart it depends on into a temporary directory,
// keeping their relative paths (file://../../charts/peerdb-maintenance), and runs helm dependency
// build there, so that the repository never holds a packaged chart. It returns the copied parent.
func exampleChart(t *testing.T) string {
	t.Helper()
	return exampleChartAt(t, exampleChartDir)
}

// exampleChartAt is exampleChart for the example parent chart in dir.
func exampleChartAt(t *testing.T, dir string) string {
	t.Helper()
	root, tmp := repoRoot(t), t.TempDir()
	parent := filepath.Join(tmp, filepath.FromSlash(dir))
	copyTree(t, filepath.Join(root, filepath.FromSlash(dir)), parent)
	copyTree(t, filepath.Join(root, filepath.FromSlash(chartDir)), filepath.Join(tmp, filepath.FromSlash(chartDir)))
	for _, stale := range []string{"charts", "Chart.lock"} { // from a local helm dependency build
		if err := os.RemoveAll(filepath.Join(parent, stale)); err != nil {
			t.Fatal(err)
		}
	}
	helm(t, "dependency", "build", parent)
	return parent
}

// renderExample renders the example chart (built by exampleChart) with extra helm arguments.
func renderExample(t *testing.T, dir string, extra ...string) rendered {
	t.Helper()
	return decodeManifests(t, helm(t, append([]string{"template", exampleRelease, dir, "--namespace", "peerdb"}, extra...)...))
}

// exampleInitContainer returns the example Deployment and its gate init container.
func exampleInitContainer(t *testing.T, r rendered) (*manifest, *corev1.Container) {
	t.Helper()
	d := r.get(t, "Deployment", "prod-peerdb-flow-worker")
	if n := len(d.pod().InitContainers); n != 1 {
		t.Fatalf("the Deployment has %d init containers, want the gate alone", n)
	}
	return d, &d.pod().InitContainers[0]
}

func TestExampleChartPutsGateInFrontOfDeployment(t *testing.T) {
	dir := exampleChart(t)
	helm(t, "lint", "--strict", dir)
	r := renderExample(t, dir)
	d, gate := exampleInitContainer(t, r)
	if replicas := r.deployment(t, d.Metadata.Name).Spec.Replicas; replicas == nil || *replicas != 3 {
		t.Errorf("replicas %v, want 3: every replica waits behind the gate", replicas)
	}
	if gate.Name != "peerdb-maintenance" {
		t.Errorf("init container %q, want peerdb-maintenance", gate.Name)
	}
	app := chartMeta(t, exampleChartDir).AppVersion
	run := checkGateContainer(t, r, d.pod(), gate, gateWant{
		// The gate's image is the gate chart's version; the deployment version is the parent's.
		image: chartImage + chartMeta(t, chartDir).AppVersion, version: app, gate: "default",
		redis: keyRef{exampleGate + "-redis", redisURLKey}, tasksFile: tasksMount + "tasks.yaml",
	}, nil)
	checkGateAccepts(t, run)
	for _, task := range []string{"pause-mirrors", "bust-ui-cache", "resume-mirrors"} {
		if !strings.Contains(run.taskFile, task) {
			t.Errorf("task file of the example lacks %s:\n%s", task, run.taskFile)
		}
	}
	if c := d.pod().Containers; len(c) != 1 || c[0].Image != "ghcr.io/peerdb-io/flow-worker:stable-"+app {
		t.Errorf("main containers %+v, want flow-worker stable-%s", c, app)
	}
}

func TestExampleChartNeverForcesInitContainers(t *testing.T) {
	dir := exampleChart(t)
	r := renderExample(t, dir, "--set", "peerdb-maintenance.hooks.pre.enabled=true", "--set", "peerdb-maintenance.hooks.pre.force=true")
	if _, gate := exampleInitContainer(t, r); envVar(gate, "MAINTENANCE_FORCE") != nil {
		t.Error("the init container sets MAINTENANCE_FORCE: every replica would run the tasks again")
	}
	job := r.get(t, "Job", exampleGate+"-pre")
	if v := envValue(&job.pod().Containers[0], "MAINTENANCE_FORCE"); v != "true" {
		t.Errorf("the pre Job's MAINTENANCE_FORCE=%q, want true (hooks.pre.force)", v)
	}
}

func TestExampleChartRefusesDryRunInInitContainer(t *testing.T) {
	dir := exampleChart(t)
	if _, gate := exampleInitContainer(t, renderExample(t, dir)); envVar(gate, "MAINTENANCE_DRY_RUN") != nil {
		t.Error("the init container sets MAINTENANCE_DRY_RUN: a dry run exits 0 and the main container starts with maintenance not done")
	}
	_, stderr, err := tryHelm(t, "template", exampleRelease, dir, "--namespace", "peerdb", "--set", "peerdb-maintenance.gate.dryRun=true")
	if err == nil {
		t.Fatal("gate.dryRun rendered an init container: every replica would exit 0 with maintenance not done")
	}
	for _, want := range []string{"gate.dryRun", "init container", "Job"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the template error does not say %q:\n%s", want, stderr)
		}
	}
}

func TestChartDryRunReachesOnlyHookJobs(t *testing.T) {
	r := renderChart(t, "hooks.yaml", "--set", "gate.dryRun=true")
	for _, job := range r["Job"] {
		if v := envValue(&job.pod().Containers[0], "MAINTENANCE_DRY_RUN"); v != "true" {
			t.Errorf("Job %s: MAINTENANCE_DRY_RUN=%q, want true (gate.dryRun)", job.Metadata.Name, v)
		}
	}
	if len(r["Job"]) == 0 {
		t.Fatal("hooks.yaml renders no Job")
	}
	if envVar(&r.get(t, "Pod", testPodName).pod().Containers[0], "MAINTENANCE_DRY_RUN") != nil {
		t.Error("the status test pod sets MAINTENANCE_DRY_RUN")
	}
}
