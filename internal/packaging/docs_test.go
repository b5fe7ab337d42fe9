package packaging_test

import (
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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
