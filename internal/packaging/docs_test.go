package packaging_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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

// envNames collects the names of every env list item in a YAML document.
func envNames(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if list, ok := child.([]any); ok && k == "env" {
				for _, item := range list {
					if m, ok := item.(map[string]any); ok {
						name, _ := m["name"].(string)
						*out = append(*out, name)
					}
				}
			}
			envNames(child, out)
		}
	case []any:
		for _, child := range v {
			envNames(child, out)
		}
	}
}

func TestKubernetesDocSnippetsAreValid(t *testing.T) {
	doc := string(readRepoFile(t, "docs/kubernetes.md"))
	known := knownVariables()
	checked := 0
	for _, m := range yamlBlock.FindAllStringSubmatch(doc, -1) {
		if strings.Contains(m[1], "{{") {
			continue // a Helm template: rendered by the chart tests
		}
		var v any
		if err := yaml.Unmarshal([]byte(m[1]), &v); err != nil {
			t.Errorf("docs/kubernetes.md: a yaml block does not parse: %v\n%s", err, m[1])
			continue
		}
		checked++
		var names []string
		envNames(v, &names)
		for _, name := range names {
			if !known[name] {
				t.Errorf("docs/kubernetes.md sets %s, which the binary does not read", name)
			}
		}
	}
	if checked < 4 {
		t.Errorf("checked %d yaml blocks of docs/kubernetes.md, want the 4 plain ones at least", checked)
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
	data := r.get(t, "ConfigMap", hooksName).Data
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
