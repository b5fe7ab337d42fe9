package packaging_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The image's user: distroless nonroot.
const imageUID, imageGID = 65532, 65532

// scratchRoot returns a directory holding only the binary at /peerdb-maintenance, as in the final stage
// of the Dockerfile, plus files (path inside the root → content). A file under /dev named null becomes
// the null device, as a container runtime provides it. It needs root (chroot), so the test is skipped
// when not root, except under CI=true.
func scratchRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "running the binary in an empty root directory needs root (chroot)")
	}
	bin := gateBinary(t)
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "peerdb-maintenance"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, content := range files {
		full := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if path == "/dev/null" {
			if err := syscall.Mknod(full, syscall.S_IFCHR|0o666, int(devNull)); err != nil {
				t.Fatalf("make /dev/null in the root: %v", err)
			}
			if err := os.Chmod(full, 0o666); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		// Writable by the image's user, as the kubelet's /dev/termination-log is.
		if err := os.Chown(full, imageUID, imageGID); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// devNull is the device number of /dev/null (major 1, minor 3).
const devNull = 1<<8 | 3

type rootRun struct {
	stdout, stderr string
	code           int
}

// runInRoot runs /peerdb-maintenance with args, chrooted into root, as the image's user, with exactly
// env as its environment, and waits at most a minute.
func runInRoot(t *testing.T, root string, env []string, args ...string) rootRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/peerdb-maintenance", args...)
	cmd.Dir = "/"
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: imageUID, Gid: imageGID},
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("peerdb-maintenance %v in %s: no exit within a minute\nstderr: %s", args, root, stderr.String())
	}
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("start peerdb-maintenance in %s: %v", root, err)
	}
	return rootRun{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}
