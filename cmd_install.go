package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// installName is the file name the binary is copied to inside the install directory.
const installName = "peerdb-maintenance"

// installError is an install directory the binary cannot be copied into (missing, not a directory,
// read-only): a mount to fix, exit 2.
type installError struct {
	dir     string
	problem string
	err     error
}

func (e *installError) Error() string {
	return fmt.Sprintf("install: directory %s %s (mount a writable volume there, for example an emptyDir): %v", e.dir, e.problem, e.err)
}

func (e *installError) Unwrap() error { return e.err }

// cmdInstall copies the running binary into a directory, so that a container of another image (one
// with the program to run once, such as PeerDB's peerdb-server) can run the gate from a shared volume.
// It needs neither Redis nor a deployment version.
func cmdInstall(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	if done, err := parseFlags(fs, args, "install DIR  (copies the binary to DIR/"+installName+")", stdout); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{msg: "install: one directory to copy the binary into, for example: peerdb-maintenance install /gate"}
	}
	log := earlyLogger(getenv, stderr)
	dst, err := installSelf(fs.Arg(0))
	if err != nil {
		return fail(log, "cannot install the binary", err)
	}
	log.Info("installed the binary", "path", dst)
	_, err = fmt.Fprintln(stdout, dst)
	return err
}

// installSelf copies the running binary to dir/peerdb-maintenance atomically: a temporary file in
// dir, synced, made executable by everyone, then renamed over the destination. Running it twice
// leaves the same file; a reader never sees a half-written one.
func installSelf(dir string) (string, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", &installError{dir: dir, problem: "does not exist", err: err}
	case err != nil:
		return "", &installError{dir: dir, problem: "cannot be read", err: err}
	case !fi.IsDir():
		return "", &installError{dir: dir, problem: "is not a directory", err: syscall.ENOTDIR}
	}
	self, err := os.Executable()
	if err != nil {
		// No /proc (a bare root): the path the gate was started by.
		self, err = exec.LookPath(os.Args[0])
	}
	if err != nil {
		return "", fmt.Errorf("install: find the running binary: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return "", fmt.Errorf("install: open the running binary: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, "."+installName+"-*")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return "", &installError{dir: dir, problem: "is not writable", err: err}
		}
		return "", fmt.Errorf("install: create a file in %s: %w", dir, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		return "", fmt.Errorf("install: copy to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("install: sync %s: %w", tmp.Name(), err)
	}
	// Any user of the other image runs it: its uid is not ours.
	if err := tmp.Chmod(0o755); err != nil {
		return "", fmt.Errorf("install: chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install: close %s: %w", tmp.Name(), err)
	}
	dst := filepath.Join(dir, installName)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install: rename to %s: %w", dst, err)
	}
	done = true
	// The rename is durable once the directory is synced; a filesystem that cannot sync a
	// directory (some network ones) still has the file.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return dst, nil
}
