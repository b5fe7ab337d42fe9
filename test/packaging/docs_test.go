package packaging_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

func TestComposeDocShowsTheTestedFiles(t *testing.T) {
	doc := string(readRepoFile(t, "docs/compose.md"))
	blocks := map[string]bool{}
	for _, m := range yamlBlock.FindAllStringSubmatch(doc, -1) {
		blocks[m[1]] = true
	}
	for _, file := range []string{composeFile, "examples/compose-tasks.yaml", peerdbComposeFile} {
		if !blocks[string(readRepoFile(t, file))] {
			t.Errorf("docs/compose.md does not show %s as it is: copy the file into its yaml block", file)
		}
	}
}

// checkDocBlock decodes a yaml block of docs/kubernetes.md strictly into its Kubernetes type: objects
// (apiVersion and kind) through the API scheme, pod spec fragments (initContainers, volumes) into a
// PodSpec. It returns the containers it found; Helm values and Chart.yaml blocks only need to parse.
func checkDocBlock(block string) ([]corev1.Container, error) {
	var top map[string]any
	if err := yaml.Unmarshal([]byte(block), &top); err != nil {
		return nil, err
	}
	var pods []*corev1.PodSpec
	switch {
	case top["apiVersion"] != nil:
		objects, err := decodeObjects(block)
		if err != nil {
			return nil, err
		}
		for _, m := range objects {
			switch m.Object.(type) {
			case *corev1.Pod, *batchv1.Job, *appsv1.Deployment:
				pods = append(pods, m.pod())
			}
		}
	case top["initContainers"] != nil || top["containers"] != nil:
		var spec corev1.PodSpec
		if err := sigyaml.UnmarshalStrict([]byte(block), &spec); err != nil {
			return nil, err
		}
		pods = append(pods, &spec)
	}
	var containers []corev1.Container
	for _, p := range pods {
		containers = append(containers, p.InitContainers...)
		containers = append(containers, p.Containers...)
	}
	return containers, nil
}

func TestKubernetesDocSnippetsAreValid(t *testing.T) {
	doc := string(readRepoFile(t, "docs/kubernetes.md"))
	known := knownVariables()
	checked, containers := 0, 0
	for _, m := range yamlBlock.FindAllStringSubmatch(doc, -1) {
		if strings.Contains(m[1], "{{") {
			continue // a Helm template: rendered by the chart tests
		}
		cs, err := checkDocBlock(m[1])
		if err != nil {
			t.Errorf("docs/kubernetes.md: a yaml block does not decode: %v\n%s", err, m[1])
			continue
		}
		checked++
		containers += len(cs)
		for _, c := range cs {
			for _, e := range c.Env {
				if !known[e.Name] {
					t.Errorf("docs/kubernetes.md sets %s, which the binary does not read", e.Name)
				}
			}
		}
	}
	if checked < 4 || containers == 0 {
		t.Errorf("checked %d yaml blocks of docs/kubernetes.md with %d containers, want the 4 plain ones at least and the init container", checked, containers)
	}
	if _, err := checkDocBlock("initContainers:\n  - name: a\n    imagee: b\n"); err == nil {
		t.Error("a pod spec fragment with a misspelled field decoded")
	}
}

// The pre/post-upgrade values that docs/kubernetes.md shows for PeerDB's own deployment render, and the
// Jobs get the PeerDB tasks: start before an upgrade (never at install), end after it, on flow-api's gateway.
func TestKubernetesDocPeerDBHookValuesRender(t *testing.T) {
	doc := string(readRepoFile(t, "docs/kubernetes.md"))
	var values string
	for _, m := range yamlBlock.FindAllStringSubmatch(doc, -1) {
		if strings.Contains(m[1], "hooks:") && strings.Contains(m[1], "maintenance-start") && strings.Contains(m[1], "8113") {
			values = m[1]
		}
	}
	if values == "" {
		t.Fatal("docs/kubernetes.md shows no hook values for PeerDB's deployment")
	}
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	r := decodeManifests(t, helm(t, "template", release, chartDir, "--namespace", "peerdb", "-f", file))
	if events := r.get(t, "Job", fullname+"-pre").Metadata.Annotations["helm.sh/hook"]; events != "pre-upgrade" {
		t.Errorf("the pre Job runs at %q, want pre-upgrade only: at pre-install there is no flow-api", events)
	}
	data := r.configMap(t, hooksName).Data
	for job, want := range map[string][]string{"pre": {"wait-ready", "maintenance-start"}, "post": {"maintenance-end"}} {
		specs, err := tasks.Parse([]byte(data[job+".yaml"]), job+".yaml", tasks.LoadContext{})
		if err != nil {
			t.Fatalf("the %s Job's tasks do not load: %v", job, err)
		}
		var actions []string
		for _, s := range specs {
			p, ok := s.Task.(*tasks.PeerDB)
			if !ok || !strings.HasSuffix(p.URL, ":8113") {
				t.Errorf("%s task %s is not a peerdb task on flow-api's gateway port 8113", job, s.Name)
				continue
			}
			actions = append(actions, p.Action)
			if !s.When.IsZero() {
				t.Errorf("%s task %s has a when: each hook Job's gate judges it by its own recorded version", job, s.Name)
			}
		}
		if !slices.Equal(actions, want) {
			t.Errorf("%s Job actions %v, want %v", job, actions, want)
		}
	}
}
