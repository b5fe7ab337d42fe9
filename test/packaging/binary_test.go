package packaging_test

import (
	"context"
	"debug/elf"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// gateBinary builds the binary once per test run exactly as the Dockerfile does: its go build line,
// its environment and its flags, with testVersion and testCommit as build arguments.
func gateBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		d, err := parseDockerfile(readRepoFile(t, "Dockerfile"))
		if err != nil {
			buildErr = err
			return
		}
		b, err := d.goBuildRun(testBuildArgs)
		if err != nil {
			buildErr = err
			return
		}
		var env []string
		for k, v := range b.Env {
			if v != "" { // empty GOOS/GOARCH: the build platform, as BuildKit without --platform
				env = append(env, k+"="+v)
			}
		}
		out := filepath.Join(workDir, "peerdb-maintenance")
		args := append(append([]string{"build"}, b.Flags...), "-o", out, b.Package)
		_, stderr, err := tryCommand(10*time.Minute, repoRoot(t), env, "go", args...)
		if err != nil {
			buildErr = errors.New("go " + strings.Join(args, " ") + ": " + err.Error() + "\n" + stderr)
			return
		}
		builtPath = out
	})
	if buildErr != nil {
		t.Fatalf("build as the Dockerfile does: %v", buildErr)
	}
	return builtPath
}

func TestBinaryIsStaticAndStripped(t *testing.T) {
	f, err := elf.Open(gateBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a program interpreter (PT_INTERP): it is dynamically linked and will not start in a scratch image")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("imported libraries %q (err %v), want none", libs, err)
	}
	if syms, err := f.DynamicSymbols(); len(syms) > 0 || (err != nil && !errors.Is(err, elf.ErrNoSymbols)) {
		t.Errorf("%d dynamic symbols (err %v), want none", len(syms), err)
	}
	if f.Section(".dynamic") != nil {
		t.Error("the binary has a .dynamic section")
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary keeps its symbol table: -ldflags -s did not apply")
	}
	if f.Section(".debug_info") != nil {
		t.Error("the binary keeps DWARF: -ldflags -w did not apply")
	}
}

func TestBinaryReportsBuildArguments(t *testing.T) {
	out := command(t, time.Minute, "", nil, gateBinary(t), "version")
	for _, want := range []string{testVersion, testCommit} {
		if !strings.Contains(out, want) {
			t.Errorf("version printed %q, want it to contain %q (set with -X main.version/main.commit)", out, want)
		}
	}
}

func TestBinaryRunsAloneInEmptyRoot(t *testing.T) {
	root := scratchRoot(t, nil)
	if r := runInRoot(t, root, nil, "version"); r.code != 0 || !strings.Contains(r.stdout, testVersion) {
		t.Fatalf("version in an empty root: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	srv := redistest.Start(t)
	env := []string{
		"PEERDB_DEPLOYMENT_VERSION=v1.2.3",
		"REDIS_URL=redis://" + srv.Addr + "/0",
		"MAINTENANCE_CONNECT_TIMEOUT=10s",
		"MAINTENANCE_WAIT_TIMEOUT=30s",
	}
	if r := runInRoot(t, root, env); r.code != 0 {
		t.Fatalf("gate run in an empty root: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	got, err := srv.Client().Get(context.Background(), "{peerdb:maintenance:default}:version").Result()
	if err != nil || got != "v1.2.3" {
		t.Fatalf("recorded version %q (err %v), want v1.2.3", got, err)
	}
	if r := runInRoot(t, root, env, "status"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "v1.2.3") {
		t.Errorf("status in an empty root: exit %d, want 0 and the recorded version\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
