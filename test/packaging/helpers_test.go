// Package packaging_test checks how peerdb-maintenance is shipped: the Dockerfile and the binary it
// builds, the Helm chart and its example parent chart, and the docker-compose example. The tests run
// the real tools (go build, helm) and the real binary; what they need is skipped when missing, except
// under CI=true, where a missing tool fails the test.
package packaging_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
)

// modulePath is the module the repository root must declare.
const modulePath = "github.com/peerdb-maintenance/peerdb-maintenance"

// workDir holds what the tests build once (the binary) for the whole package.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "peerdb-maintenance-packaging-")
	if err != nil {
		panic(err)
	}
	workDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// unavailable skips the test outside CI and fails it under CI=true, where every test must run.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format+" (CI=true: nothing may be skipped)", args...)
	}
	t.Skipf(format, args...)
}

// repoRoot returns the repository root: two levels up, holding the product module's go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(data), "module "+modulePath+"\n") {
		t.Fatalf("%s is not the repository root (go.mod of %s): %v", root, modulePath, err)
	}
	return root
}

// readRepoFile returns a file of the repository, by slash-separated path from the root.
func readRepoFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// command runs name with args in dir, bounded by timeout, and returns its stdout. It fails the test
// with the command's stderr when the command fails.
func command(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, stderr, err := tryCommand(timeout, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr)
	}
	return out
}

// tryCommand is command without the test: it returns stdout, stderr and the error.
func tryCommand(timeout time.Duration, dir string, env []string, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return stdout.String(), stderr.String(), err
}

var (
	goPathOnce sync.Once
	goPath     string
)

// goBinDir returns $(go env GOPATH)/bin, where scripts/test-deps.sh installs helm.
func goBinDir(t testing.TB) string {
	t.Helper()
	goPathOnce.Do(func() {
		out, _, err := tryCommand(time.Minute, "", nil, "go", "env", "GOPATH")
		if err == nil {
			goPath = strings.TrimSpace(strings.Split(out, string(os.PathListSeparator))[0])
		}
	})
	if goPath == "" {
		t.Fatal("go env GOPATH failed")
	}
	return filepath.Join(goPath, "bin")
}

// helmBinary returns helm from PATH or $(go env GOPATH)/bin.
func helmBinary(t testing.TB) string {
	t.Helper()
	if path, err := exec.LookPath("helm"); err == nil {
		return path
	}
	path := filepath.Join(goBinDir(t), "helm")
	if _, err := os.Stat(path); err != nil {
		unavailable(t, "helm not found on PATH or in %s: install it with go install helm.sh/helm/v3/cmd/helm@v3.22.0", goBinDir(t))
	}
	return path
}

// helm runs helm with its cache, configuration and data in a temporary directory, so that the tests
// neither read nor change the user's helm setup.
func helm(t testing.TB, args ...string) string {
	t.Helper()
	out, stderr, err := tryHelm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// tryHelm is helm without failing: it returns stdout, stderr and the error.
func tryHelm(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	bin := helmBinary(t)
	home := t.TempDir()
	env := []string{
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data"),
		"KUBECONFIG=" + filepath.Join(home, "kubeconfig"),
	}
	return tryCommand(2*time.Minute, repoRoot(t), env, bin, args...)
}

// knownVariables returns every environment variable the binary reads, from the env tags of its
// configuration: the single source of truth for what a chart or compose file may set.
func knownVariables() map[string]bool {
	known := map[string]bool{}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ",")
		if name != "" && name != "-" {
			known[name] = true
		}
	}
	return known
}

// copyTree copies the directory src to dst (files and directories only).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
