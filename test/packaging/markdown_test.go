package packaging_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/mdtest"
)

// TestDocumentsRenderAsWritten parses README.md and docs/*.md as GitHub renders them: a fence that
// does not close where it was meant to turns every following section into one code block.
func TestDocumentsRenderAsWritten(t *testing.T) {
	docs, _ := filepath.Glob(filepath.Join(repoRoot(t), "docs", "*.md"))
	docs = append(docs, filepath.Join(repoRoot(t), "README.md"), filepath.Join(repoRoot(t), "charts", "peerdb-maintenance", "README.md"))
	if len(docs) < 4 {
		t.Fatalf("found %d documents, want README.md and docs/*.md", len(docs))
	}
	for _, path := range docs {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range mdtest.Problems(path, src) {
			t.Error(strings.TrimPrefix(p, repoRoot(t)+string(filepath.Separator)))
		}
	}
}

func TestMarkdownProblemsAreFound(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"text after a closing fence": "# a\n\n```yaml\nx: 1\n``` text\n\n## b\n\nmore\n",
		"unclosed fence":             "# a\n\n```sh\necho\n",
		"broken relative link":       "# a\n\nsee [tasks](docs/nothing.md)\n",
	} {
		if ps := mdtest.Problems(filepath.Join(dir, "doc.md"), []byte(src)); len(ps) == 0 {
			t.Errorf("%s: no problem found in %q", name, src)
		}
	}
	ok := "# a\n\n```yaml\nx: 1\n```\n\n## b\n\n[abs](https://example.com) [here](#a)\n"
	if ps := mdtest.Problems(filepath.Join(dir, "doc.md"), []byte(ok)); len(ps) > 0 {
		t.Errorf("a well-formed document has problems: %q", ps)
	}
}

var readmeVarRow = regexp.MustCompile("(?m)^\\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \\| ([^|]+) \\|")

// TestTheREADMEConfigurationTableAgreesWithTheConfig compares the README's table with the Config
// struct that --help is generated from: every variable once, with the same default.
func TestTheREADMEConfigurationTableAgreesWithTheConfig(t *testing.T) {
	readme := string(readRepoFile(t, "README.md"))
	section, _, _ := strings.Cut(readme[strings.Index(readme, "## Configuration"):], "\n## ")
	documented := map[string]string{}
	for _, m := range readmeVarRow.FindAllStringSubmatch(section, -1) {
		for _, name := range strings.Split(m[1], ", ") {
			documented[strings.Trim(name, "`")] = strings.Trim(strings.TrimSpace(m[2]), "`")
		}
	}
	vars := config.Vars()
	if len(vars) != len(knownVariables()) {
		t.Fatalf("config.Vars lists %d variables, the Config struct has %d", len(vars), len(knownVariables()))
	}
	for _, v := range vars {
		def, ok := documented[v.Name]
		switch {
		case !ok:
			t.Errorf("%s is missing from the README's configuration table", v.Name)
		case def != v.Default:
			t.Errorf("the README gives %s the default %q, the binary %q", v.Name, def, v.Default)
		}
		delete(documented, v.Name)
	}
	for name := range documented {
		t.Errorf("the README's configuration table documents %s, which the binary does not read", name)
	}
}
