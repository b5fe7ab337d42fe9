package packaging_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	chartDir     = "charts/peerdb-maintenance"
	valuesDir    = "test/packaging/testdata/values"
	release      = "rel"
	fullname     = "rel-peerdb-maintenance"
	chartImage   = "ghcr.io/peerdb-maintenance/peerdb-maintenance:"
	ownRedis     = fullname + "-redis"
	ownTasks     = fullname + "-tasks"
	hooksName    = fullname + "-hooks"
	tasksMount   = "/etc/peerdb-maintenance/tasks/"
	redisURLKey  = "redis-url"
	testPodName  = fullname + "-test-status"
	tlsMountPath = "/etc/peerdb-maintenance/redis-tls/"
)

// valuesFiles are the values files every chart test renders and lints.
var valuesFiles = []string{"defaults.yaml", "existing-secret.yaml", "hooks.yaml", "sentinel.yaml", "tls.yaml"}

// chartMeta returns the chart's Chart.yaml.
func chartMeta(t *testing.T, dir string) (meta struct {
	Name       string `yaml:"name"`
	Version    string `yaml:"version"`
	AppVersion string `yaml:"appVersion"`
}) {
	t.Helper()
	if err := yaml.Unmarshal(readRepoFile(t, dir+"/Chart.yaml"), &meta); err != nil {
		t.Fatal(err)
	}
	return meta
}

// renderChart runs helm template on the chart with a values file and extra arguments.
func renderChart(t *testing.T, valuesFile string, extra ...string) rendered {
	t.Helper()
	args := append([]string{"template", release, chartDir, "--namespace", "peerdb", "-f", valuesDir + "/" + valuesFile}, extra...)
	return decodeManifests(t, helm(t, args...))
}

func TestChartLintStrict(t *testing.T) {
	for _, file := range valuesFiles {
		t.Run(file, func(t *testing.T) {
			helm(t, "lint", "--strict", chartDir, "-f", valuesDir+"/"+file)
		})
	}
}

