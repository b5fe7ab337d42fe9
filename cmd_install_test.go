package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallCopiesTheRunningBinaryAndRunningItTwiceIsFine(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		code, stdout, stderr := runIn(t, map[string]string{}, "install", dir)
		dst := filepath.Join(dir, "peerdb-maintenance")
		if code != 0 || strings.TrimSpace(stdout) != dst {
			t.Fatalf("run %d: exit %d, stdout %q, stderr %s", i+1, code, stdout, stderr)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("run %d: the copy differs from the running binary (%d bytes, want %d): %v", i+1, len(got), len(want), err)
		}
		fi, _ := os.Stat(dst)
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("run %d: mode %v, want 0755: any user of the other image runs it", i+1, fi.Mode())
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("run %d: the directory holds %d entries, want only the binary (no temporary file left)", i+1, len(entries))
		}
	}
}

func TestInstallIntoAMissingDirectoryNamesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gate")
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, dir, want string }{
		{"missing directory", dir, "does not exist"},
		{"a file, not a directory", file, "is not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runIn(t, map[string]string{}, "install", c.dir)
			if code != 2 || !strings.Contains(stderr, c.dir) || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %s; want 2 naming %s and %q", code, stderr, c.dir, c.want)
			}
		})
	}
}

func TestInstallWantsExactlyOneDirectory(t *testing.T) {
	for _, args := range [][]string{{"install"}, {"install", "a", "b"}} {
		if code, _, stderr := runIn(t, map[string]string{}, args...); code != 2 || !strings.Contains(stderr, "one directory") {
			t.Errorf("%q: exit %d, stderr %q; want a usage error (2)", args, code, stderr)
		}
	}
}
