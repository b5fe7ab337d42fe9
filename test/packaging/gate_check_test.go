package packaging_test

import (
	corev1 "k8s.io/api/core/v1"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

// keyRef names a key of a Secret.
type keyRef struct{ Name, Key string }

// gateWant is what one rendered gate container must be.
type gateWant struct {
	image     string
	version   string // PEERDB_DEPLOYMENT_VERSION
	gate      string // MAINTENANCE_NAME
	redis     keyRef // the Secret key REDIS_URL comes from
	force     bool   // MAINTENANCE_FORCE=true (hook Jobs only)
	tasksFile string // MAINTENANCE_TASKS_FILE; empty: none
	args      []string
	extraEnv  []string // variables the user adds for the tasks (extraEnv)
}

// gateRun is a rendered gate container as the binary sees it: its environment (secret references
// resolved from the rendered Secrets, POD_NAME filled in) and its task file.
type gateRun struct {
	env      map[string]string
	taskFile string
}

// podName stands for the name the downward API gives POD_NAME.
const podName = "peerdb-flow-worker-7d9f-abcde"

// checkGateContainer checks c, a gate container of pod, against want and against what every gate
// container must be: variables the binary knows, a Secret for REDIS_URL, POD_NAME from the downward
// API, mounts backed by volumes and volumes backed by rendered objects (or by external ones, the
// user's), a restricted security context. It returns the container's environment and task file.
func checkGateContainer(t *testing.T, r rendered, pod *corev1.PodSpec, c *corev1.Container, want gateWant, external map[string]bool) gateRun {
	t.Helper()
	run := gateRun{env: map[string]string{}}
	known := knownVariables()
	for _, e := range c.Env {
		if !known[e.Name] && !slices.Contains(want.extraEnv, e.Name) {
			t.Errorf("%s sets %s, which the binary does not read", c.Name, e.Name)
		}
		if _, dup := run.env[e.Name]; dup {
			t.Errorf("%s sets %s twice", c.Name, e.Name)
		}
		run.env[e.Name] = e.Value
	}
	if c.Image != want.image {
		t.Errorf("%s image %q, want %q", c.Name, c.Image, want.image)
	}
	if !slices.Equal(c.Args, want.args) {
		t.Errorf("%s args %q, want %q", c.Name, c.Args, want.args)
	}
	for k, v := range map[string]string{"PEERDB_DEPLOYMENT_VERSION": want.version, "MAINTENANCE_NAME": want.gate, "MAINTENANCE_TASKS_FILE": want.tasksFile} {
		if got := envValue(c, k); got != v {
			t.Errorf("%s %s=%q, want %q", c.Name, k, got, v)
		}
	}
	if got, set := run.env["MAINTENANCE_FORCE"]; set != want.force || (set && got != "true") {
		t.Errorf("%s MAINTENANCE_FORCE=%q (set: %v), want set: %v", c.Name, got, set, want.force)
	}

	if e := envVar(c, "REDIS_URL"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Errorf("%s REDIS_URL does not come from a Secret: a URL may carry a password", c.Name)
	} else if ref := (keyRef{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}); ref != want.redis {
		t.Errorf("%s REDIS_URL from Secret %s key %s, want %s key %s", c.Name, ref.Name, ref.Key, want.redis.Name, want.redis.Key)
	} else if !external[ref.Name] {
		url := r.secret(t, ref.Name).StringData[ref.Key]
		if url == "" {
			t.Errorf("Secret %s has no key %s", ref.Name, ref.Key)
		}
		run.env["REDIS_URL"] = url
	}
	if e := envVar(c, "POD_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("%s POD_NAME does not come from the downward API (metadata.name)", c.Name)
	} else {
		run.env["POD_NAME"] = podName
	}

	for _, m := range c.VolumeMounts {
		v := podVolume(pod, m.Name)
		switch {
		case !m.ReadOnly:
			t.Errorf("%s mounts %s writable", c.Name, m.MountPath)
		case v == nil:
			t.Errorf("%s mounts volume %s, which the pod does not have", c.Name, m.Name)
		case v.ConfigMap != nil && !external[v.ConfigMap.Name]:
			cm := r.configMap(t, v.ConfigMap.Name)
			if want.tasksFile != "" && path.Dir(want.tasksFile) == m.MountPath {
				content, ok := cm.Data[path.Base(want.tasksFile)]
				if !ok {
					t.Errorf("ConfigMap %s has no %s for MAINTENANCE_TASKS_FILE", cm.Name, path.Base(want.tasksFile))
				}
				run.taskFile = content
			}
		case v.Secret != nil && !external[v.Secret.SecretName]:
			r.get(t, "Secret", v.Secret.SecretName)
		}
	}
	if want.tasksFile != "" && run.taskFile == "" {
		t.Errorf("%s: no mount holds MAINTENANCE_TASKS_FILE %s", c.Name, want.tasksFile)
	}

	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	for what, ok := range map[string]bool{
		"runAsNonRoot: true":                              sc.RunAsNonRoot != nil && *sc.RunAsNonRoot,
		"readOnlyRootFilesystem: true":                    sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		"allowPrivilegeEscalation: false":                 sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		"capabilities.drop: [ALL]":                        sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"),
		"seccompProfile: RuntimeDefault":                  sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
		"terminationMessagePolicy: FallbackToLogsOnError": c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError,
		"resources": len(c.Resources.Requests)+len(c.Resources.Limits) > 0,
	} {
		if !ok {
			t.Errorf("%s: want %s", c.Name, what)
		}
	}
	return run
}

// checkGateAccepts checks that the binary's configuration accepts the environment and that the task
// file loads, as the gate would at start. TLS files exist only in the cluster and are left out.
func checkGateAccepts(t *testing.T, run gateRun) {
	t.Helper()
	env := map[string]string{}
	for k, v := range run.env {
		if !strings.HasSuffix(k, "_FILE") || k == "MAINTENANCE_TASKS_FILE" {
			env[k] = v
		}
	}
	if env["REDIS_URL"] == "" {
		env["REDIS_URL"] = "redis://redis:6379/0" // from a Secret the user manages
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Errorf("the binary refuses the rendered environment: %v", err)
		return
	}
	if run.taskFile == "" {
		return
	}
	lc := tasks.LoadContext{Getenv: func(k string) string { return env[k] }, GateTag: "{" + cfg.KeyPrefix + ":" + cfg.Name + "}"}
	if _, err := tasks.Parse([]byte(run.taskFile), cfg.TasksFile, lc); err != nil {
		t.Errorf("the rendered task file does not load: %v\n%s", err, run.taskFile)
	}
}
