package packaging_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The parts of Kubernetes objects the tests read. Unknown fields are ignored.
type (
	manifest struct {
		Kind       string            `yaml:"kind"`
		Metadata   objectMeta        `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`
		StringData map[string]string `yaml:"stringData"`
		Spec       struct {
			Replicas              *int    `yaml:"replicas"`
			BackoffLimit          *int    `yaml:"backoffLimit"`
			ActiveDeadlineSeconds *int    `yaml:"activeDeadlineSeconds"`
			Template              podTmpl `yaml:"template"`
			podSpec               `yaml:",inline"`
		} `yaml:"spec"`
	}
	objectMeta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	podTmpl struct {
		Metadata objectMeta `yaml:"metadata"`
		Spec     podSpec    `yaml:"spec"`
	}
	podSpec struct {
		RestartPolicy                string         `yaml:"restartPolicy"`
		AutomountServiceAccountToken *bool          `yaml:"automountServiceAccountToken"`
		SecurityContext              map[string]any `yaml:"securityContext"`
		InitContainers               []container    `yaml:"initContainers"`
		Containers                   []container    `yaml:"containers"`
		Volumes                      []volume       `yaml:"volumes"`
	}
	container struct {
		Name                     string            `yaml:"name"`
		Image                    string            `yaml:"image"`
		Args                     []string          `yaml:"args"`
		Env                      []envVar          `yaml:"env"`
		VolumeMounts             []volumeMount     `yaml:"volumeMounts"`
		Resources                map[string]any    `yaml:"resources"`
		SecurityContext          containerSecurity `yaml:"securityContext"`
		TerminationMessagePolicy string            `yaml:"terminationMessagePolicy"`
	}
	envVar struct {
		Name      string  `yaml:"name"`
		Value     *string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *keyRef `yaml:"secretKeyRef"`
			FieldRef     *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	}
	keyRef struct {
		Name string `yaml:"name"`
		Key  string `yaml:"key"`
	}
	volumeMount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	}
	volume struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	}
	containerSecurity struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
)

// rendered is the output of helm template, indexed by kind and name.
type rendered map[string]map[string]*manifest

func decodeManifests(t testing.TB, out string) rendered {
	t.Helper()
	r := rendered{}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(out)))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered manifests are not valid YAML: %v\n%s", err, out)
		}
		if m.Kind == "" {
			continue
		}
		if r[m.Kind] == nil {
			r[m.Kind] = map[string]*manifest{}
		}
		if r[m.Kind][m.Metadata.Name] != nil {
			t.Errorf("%s %s rendered twice", m.Kind, m.Metadata.Name)
		}
		r[m.Kind][m.Metadata.Name] = &m
	}
	return r
}

// get returns the object of kind called name, failing the test when it was not rendered.
func (r rendered) get(t testing.TB, kind, name string) *manifest {
	t.Helper()
	m := r[kind][name]
	if m == nil {
		var names []string
		for n := range r[kind] {
			names = append(names, n)
		}
		t.Fatalf("no %s %q rendered (%s: %q)", kind, name, kind, names)
	}
	return m
}

// pod returns the pod spec of a Pod, Job or Deployment.
func (m *manifest) pod() *podSpec {
	if m.Kind == "Pod" {
		return &m.Spec.podSpec
	}
	return &m.Spec.Template.Spec
}

// env returns the container's environment variable called name, or nil.
func (c *container) env(name string) *envVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// value returns the literal value of the variable called name, or "" when it is unset or not literal.
func (c *container) value(name string) string {
	if e := c.env(name); e != nil && e.Value != nil {
		return *e.Value
	}
	return ""
}

// volume returns the pod volume called name, or nil.
func (p *podSpec) volume(name string) *volume {
	for i := range p.Volumes {
		if p.Volumes[i].Name == name {
			return &p.Volumes[i]
		}
	}
	return nil
}
