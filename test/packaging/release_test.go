package packaging_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	publishedImage = "ghcr.io/peerdb-maintenance/peerdb-maintenance"
	publishedChart = "oci://ghcr.io/peerdb-maintenance/charts/peerdb-maintenance"
	releaseFlow    = ".github/workflows/release.yml"
	ciFlow         = ".github/workflows/ci.yml"
)

// workflow is the part of a GitHub Actions workflow the tests read; actionlint (scripts/lint-workflows.sh)
// checks the whole of it.
type workflow struct {
	On map[string]*struct { // a key for each event; the value nil for an event without filters
		Branches []string `yaml:"branches"`
		Tags     []string `yaml:"tags"`
	} `yaml:"on"`
	Env  map[string]string `yaml:"env"`
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Uses yaml.Node `yaml:"uses"` // a node, for its line and comment
			Run  string    `yaml:"run"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// parseWorkflow decodes a workflow file.
func parseWorkflow(t *testing.T, path string) workflow {
	t.Helper()
	w, err := decodeWorkflow(readRepoFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return w
}

func decodeWorkflow(data []byte) (workflow, error) {
	var w workflow
	err := yaml.Unmarshal(data, &w)
	return w, err
}

// pinnedAction is a remote action pinned to a full commit; versionComment names its release.
var (
	pinnedAction   = regexp.MustCompile(`^[\w.-]+/[\w./-]+@[0-9a-f]{40}$`)
	versionComment = regexp.MustCompile(`^# v\d+\.\d+\.\d+$`)
)

// unpinnedUses returns the remote actions of a workflow not pinned by full commit digest with a
// "# vX.Y.Z" comment naming the release, as "line N: uses".
func unpinnedUses(w workflow) []string {
	var bad []string
	for _, job := range w.Jobs {
		for _, step := range job.Steps {
			uses := step.Uses.Value
			if uses == "" || strings.HasPrefix(uses, "./") {
				continue
			}
			if !pinnedAction.MatchString(uses) || !versionComment.MatchString(step.Uses.LineComment) {
				bad = append(bad, fmt.Sprintf("line %d: %s %s", step.Uses.Line, uses, step.Uses.LineComment))
			}
		}
	}
	return bad
}

func TestWorkflowActionsArePinnedByDigest(t *testing.T) {
	for _, path := range []string{ciFlow, releaseFlow} {
		for _, u := range unpinnedUses(parseWorkflow(t, path)) {
			t.Errorf("%s: %s: pin the action by its full commit digest with the release in a comment (@<40 hex> # vX.Y.Z)", path, u)
		}
	}
	for _, uses := range []string{"actions/checkout@v4", "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "actions/checkout@11bd719 # v4.2.2"} {
		w, err := decodeWorkflow([]byte("on: {push: {}}\njobs:\n  a:\n    steps:\n      - uses: " + uses + "\n"))
		if err != nil || len(unpinnedUses(w)) != 1 {
			t.Errorf("uses: %s was not reported (%v)", uses, err)
		}
	}
}

func TestReleasePublishesWhatTheChartAndDocsName(t *testing.T) {
	w := parseWorkflow(t, releaseFlow)
	if push := w.On["push"]; len(w.On) != 1 || push == nil || len(push.Tags) != 1 || push.Tags[0] != "v*" || len(push.Branches) > 0 {
		t.Errorf("%s must run on the push of v* tags alone: %+v", releaseFlow, w.On)
	}
	if w.Env["IMAGE"] != publishedImage || "oci://"+w.Env["CHARTS"]+"/peerdb-maintenance" != publishedChart {
		t.Errorf("%s publishes IMAGE=%s CHARTS=%s, want %s and %s", releaseFlow, w.Env["IMAGE"], w.Env["CHARTS"], publishedImage, publishedChart)
	}
	var values struct {
		Image struct {
			Repository string `yaml:"repository"`
		} `yaml:"image"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, chartDir+"/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if values.Image.Repository != publishedImage {
		t.Errorf("the chart's image.repository is %q, not the image the release publishes (%s)", values.Image.Repository, publishedImage)
	}

	install := string(readRepoFile(t, "docs/install.md"))
	for _, want := range []string{publishedImage, publishedChart, "cosign verify ", "cosign verify-blob ", "cosign verify-attestation "} {
		if !strings.Contains(install, want) {
			t.Errorf("docs/install.md does not mention %q", want)
		}
	}
	// The identity every verification names must be the one the release workflow signs with.
	identity := regexp.MustCompile(`--certificate-identity-regexp '([^']+)'`).FindAllStringSubmatch(install, -1)
	if len(identity) < 3 {
		t.Fatalf("docs/install.md gives %d --certificate-identity-regexp, want one per verification", len(identity))
	}
	signer := "https://github.com/peerdb-maintenance/peerdb-maintenance/" + releaseFlow + "@refs/tags/v1.2.3"
	for _, m := range identity {
		re, err := regexp.Compile(m[1])
		if err != nil || !re.MatchString(signer) || re.MatchString(strings.Replace(signer, "refs/tags", "refs/heads", 1)) {
			t.Errorf("--certificate-identity-regexp %q (err %v) must match %s and no branch", m[1], err, signer)
		}
	}
	if n := strings.Count(install, "--certificate-oidc-issuer https://token.actions.githubusercontent.com"); n != len(identity) {
		t.Errorf("%d verifications name the OIDC issuer https://token.actions.githubusercontent.com, want %d", n, len(identity))
	}
}