func TestChartRendersEachValuesFile(t *testing.T) {
	appVersion := chartMeta(t, chartDir).AppVersion
	statusGate := func(redis keyRef) gateWant {
		return gateWant{image: chartImage + appVersion, version: appVersion, gate: "default", redis: redis, args: []string{"status"}}
	}
	cases := []struct {
		file     string
		external map[string]bool
		check    func(t *testing.T, r rendered, status gateRun)
		status   gateWant
	}{{
		file:   "defaults.yaml",
		status: statusGate(keyRef{ownRedis, redisURLKey}),
		check: func(t *testing.T, r rendered, status gateRun) {
			if got := r.configMap(t, ownTasks).Data["tasks.yaml"]; strings.TrimSpace(got) != "tasks: []" {
				t.Errorf("tasks.yaml of the defaults: %q, want an empty task list", got)
			}
			if len(r["Job"]) > 0 {
				t.Errorf("hook Jobs rendered by default: %v", r["Job"])
			}
		},
	}, {
		file:     "existing-secret.yaml",
		external: map[string]bool{"peerdb-redis": true},
		status:   statusGate(keyRef{"peerdb-redis", "url"}),
		check: func(t *testing.T, r rendered, status gateRun) {
			if len(r["Secret"]) > 0 {
				t.Errorf("Secrets rendered although redis.existingSecret is set: %v", r["Secret"])
			}
		},
	}, {
		file:   "hooks.yaml",
		status: statusGate(keyRef{ownRedis, redisURLKey}),
		check: func(t *testing.T, r rendered, status gateRun) {
			checkHookJobs(t, r, appVersion)
		},
	}, {
		file: "sentinel.yaml",
		status: func() gateWant {
			w := statusGate(keyRef{ownRedis, redisURLKey})
			w.gate = "flow-worker"
			return w
		}(),
		check: func(t *testing.T, r rendered, status gateRun) {
			if !strings.Contains(status.env["REDIS_URL"], "master_name=mymaster") || status.env["REDIS_MODE"] != "sentinel" {
				t.Errorf("REDIS_URL %q, REDIS_MODE %q: want the Sentinel URL and mode", status.env["REDIS_URL"], status.env["REDIS_MODE"])
			}
			for _, k := range []string{"MAINTENANCE_LOCK_TTL=1m", "MAINTENANCE_DOWNGRADE=fail", "LOG_FORMAT=text", "LOG_LEVEL=debug"} {
				name, value, _ := strings.Cut(k, "=")
				if status.env[name] != value {
					t.Errorf("%s=%q, want %q", name, status.env[name], value)
				}
			}
		},
	}, {
		file:     "tls.yaml",
		external: map[string]bool{"redis-tls": true, "peerdb-migrations": true},
		status: func() gateWant {
			w := statusGate(keyRef{ownRedis, redisURLKey})
			w.extraEnv = []string{"PEERDB_CATALOG_PASSWORD"}
			return w
		}(),
		check: func(t *testing.T, r rendered, status gateRun) {
			for k, file := range map[string]string{"REDIS_CA_FILE": "ca.crt", "REDIS_CERT_FILE": "tls.crt", "REDIS_KEY_FILE": "tls.key"} {
				if status.env[k] != tlsMountPath+file {
					t.Errorf("%s=%q, want %q", k, status.env[k], tlsMountPath+file)
				}
			}
			pod := r.get(t, "Pod", testPodName).pod()
			if v := podVolume(pod, "peerdb-maintenance-redis-tls"); v == nil || v.Secret == nil || v.Secret.SecretName != "redis-tls" {
				t.Errorf("the test pod does not mount the Secret redis-tls: %+v", pod.Volumes)
			}
			if v := podVolume(pod, "migrations"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "peerdb-migrations" {
				t.Errorf("the test pod lacks extraVolumes (migrations): %+v", pod.Volumes)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			r := renderChart(t, tc.file)
			pod := r.get(t, "Pod", testPodName)
			if pod.Metadata.Annotations["helm.sh/hook"] != "test" || len(pod.pod().Containers) != 1 {
				t.Fatalf("test pod: hook %q, %d containers; want a helm test with one container", pod.Metadata.Annotations["helm.sh/hook"], len(pod.pod().Containers))
			}
			checkPodDefaults(t, pod)
			status := checkGateContainer(t, r, pod.pod(), &pod.pod().Containers[0], tc.status, tc.external)
			checkGateAccepts(t, status)
			tc.check(t, r, status)
			checkSecretsStayInSecrets(t, r)
		})
	}
}

// checkPodDefaults checks the pods this chart runs itself (hook Jobs, test pod).
func checkPodDefaults(t *testing.T, m *manifest) {
	t.Helper()
	p := m.pod()
	if p.RestartPolicy != "Never" {
		t.Errorf("%s %s: restartPolicy %q, want Never for a one-shot", m.Kind, m.Metadata.Name, p.RestartPolicy)
	}
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		t.Errorf("%s %s mounts a service account token; the gate never calls the Kubernetes API", m.Kind, m.Metadata.Name)
	}
	if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot {
		t.Errorf("%s %s: pod securityContext %v, want runAsNonRoot", m.Kind, m.Metadata.Name, p.SecurityContext)
	}
}

// checkHookJobs checks the Jobs of testdata/values/hooks.yaml and the hook ConfigMap and Secret they use.
func checkHookJobs(t *testing.T, r rendered, appVersion string) {
	t.Helper()
	jobWeights := []int{}
	events := []string{}
	for _, j := range []struct {
		key, events, weight string
		force               bool
	}{{"pre", "pre-install,pre-upgrade", "-5", true}, {"post", "post-upgrade", "5", false}} {
		job := r.get(t, "Job", fullname+"-"+j.key)
		spec := r.job(t, job.Metadata.Name).Spec
		a := job.Metadata.Annotations
		if a["helm.sh/hook"] != j.events || a["helm.sh/hook-weight"] != j.weight || a["helm.sh/hook-delete-policy"] != "before-hook-creation,hook-succeeded" {
			t.Errorf("Job %s annotations %v, want hook %s, weight %s, delete policy before-hook-creation,hook-succeeded", j.key, a, j.events, j.weight)
		}
		if spec.BackoffLimit == nil || *spec.BackoffLimit != 2 || spec.ActiveDeadlineSeconds == nil || *spec.ActiveDeadlineSeconds != 600 {
			t.Errorf("Job %s: backoffLimit %v, activeDeadlineSeconds %v; want 2 and 600", j.key, spec.BackoffLimit, spec.ActiveDeadlineSeconds)
		}
		checkPodDefaults(t, job)
		pod := job.pod()
		if len(pod.Containers) != 1 {
			t.Fatalf("Job %s has %d containers, want 1", j.key, len(pod.Containers))
		}
		run := checkGateContainer(t, r, pod, &pod.Containers[0], gateWant{
			image: chartImage + appVersion, version: appVersion, gate: j.key, force: j.force,
			redis: keyRef{hooksName + "-redis", redisURLKey}, tasksFile: tasksMount + j.key + ".yaml",
		}, nil)
		checkGateAccepts(t, run)
		// The Job's retry (backoffLimit) comes after Kubernetes' 10 s back-off: with the init containers'
		// cooldown it would exit 1 at once instead of running the tasks again.
		if v := envValue(&pod.Containers[0], "MAINTENANCE_FAILURE_COOLDOWN"); v != "0" {
			t.Errorf("Job %s: MAINTENANCE_FAILURE_COOLDOWN %q, want 0 (hooks.failureCooldown) so that its retry retries", j.key, v)
		}
		w, _ := strconv.Atoi(j.weight)
		jobWeights = append(jobWeights, w)
		events = append(events, strings.Split(j.events, ",")...)
	}
	hookTasks := r.configMap(t, hooksName)
	if hookTasks.Data["pre.yaml"] != r.configMap(t, ownTasks).Data["tasks.yaml"] {
		t.Errorf("the pre Job's tasks %q are not the top-level tasks although hooks.pre.tasks is empty", hookTasks.Data["pre.yaml"])
	}
	if !strings.Contains(hookTasks.Data["post.yaml"], "after-upgrade") {
		t.Errorf("the post Job's tasks %q are not hooks.post.tasks", hookTasks.Data["post.yaml"])
	}
	// Pre-install hooks run before the release's resources exist: the Jobs' ConfigMap and Secret are
	// hooks of every event of the Jobs, created before them.
	for _, m := range []*manifest{r.get(t, "ConfigMap", hooksName), r.get(t, "Secret", hooksName+"-redis")} {
		a := m.Metadata.Annotations
		w, err := strconv.Atoi(a["helm.sh/hook-weight"])
		if err != nil || w >= slices.Min(jobWeights) {
			t.Errorf("%s %s hook weight %q, want below the Jobs' %v", m.Kind, m.Metadata.Name, a["helm.sh/hook-weight"], jobWeights)
		}
		for _, e := range events {
			if !slices.Contains(strings.Split(a["helm.sh/hook"], ","), e) {
				t.Errorf("%s %s is not a %s hook (%q): the Job of that event would find nothing", m.Kind, m.Metadata.Name, e, a["helm.sh/hook"])
			}
		}
	}
	if envVar(&r.get(t, "Pod", testPodName).pod().Containers[0], "MAINTENANCE_FORCE") != nil {
		t.Error("the test pod sets MAINTENANCE_FORCE: it is offered only for the hook Jobs")
	}
}

// checkSecretsStayInSecrets checks that a Redis URL's password appears in Secrets only.
func checkSecretsStayInSecrets(t *testing.T, r rendered) {
	t.Helper()
	for kind, objects := range r {
		if kind == "Secret" {
			continue
		}
		for name, m := range objects {
			data, _ := json.Marshal(m.Object)
			if strings.Contains(string(data), "s3cret") {
				t.Errorf("%s %s holds the Redis password; it belongs in a Secret", kind, name)
			}
		}
	}
}

func TestChartNotesRender(t *testing.T) {
	// helm template does not print NOTES.txt: render it through a ConfigMap in a copy of the chart.
	dir := filepath.Join(t.TempDir(), "peerdb-maintenance")
	copyTree(t, filepath.Join(repoRoot(t), chartDir), dir)
	wrapper := `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "notes"},` +
		` "data": {"notes": {{ include "peerdb-maintenance/templates/NOTES.txt" . | toJson }}}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "notes.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range valuesFiles {
		t.Run(file, func(t *testing.T) {
			values := filepath.Join(repoRoot(t), valuesDir, file)
			out := helm(t, "template", release, dir, "-f", values, "--show-only", "templates/notes.yaml")
			notes := decodeManifests(t, out).configMap(t, "notes").Data["notes"]
			for _, want := range []string{`include "peerdb-maintenance.initContainer"`, `include "peerdb-maintenance.volume"`, "kubectl logs", "status"} {
				if !strings.Contains(notes, want) {
					t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
				}
			}
			if file == "hooks.yaml" && !strings.Contains(notes, `Hook Job "pre"`) {
				t.Errorf("NOTES.txt does not mention the pre hook Job:\n%s", notes)
			}
		})
	}
}
