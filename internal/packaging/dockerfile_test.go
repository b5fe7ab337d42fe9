package packaging_test

import (
	"encoding/json"
	"go/version"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Build arguments the tests build with; the binary must report them.
const (
	testVersion = "v9.8.7-packaging"
	testCommit  = "0123abc"
)

// testBuildArgs are the Dockerfile's build arguments for the tests. TARGETOS and TARGETARCH are empty,
// as in a build for the build platform.
var testBuildArgs = map[string]string{"VERSION": testVersion, "COMMIT": testCommit}

func TestDockerfileBuildsLikeMakefile(t *testing.T) {
	docker, err := dockerfileBuild(readRepoFile(t, "Dockerfile"), testBuildArgs)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := makefileBuild(readRepoFile(t, "Makefile"), testBuildArgs)
	if err != nil {
		t.Fatal(err)
	}
	if docker.Env["CGO_ENABLED"] != "0" || mk.Env["CGO_ENABLED"] != "0" {
		t.Errorf("CGO_ENABLED: Dockerfile %q, Makefile %q; both must be 0 for a static binary", docker.Env["CGO_ENABLED"], mk.Env["CGO_ENABLED"])
	}
	for k := range docker.Env {
		if k != "GOOS" && k != "GOARCH" && docker.Env[k] != mk.Env[k] {
			t.Errorf("%s: Dockerfile %q, Makefile %q", k, docker.Env[k], mk.Env[k])
		}
	}
	if !slices.Equal(docker.Flags, mk.Flags) || docker.Package != mk.Package {
		t.Errorf("go build differs:\nDockerfile: %q %s\nMakefile:   %q %s", docker.Flags, docker.Package, mk.Flags, mk.Package)
	}
	wantLdflags := "-s -w -X main.version=" + testVersion + " -X main.commit=" + testCommit
	if !slices.Contains(docker.Flags, "-trimpath") || !slices.Contains(docker.Flags, wantLdflags) {
		t.Errorf("Dockerfile go build flags %q: want -trimpath and -ldflags %q", docker.Flags, wantLdflags)
	}
	if docker.Package != "." {
		t.Errorf("Dockerfile builds %q, want the module root (.)", docker.Package)
	}
}

func TestDockerfileLayersAndFinalStage(t *testing.T) {
	ins := parseDockerfile(readRepoFile(t, "Dockerfile"))
	find := func(cmd, contains string) int {
		for i, in := range ins {
			if in.Cmd == cmd && strings.Contains(in.Args, contains) {
				return i
			}
		}
		t.Errorf("no %s instruction containing %q", cmd, contains)
		return -1
	}
	// Dependencies are downloaded in their own layer, before the sources are copied.
	copyMod, download := find("COPY", "go.mod go.sum"), find("RUN", "go mod download")
	copyAll, build := find("COPY", ". ."), find("RUN", "go build")
	if !(copyMod < download && download < copyAll && copyAll < build) {
		t.Errorf("layer order: COPY go.mod go.sum (#%d), go mod download (#%d), COPY . . (#%d), go build (#%d)", copyMod, download, copyAll, build)
	}

	last := -1
	for i, in := range ins {
		if in.Cmd == "FROM" {
			last = i
		}
		if in.Cmd == "HEALTHCHECK" {
			t.Errorf("line %d: HEALTHCHECK in the image of a one-shot", in.Line)
		}
	}
	if last < 0 {
		t.Fatal("no FROM")
	}
	final := ins[last:]
	if base := final[0].Args; base != "gcr.io/distroless/static:nonroot" && base != "scratch" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static:nonroot (or scratch)", base)
	}
	got := map[string]string{}
	labels := map[string]bool{}
	for _, in := range final {
		got[in.Cmd] = in.Args
		if in.Cmd == "LABEL" {
			words, err := shellWords(in.Args)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range words {
				k, _, _ := strings.Cut(w, "=")
				labels[k] = true
			}
		}
	}
	if got["USER"] != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", got["USER"])
	}
	var entrypoint []string
	if err := json.Unmarshal([]byte(got["ENTRYPOINT"]), &entrypoint); err != nil || len(entrypoint) == 0 {
		t.Fatalf("ENTRYPOINT %q is not in exec form (a JSON array): %v", got["ENTRYPOINT"], err)
	}
	copied := strings.Fields(got["COPY"])
	docker, err := dockerfileBuild(readRepoFile(t, "Dockerfile"), testBuildArgs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--from=build", docker.Output, entrypoint[0]}
	if !slices.Equal(copied, want) {
		t.Errorf("final COPY %q, want %q: the built binary, copied to the entrypoint", copied, want)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("no LABEL org.opencontainers.image.%s", l)
		}
	}
}

func TestDockerfileGoIsNotOlderThanGoMod(t *testing.T) {
	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(readRepoFile(t, "Dockerfile"))
	mod := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readRepoFile(t, "go.mod"))
	if arg == nil || mod == nil {
		t.Fatalf("ARG GO_VERSION in the Dockerfile (%q) or the go line of go.mod (%q) not found", arg, mod)
	}
	if version.Compare("go"+string(arg[1]), "go"+string(mod[1])) < 0 {
		t.Errorf("Dockerfile builds with Go %s, older than go.mod's go %s", arg[1], mod[1])
	}
}

func TestDockerignoreKeepsWhatTheBuildCompiles(t *testing.T) {
	root := repoRoot(t)
	patterns := dockerignorePatterns(t, readRepoFile(t, ".dockerignore"))
	format := `{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}`
	out := command(t, 5*time.Minute, root, []string{"CGO_ENABLED=0"}, "go", "list", "-deps", "-f", format, ".")
	needed := []string{"go.mod", "go.sum"}
	for _, file := range strings.Fields(out) {
		needed = append(needed, strings.TrimPrefix(file, root+"/"))
	}
	if len(needed) < 3 {
		t.Fatalf("go list found no source files:\n%s", out)
	}
	for _, file := range needed {
		if p := excludedBy(patterns, file); p != "" {
			t.Errorf("%s is compiled into the binary but .dockerignore excludes it (%s)", file, p)
		}
	}
	for _, file := range []string{".git/HEAD", "bin/peerdb-maintenance", "charts/peerdb-maintenance/values.yaml", "tasks/exec_test.go"} {
		if excludedBy(patterns, file) == "" {
			t.Errorf("%s is sent to the Docker build context; .dockerignore should exclude it", file)
		}
	}
}

// dockerignorePatterns reads .dockerignore. Exceptions (!pattern) are not supported by excludedBy.
func dockerignorePatterns(t *testing.T, data []byte) []string {
	var ps []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore exception %q: this test only understands plain patterns", line)
		}
		ps = append(ps, strings.TrimPrefix(line, "/"))
	}
	return ps
}

// excludedBy returns the pattern that excludes path (or one of its parent directories), or "".
func excludedBy(patterns []string, path string) string {
	for _, p := range patterns {
		re := globRegexp(p)
		for dir := path; dir != "." && dir != ""; dir = parentDir(dir) {
			if re.MatchString(dir) {
				return p
			}
		}
	}
	return ""
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// globRegexp turns a .dockerignore pattern (Go filepath.Match syntax plus **) into a regexp.
func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
