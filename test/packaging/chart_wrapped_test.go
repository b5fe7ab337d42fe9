package packaging_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The example parent chart of the wrapped mode: PeerDB's peerdb-server, whose pods run PeerDB's own
// migrator under the gate copied into PeerDB's image (docs/peerdb-upgrade.md).
const peerdbServerChartDir = "examples/peerdb-server-chart"

const (
	copiedGate  = "/peerdb-maintenance/peerdb-maintenance"
	gateImage   = "ghcr.io/peerdb-maintenance/peerdb-maintenance:0.1.0"
	peerdbImage = "ghcr.io/peerdb-io/peerdb-server:stable-v0.37.0"
)

func renderPeerDBServerChart(t *testing.T, extra ...string) (*corev1.PodSpec, rendered) {
	t.Helper()
	dir := exampleChartAt(t, peerdbServerChartDir)
	helm(t, append([]string{"lint", "--strict", dir}, extra...)...)
	r := renderExample(t, dir, extra...)
	return r.deployment(t, "prod-peerdb-server").Spec.Template.Spec.DeepCopy(), r
}

func mountOf(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// checkWrapped checks the init container in PeerDB's image: its command is the copied gate, in front of
// PeerDB's migrator, with the gate's directory mounted read-only.
func checkWrapped(t *testing.T, c *corev1.Container) {
	t.Helper()
	if c.Image != peerdbImage {
		t.Errorf("wrapped init container image %q, want PeerDB's %q", c.Image, peerdbImage)
	}
	if !slices.Equal(c.Command, []string{copiedGate}) || !slices.Equal(c.Args, []string{"--", "/home/peerdb/peerdb-server"}) {
		t.Errorf("wrapped init container runs %q %q, want the copied gate %s -- /home/peerdb/peerdb-server", c.Command, c.Args, copiedGate)
	}
	if m := mountOf(c, "peerdb-maintenance-bin"); m == nil || m.MountPath != "/peerdb-maintenance" || !m.ReadOnly {
		t.Errorf("wrapped init container mounts the gate at %+v, want /peerdb-maintenance read-only", m)
	}
	for k, want := range map[string]string{"PEERDB_MIGRATIONS_ONLY": "true", "MAINTENANCE_NAME": "catalog", "PEERDB_DEPLOYMENT_VERSION": "v0.37.0"} {
		if got := envValue(c, k); got != want {
			t.Errorf("wrapped init container: %s=%q, want %q", k, got, want)
		}
	}
	if envVar(c, "MAINTENANCE_TASKS_FILE") != nil {
		t.Error("wrapped init container has a task file and a command: the gate refuses both")
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "peerdb-catalog" {
		t.Errorf("wrapped init container envFrom %+v, want PeerDB's catalog Secret", c.EnvFrom)
	}
}

func TestWrappedModeCopiesTheGateIntoAnEmptyDirAndRunsPeerDBsMigratorUnderIt(t *testing.T) {
	pod, r := renderPeerDBServerChart(t)
	if n := len(pod.InitContainers); n != 2 {
		t.Fatalf("%d init containers, want the copy and the wrapped migrator", n)
	}
	install, wrapped := &pod.InitContainers[0], &pod.InitContainers[1]
	if install.Image != gateImage || !slices.Equal(install.Args, []string{"install", "/peerdb-maintenance"}) {
		t.Errorf("copy init container: image %q, args %q; want the gate's image running install /peerdb-maintenance", install.Image, install.Args)
	}
	if m := mountOf(install, "peerdb-maintenance-bin"); m == nil || m.MountPath != "/peerdb-maintenance" || m.ReadOnly {
		t.Errorf("copy init container mounts %+v, want the gate's directory writable", m)
	}
	checkWrapped(t, wrapped)
	if v := podVolume(pod, "peerdb-maintenance-bin"); v == nil || v.EmptyDir == nil {
		t.Errorf("gate volume %+v, want an emptyDir", v)
	}
	server := &pod.Containers[0]
	if got := envValue(server, "PEERDB_MIGRATIONS_DISABLED"); got != "true" {
		t.Errorf("peerdb-server: PEERDB_MIGRATIONS_DISABLED=%q, want true: only the gate's run migrates", got)
	}
	// The pause and the resume: hook Jobs of gates of their own, at the version being deployed.
	for key, action := range map[string]string{"pre": "maintenance-start", "post": "maintenance-end"} {
		job := r.job(t, "prod-peerdb-maintenance-"+key)
		c := &job.Spec.Template.Spec.Containers[0]
		if envValue(c, "MAINTENANCE_NAME") != key || envValue(c, "PEERDB_DEPLOYMENT_VERSION") != "v0.37.0" {
			t.Errorf("%s Job: gate %q at version %q, want gate %s at v0.37.0", key, envValue(c, "MAINTENANCE_NAME"), envValue(c, "PEERDB_DEPLOYMENT_VERSION"), key)
		}
		if tasks := r.configMap(t, "prod-peerdb-maintenance-hooks").Data[key+".yaml"]; !strings.Contains(tasks, "action: "+action) {
			t.Errorf("%s Job's tasks do not %s:\n%s", key, action, tasks)
		}
	}
}

func TestWrappedModeMountsTheGatesImageWhereImageVolumesExist(t *testing.T) {
	pod, _ := renderPeerDBServerChart(t, "--set", "peerdb-maintenance.wrapped.gateSource=imageVolume")
	if n := len(pod.InitContainers); n != 1 {
		t.Fatalf("%d init containers, want the wrapped migrator alone: nothing to copy", n)
	}
	checkWrapped(t, &pod.InitContainers[0])
	v := podVolume(pod, "peerdb-maintenance-bin")
	if v == nil || v.Image == nil || v.Image.Reference != gateImage || v.EmptyDir != nil {
		t.Errorf("gate volume %+v, want the gate's image %s as an image volume", v, gateImage)
	}
}

func TestWrappedModeRefusesACommandAndTasksTogether(t *testing.T) {
	dir := exampleChartAt(t, peerdbServerChartDir)
	_, stderr, err := tryHelm(t, "template", exampleRelease, dir, "--set", "peerdb-maintenance.tasks[0].name=x",
		"--set", "peerdb-maintenance.tasks[0].exec.command[0]=/bin/true")
	if err == nil || !strings.Contains(stderr, "not both") {
		t.Errorf("err %v, stderr %s; want the template to refuse wrapped.command with tasks", err, stderr)
	}
}

// TestTheUpgradeValuesRunPeerDBsMigratorInItsOwnImageBetweenPauseAndResume: the chart alone, with
// examples/peerdb-upgrade-values.yaml, renders the migrate hook Job whose init container in PeerDB's
// image runs the copied gate in front of PeerDB's migrator, after the pause Job and before the resume.
func TestTheUpgradeValuesRunPeerDBsMigratorInItsOwnImageBetweenPauseAndResume(t *testing.T) {
	values := repoRoot(t) + "/examples/peerdb-upgrade-values.yaml"
	helm(t, "lint", "--strict", chartDir, "-f", values)
	r := decodeManifests(t, helm(t, "template", release, chartDir, "--namespace", "peerdb", "-f", values))
	job := r.job(t, release+"-peerdb-maintenance-migrate")
	pod := &job.Spec.Template.Spec
	if n := len(pod.InitContainers); n != 2 {
		t.Fatalf("migrate Job: %d init containers, want the copy and the wrapped migrator", n)
	}
	install := &pod.InitContainers[0]
	if install.Image != gateImage || !slices.Equal(install.Args, []string{"install", "/peerdb-maintenance"}) {
		t.Errorf("migrate Job: copy init container image %q args %q, want the gate's image running install", install.Image, install.Args)
	}
	checkWrapped(t, &pod.InitContainers[1])
	if v := podVolume(pod, "peerdb-maintenance-bin"); v == nil || v.EmptyDir == nil {
		t.Errorf("migrate Job: gate volume %+v, want an emptyDir", v)
	}
	if c := pod.Containers; len(c) != 1 || c[0].Image != gateImage || !slices.Equal(c[0].Args, []string{"status"}) {
		t.Errorf("migrate Job: containers %+v, want the gate's status", c)
	}
	if s := envVar(&pod.InitContainers[1], "REDIS_URL"); s == nil || s.ValueFrom == nil || s.ValueFrom.SecretKeyRef == nil ||
		!strings.HasSuffix(s.ValueFrom.SecretKeyRef.Name, "-hooks-redis") {
		t.Errorf("migrate Job: REDIS_URL %+v, want the hooks' Secret (the release's own does not exist before install)", s)
	}
	weight := func(name string) string {
		return r.job(t, release+"-peerdb-maintenance-"+name).Annotations["helm.sh/hook-weight"]
	}
	if pre, migrate := weight("pre"), weight("migrate"); !(pre < migrate) {
		t.Errorf("hook weights pre %s, migrate %s: the migration must run after the pause", pre, migrate)
	}
	if ev := r.job(t, release+"-peerdb-maintenance-post").Annotations["helm.sh/hook"]; ev != "post-upgrade" {
		t.Errorf("resume Job runs at %q, want post-upgrade (after the new workers are up)", ev)
	}
}

// A release of its own with examples/peerdb-upgrade-values.yaml runs its post-upgrade hook (the resume) when
// its own upgrade ends, before PeerDB's chart is upgraded: where the doc and the example's header install it
// on its own, the first command leaves the resume out for a later step.
func TestTheUpgradeValuesOnTheirOwnResumeOnlyAfterPeerDBsUpgrade(t *testing.T) {
	for _, file := range []string{"docs/peerdb-upgrade.md", "examples/peerdb-upgrade-values.yaml"} {
		found := false
		for _, line := range strings.Split(string(readRepoFile(t, file)), "\n") {
			if !strings.Contains(line, "helm upgrade --install peerdb-maintenance") {
				continue
			}
			found = true
			if !strings.Contains(line, "hooks.post.enabled=false") {
				t.Errorf("%s: %q resumes the mirrors when this release's upgrade ends, before PeerDB's", file, strings.TrimSpace(line))
			}
		}
		if !found {
			t.Errorf("%s does not show how to install the values as a release of their own", file)
		}
	}
}

// The migrate hook always runs wrapped.command: top-level tasks, there for the other gates (hooks.pre
// without tasks of its own), do not make its wrapped init container "command and tasks both".
func TestTheMigrateHookRunsItsCommandBesideTopLevelTasks(t *testing.T) {
	args := []string{"-f", repoRoot(t) + "/examples/peerdb-upgrade-values.yaml", "--set", "hooks.pre.tasks=null",
		"--set-json", `tasks=[{"name":"pause-from-top-level","peerdb":{"action":"maintenance-start","url":"http://flow-api:8113"}}]`}
	helm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
	r := decodeManifests(t, helm(t, append([]string{"template", release, chartDir, "--namespace", "peerdb"}, args...)...))
	pod := &r.job(t, release+"-peerdb-maintenance-migrate").Spec.Template.Spec
	if n := len(pod.InitContainers); n != 2 {
		t.Fatalf("migrate Job: %d init containers, want the copy and the wrapped migrator", n)
	}
	checkWrapped(t, &pod.InitContainers[1])
	r.job(t, release+"-peerdb-maintenance-pre")
	out := helm(t, append([]string{"template", release, chartDir, "--namespace", "peerdb", "--show-only", "templates/hooks.yaml"}, args...)...)
	if !strings.Contains(out, "pause-from-top-level") {
		t.Errorf("the pre hook's task file does not hold the top-level tasks:\n%s", out)
	}
}

// The Jobs' failure cooldown is hooks.failureCooldown (0: a retried Job pod runs again); the init
// containers, replicas that would all run a failing task, keep gate.failureCooldown.
func TestHookJobsRetryWhileInitContainersKeepTheCooldown(t *testing.T) {
	values := []string{"-f", repoRoot(t) + "/examples/peerdb-upgrade-values.yaml"}
	r := decodeManifests(t, helm(t, append([]string{"template", release, chartDir, "--namespace", "peerdb"}, values...)...))
	migrate := &r.job(t, release+"-peerdb-maintenance-migrate").Spec.Template.Spec.InitContainers[1]
	if v := envValue(migrate, "MAINTENANCE_FAILURE_COOLDOWN"); v != "0" {
		t.Errorf("migrate Job: MAINTENANCE_FAILURE_COOLDOWN %q, want 0 so that its retry runs the migrator again", v)
	}
	for _, key := range []string{"pre", "post"} {
		c := &r.job(t, release+"-peerdb-maintenance-"+key).Spec.Template.Spec.Containers[0]
		if v := envValue(c, "MAINTENANCE_FAILURE_COOLDOWN"); v != "0" {
			t.Errorf("%s Job: MAINTENANCE_FAILURE_COOLDOWN %q, want 0", key, v)
		}
	}
	r = decodeManifests(t, helm(t, append([]string{"template", release, chartDir, "--namespace", "peerdb", "--set", "hooks.failureCooldown=2m"}, values...)...))
	if v := envValue(&r.job(t, release+"-peerdb-maintenance-pre").Spec.Template.Spec.Containers[0], "MAINTENANCE_FAILURE_COOLDOWN"); v != "2m" {
		t.Errorf("pre Job with hooks.failureCooldown=2m: MAINTENANCE_FAILURE_COOLDOWN %q", v)
	}
	pod, _ := renderPeerDBServerChart(t)
	if v := envValue(&pod.InitContainers[1], "MAINTENANCE_FAILURE_COOLDOWN"); v != "30s" {
		t.Errorf("wrapped init container: MAINTENANCE_FAILURE_COOLDOWN %q, want gate.failureCooldown 30s", v)
	}
}
