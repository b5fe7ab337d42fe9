package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestInstallIntoAReadOnlyDirectoryNamesIt runs the built binary as a user who cannot write the
// directory (nobody, when the test runs as root, whom permissions do not stop).
func TestInstallIntoAReadOnlyDirectoryNamesIt(t *testing.T) {
	dir := worldReadableDir(t)
	cmd := exec.Command(installedCopy(t), "install", dir)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	} else if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if ok := errors.As(err, &ee); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), dir) || !strings.Contains(stderr.String(), "is not writable") {
		t.Errorf("err %v, stderr %s; want exit 2 naming %s as not writable", err, stderr.String(), dir)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused install left %d entries in %s", len(entries), dir)
	}
}

// TestTheCopiedBinaryRunsFromItsNewPathAsAnyUser: the copy is what an init container of another image
// runs, as that image's user (here nobody, with no home and no passwd entry needed), with no PATH.
func TestTheCopiedBinaryRunsFromItsNewPathAsAnyUser(t *testing.T) {
	dir := worldWritableDir(t)
	out, err := exec.Command(binary, "install", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	copied := filepath.Join(dir, "peerdb-maintenance")
	for _, args := range [][]string{{"version"}, {"install", dir}} {
		cmd := exec.Command(copied, args...)
		cmd.Env = []string{}
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s %q as another user: %v\n%s", copied, args, err, out)
		}
	}
}

// installedCopy installs the built binary, with its own install command, into a directory every user
// can read, and returns the copy's path.
func installedCopy(t *testing.T) string {
	t.Helper()
	dir := worldReadableDir(t)
	if out, err := exec.Command(binary, "install", dir).CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	return filepath.Join(dir, "peerdb-maintenance")
}

// worldReadableDir is a directory other users can enter and read but, by its mode, not write.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: its parent is private to its owner.
	dir, err := os.MkdirTemp("", "install-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Chmod(dir, 0o755)
		_ = os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// worldWritableDir is a directory every user can write, as an emptyDir shared by two containers.
func worldWritableDir(t *testing.T) string {
	t.Helper()
	dir := worldReadableDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}
