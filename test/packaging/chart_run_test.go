package packaging_test

import (
	"context"
	corev1 "k8s.io/api/core/v1"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// showVersionTask is a task list that runs without a shell, as in the distroless image.
const showVersionTask = `peerdb-maintenance.tasks=[{"name":"show-gate-version","exec":{"command":["/peerdb-maintenance","version"]}}]`

// runRendered runs a rendered gate container in an empty root holding only the binary, its task file
// at MAINTENANCE_TASKS_FILE, and what the kubelet provides (/dev/null, /dev/termination-log), against
// srv instead of the Redis of its Secret. podName becomes POD_NAME.
func runRendered(t *testing.T, c *corev1.Container, run gateRun, srv *redistest.Server, pod string) (rootRun, string) {
	t.Helper()
	files := map[string]string{"/dev/null": "", "/dev/termination-log": ""}
	if f := run.env["MAINTENANCE_TASKS_FILE"]; f != "" {
		files[f] = run.taskFile
	}
	root := scratchRoot(t, files)
	env := []string{"REDIS_URL=redis://" + srv.Addr + "/0", "POD_NAME=" + pod, "MAINTENANCE_CONNECT_TIMEOUT=10s"}
	for k, v := range run.env {
		if k != "REDIS_URL" && k != "POD_NAME" && k != "MAINTENANCE_CONNECT_TIMEOUT" {
			env = append(env, k+"="+v)
		}
	}
	r := runInRoot(t, root, env, c.Args...)
	log, err := os.ReadFile(filepath.Join(root, "dev", "termination-log"))
	if err != nil {
		t.Fatal(err)
	}
	return r, string(log)
}

// ranVersionTask reports whether the run's log shows the output of the task show-gate-version: the
// commit that only "peerdb-maintenance version" prints.
func ranVersionTask(r rootRun) bool {
	return strings.Contains(r.stdout+r.stderr, "commit "+testCommit)
}

// recorded returns the version recorded for gate, or "".
func recorded(t *testing.T, srv *redistest.Server, gate string) string {
	t.Helper()
	v, _ := srv.Client().Get(context.Background(), "{peerdb:maintenance:"+gate+"}:version").Result()
	return v
}

func TestExampleChartInitContainerRunsTheGate(t *testing.T) {
	dir := exampleChart(t)
	r := renderExample(t, dir, "--set-json", showVersionTask, "--set", "peerdb-maintenance.log.format=text")
	d, gate := exampleInitContainer(t, r)
	run := checkGateContainer(t, r, d.pod(), gate, gateWant{
		image: chartImage + chartMeta(t, chartDir).AppVersion, version: chartMeta(t, exampleChartDir).AppVersion,
		gate: "default", redis: keyRef{exampleGate + "-redis", redisURLKey}, tasksFile: tasksMount + "tasks.yaml",
	}, nil)
	srv := redistest.Start(t)

	first, termination := runRendered(t, gate, run, srv, "prod-peerdb-flow-worker-0")
	if first.code != 0 {
		t.Fatalf("first replica: exit %d\nstdout: %s\nstderr: %s", first.code, first.stdout, first.stderr)
	}
	if !ranVersionTask(first) {
		t.Errorf("first replica did not run the task show-gate-version:\n%s%s", first.stdout, first.stderr)
	}
	if got, want := recorded(t, srv, "default"), run.env["PEERDB_DEPLOYMENT_VERSION"]; got != want {
		t.Errorf("recorded version %q, want the parent chart's appVersion %q", got, want)
	}
	if strings.TrimSpace(termination) == "" || strings.Count(strings.TrimSpace(termination), "\n") > 0 {
		t.Errorf("termination log %q, want a one-line summary (terminationMessagePolicy shows it)", termination)
	}

	second, _ := runRendered(t, gate, run, srv, "prod-peerdb-flow-worker-1")
	if second.code != 0 {
		t.Fatalf("second replica: exit %d\nstdout: %s\nstderr: %s", second.code, second.stdout, second.stderr)
	}
	if ranVersionTask(second) {
		t.Errorf("second replica ran the task again for a recorded version:\n%s%s", second.stdout, second.stderr)
	}
}

func TestChartHookJobRunsTheGate(t *testing.T) {
	r := renderChart(t, "hooks.yaml", "--set", "log.format=text")
	job := r.get(t, "Job", fullname+"-pre")
	c := &job.pod().Containers[0]
	appVersion := chartMeta(t, chartDir).AppVersion
	run := checkGateContainer(t, r, job.pod(), c, gateWant{
		image: chartImage + appVersion, version: appVersion, gate: "pre", force: true,
		redis: keyRef{hooksName + "-redis", redisURLKey}, tasksFile: tasksMount + "pre.yaml",
	}, nil)
	srv := redistest.Start(t)
	// MAINTENANCE_FORCE: the Job runs its tasks on every upgrade, even for a recorded version.
	for attempt := 1; attempt <= 2; attempt++ {
		res, _ := runRendered(t, c, run, srv, "rel-peerdb-maintenance-pre-x7k2p")
		if res.code != 0 {
			t.Fatalf("attempt %d: exit %d\nstdout: %s\nstderr: %s", attempt, res.code, res.stdout, res.stderr)
		}
		if !ranVersionTask(res) {
			t.Errorf("attempt %d did not run the task show-gate-version although forced:\n%s%s", attempt, res.stdout, res.stderr)
		}
	}
	if got := recorded(t, srv, "pre"); got != appVersion {
		t.Errorf("gate pre recorded %q, want %q", got, appVersion)
	}
	if got := recorded(t, srv, "default"); got != "" {
		t.Errorf("the pre Job recorded %q under the init container's gate; each gate keeps its own version", got)
	}
}