func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	w := parseWorkflow(t, ciFlow)
	if _, push := w.On["push"]; !push {
		t.Errorf("%s must run on push", ciFlow)
	}
	if _, pr := w.On["pull_request"]; !pr {
		t.Errorf("%s must run on pull_request", ciFlow)
	}
	var runs []string
	for id, job := range w.Jobs {
		for _, step := range job.Steps {
			runs = append(runs, step.Run)
		}
		if id == "test" && job.Env["CI"] != "true" {
			t.Errorf("%s job test sets CI=%q, want true: tests would skip instead of fail", ciFlow, job.Env["CI"])
		}
	}
	for _, want := range []string{"make test", "scripts/release-check.sh"} {
		found := false
		for _, r := range runs {
			found = found || strings.TrimSpace(r) == want
		}
		if !found {
			t.Errorf("%s does not run %q (runs %q)", ciFlow, want, runs)
		}
	}
	if !strings.Contains(string(readRepoFile(t, "README.md")), "make test") {
		t.Error("the README no longer names make test as the test command")
	}
}

// TestReleaseVersionPolicy runs scripts/release-version.sh on copies of the chart and changelog.
func TestReleaseVersionPolicy(t *testing.T) {
	script := filepath.Join(repoRoot(t), "scripts", "release-version.sh")
	chart := "apiVersion: v2\nname: peerdb-maintenance\nversion: %s\nappVersion: \"%s\"\n"
	changelog := "# Changelog\n\n## [Unreleased]\n\n## [1.2.3] - 2026-11-30\n\n### Fixed\n\n- Something.\n\n## [1.2.2] - 2026-11-01\n\n- Older.\n"
	for _, tc := range []struct {
		name, tag, version, appVersion, changelog string
		ok                                        bool
	}{
		{"all agree", "v1.2.3", "1.2.3", "1.2.3", changelog, true},
		{"tag without v", "1.2.3", "1.2.3", "1.2.3", changelog, false},
		{"tag not semver", "v1.2", "1.2.3", "1.2.3", changelog, false},
		{"chart version behind", "v1.2.3", "1.2.2", "1.2.3", changelog, false},
		{"appVersion behind", "v1.2.3", "1.2.3", "1.2.2", changelog, false},
		{"no changelog section", "v1.2.4", "1.2.4", "1.2.4", changelog, false},
		{"empty changelog section", "v1.2.3", "1.2.3", "1.2.3", strings.Replace(changelog, "### Fixed\n\n- Something.\n\n", "", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "charts", "peerdb-maintenance"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(root, "charts", "peerdb-maintenance", "Chart.yaml"), strings.ReplaceAll(strings.Replace(chart, "%s", tc.version, 1), "%s", tc.appVersion))
			writeFile(t, filepath.Join(root, "CHANGELOG.md"), tc.changelog)
			out, stderr, err := tryCommand(time.Minute, root, []string{"ROOT=" + root}, script, tc.tag)
			if (err == nil) != tc.ok {
				t.Errorf("release-version.sh %s: err %v, want ok %v\n%s%s", tc.tag, err, tc.ok, out, stderr)
			}
		})
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "CHANGELOG.md"), changelog)
	notes := command(t, time.Minute, root, []string{"ROOT=" + root}, script, "--notes", "v1.2.3")
	if !strings.Contains(notes, "- Something.") || strings.Contains(notes, "Older") || strings.Contains(notes, "## [") {
		t.Errorf("release notes of v1.2.3: %q, want its section alone", notes)
	}
}

func TestChangelogKeepsAChangelog(t *testing.T) {
	log := string(readRepoFile(t, "CHANGELOG.md"))
	if !strings.Contains(log, "https://keepachangelog.com/") || !strings.Contains(log, "\n## [Unreleased]\n") {
		t.Error("CHANGELOG.md does not follow Keep a Changelog (a link to it and an [Unreleased] section)")
	}
	sections := regexp.MustCompile(`(?m)^## \[([^\]]+)\](.*)$`).FindAllStringSubmatch(log, -1)
	for _, s := range sections {
		if s[1] != "Unreleased" && !regexp.MustCompile(`^ - \d{4}-\d{2}-\d{2}$`).MatchString(s[2]) {
			t.Errorf("CHANGELOG.md section %q: want \"## [X.Y.Z] - YYYY-MM-DD\"", s[0])
		}
	}
}

// writeFile writes data to path, failing the test on error.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
