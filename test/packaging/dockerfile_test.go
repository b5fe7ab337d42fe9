package packaging_test

import (
	"bytes"
	"debug/buildinfo"
	"go/version"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/mod/modfile"
)

// Build arguments the tests build with; the binary must report them.
const (
	testVersion = "v9.8.7-packaging"
	testCommit  = "0123abc"
)

// testBuildArgs are the Dockerfile's build arguments for the tests. TARGETOS and TARGETARCH are empty,
// as in a build for the build platform.
var testBuildArgs = map[string]string{"VERSION": testVersion, "COMMIT": testCommit}

// buildSettings returns the build settings Go recorded in the binary at path (go version -m shows
// them): flags, CGO_ENABLED, GOOS, GOARCH... With -trimpath, Go leaves -ldflags out.
func buildSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	settings := map[string]string{"path": info.Path}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	return settings
}

// TestDockerfileBuildsLikeMakefile builds with make build and compares with the Dockerfile's build:
// Go builds reproducibly, so the same flags, environment and sources give the same bytes.
func TestDockerfileBuildsLikeMakefile(t *testing.T) {
	docker := gateBinary(t)
	mk := filepath.Join(t.TempDir(), "peerdb-maintenance")
	command(t, 10*time.Minute, repoRoot(t), nil, "make", "--no-print-directory", "build",
		"BIN="+mk, "VERSION="+testVersion, "COMMIT="+testCommit)
	a, errA := os.ReadFile(docker)
	b, errB := os.ReadFile(mk)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !bytes.Equal(a, b) {
		ds, ms := buildSettings(t, docker), buildSettings(t, mk)
		t.Errorf("the Dockerfile's go build and make build give different binaries (%d and %d bytes); build settings:\nDockerfile: %v\nmake build: %v", len(a), len(b), ds, ms)
	}
	want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "path": modulePath}
	settings := buildSettings(t, docker)
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], v)
		}
	}
	d, err := repoDockerfile(t).goBuildRun(testBuildArgs)
	if err != nil {
		t.Fatal(err)
	}
	wantLdflags := "-s -w -X main.version=" + testVersion + " -X main.commit=" + testCommit
	if !slices.Contains(d.Flags, "-trimpath") || !slices.Contains(d.Flags, wantLdflags) || d.Package != "." {
		t.Errorf("Dockerfile go build %q %s: want -trimpath and -ldflags %q, the module root", d.Flags, d.Package, wantLdflags)
	}
}

func TestDockerfileLayersAndFinalStage(t *testing.T) {
	d := repoDockerfile(t)
	var build []instructions.Command
	for _, st := range d.stages {
		if st.Name == "build" {
			build = st.Commands
		}
		for _, cmd := range st.Commands {
			if _, ok := cmd.(*instructions.HealthCheckCommand); ok {
				t.Errorf("%s: HEALTHCHECK in the image of a one-shot", cmd)
			}
		}
	}
	index := func(what string, match func(instructions.Command) bool) int {
		i := slices.IndexFunc(build, match)
		if i < 0 {
			t.Errorf("the build stage has no %s", what)
		}
		return i
	}
	copies := func(src ...string) func(instructions.Command) bool {
		return func(cmd instructions.Command) bool {
			c, ok := cmd.(*instructions.CopyCommand)
			return ok && slices.Equal(c.SourcePaths, src)
		}
	}
	runs := func(contains string) func(instructions.Command) bool {
		return func(cmd instructions.Command) bool {
			c, ok := cmd.(*instructions.RunCommand)
			return ok && strings.Contains(strings.Join(c.CmdLine, " "), contains)
		}
	}
	// Dependencies are downloaded in their own layer, before the sources are copied.
	copyMod, download := index("COPY go.mod go.sum", copies("go.mod", "go.sum")), index("RUN go mod download", runs("go mod download"))
	copyAll, goBuild := index("COPY . .", copies(".")), index("RUN go build", runs("go build"))
	if !(copyMod < download && download < copyAll && copyAll < goBuild) {
		t.Errorf("layer order: COPY go.mod go.sum (#%d), go mod download (#%d), COPY . . (#%d), go build (#%d)", copyMod, download, copyAll, goBuild)
	}

	final := d.stages[len(d.stages)-1]
	// A digest (Renovate pins one) may follow the tag.
	if base, _, _ := strings.Cut(final.BaseName, "@sha256:"); base != "gcr.io/distroless/static:nonroot" && base != "scratch" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static:nonroot (or scratch)", final.BaseName)
	}
	b, err := d.goBuildRun(testBuildArgs)
	if err != nil {
		t.Fatal(err)
	}
	var user string
	var entrypoint []string
	var finalCopies []*instructions.CopyCommand
	labels := map[string]bool{}
	for _, cmd := range final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Errorf("ENTRYPOINT %q is in shell form; the image has no shell: use the exec form (a JSON array)", c.CmdLine)
			}
			entrypoint = c.CmdLine
		case *instructions.CopyCommand:
			finalCopies = append(finalCopies, c)
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = true
			}
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", user)
	}
	if len(entrypoint) == 0 {
		t.Fatal("the final stage has no ENTRYPOINT")
	}
	if len(finalCopies) != 1 || finalCopies[0].From != "build" || !slices.Equal(finalCopies[0].SourcePaths, []string{b.Output}) || finalCopies[0].DestPath != entrypoint[0] {
		t.Errorf("final stage COPY %v, want only the built binary %s from the build stage, copied to the entrypoint %s", finalCopies, b.Output, entrypoint[0])
	}
	for _, l := range []string{"title", "description", "source", "version", "revision"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("no LABEL org.opencontainers.image.%s", l)
		}
	}
}

func TestDockerfileGoIsNotOlderThanGoMod(t *testing.T) {
	goVersion, ok := repoDockerfile(t).metaArg("GO_VERSION")
	if !ok {
		t.Fatal("the Dockerfile declares no ARG GO_VERSION=... before its first FROM")
	}
	mod, err := modfile.ParseLax("go.mod", readRepoFile(t, "go.mod"), nil)
	if err != nil || mod.Go == nil {
		t.Fatalf("go.mod: no go line (%v)", err)
	}
	if version.Compare("go"+goVersion, "go"+mod.Go.Version) < 0 {
		t.Errorf("Dockerfile builds with Go %s, older than go.mod's go %s", goVersion, mod.Go.Version)
	}
}

func TestDockerignoreKeepsWhatTheBuildCompiles(t *testing.T) {
	root := repoRoot(t)
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readRepoFile(t, ".dockerignore")))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	excluded := func(file string) bool {
		ok, err := pm.MatchesOrParentMatches(file)
		if err != nil {
			t.Fatalf(".dockerignore on %s: %v", file, err)
		}
		return ok
	}
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
		if excluded(file) {
			t.Errorf("%s is compiled into the binary but .dockerignore excludes it", file)
		}
	}
	for _, file := range []string{".git/HEAD", "bin/peerdb-maintenance", "charts/peerdb-maintenance/values.yaml",
		"tasks/exec_test.go", "test/packaging/go.mod", "dist/checksums.txt", ".github/workflows/ci.yml"} {
		if !excluded(file) {
			t.Errorf("%s is sent to the Docker build context; .dockerignore should exclude it", file)
		}
	}
}
