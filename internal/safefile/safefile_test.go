package safefile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func fifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// returnsWithin fails t when op has not returned after a bound no working open or read comes near:
// the operations tested here block forever when the safeguard is missing.
func returnsWithin(t *testing.T, what string, op func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked", what)
		return nil
	}
}

func TestReadFileRefusesWhatIsNotARegularFileWithoutBlocking(t *testing.T) {
	for name, c := range map[string]struct{ path, says string }{
		"a FIFO nobody writes to": {fifo(t), "named pipe"},
		"a directory":             {t.TempDir(), "directory"},
		"an endless device":       {"/dev/zero", "character device"},
	} {
		err := returnsWithin(t, name, func() error {
			_, err := ReadFile(context.Background(), c.path, 1<<20)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: err = %v, want it refused as %s", name, err, c.says)
		}
	}
}

func TestReadFileReadsARegularFileWithinItsLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.yaml")
	if err := os.WriteFile(path, []byte("tasks: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link") // Kubernetes mounts ConfigMaps through symbolic links
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	data, err := ReadFile(context.Background(), link, 10)
	if err != nil || string(data) != "tasks: []\n" {
		t.Fatalf("ReadFile = %q, %v", data, err)
	}
	if _, err := ReadFile(context.Background(), path, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a file one byte over the limit: err = %v, want ErrTooLarge", err)
	}
}

// A FIFO put in place of the file between the check and the open is opened without blocking; its
// read then ends when the context is cancelled (a signal), not when a writer appears.
func TestAReadOfAPipeEndsWhenTheContextIsCancelled(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := syscall.SetNonblock(int(r.Fd()), true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("interrupted by terminated")
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	err = returnsWithin(t, "a read of a silent pipe", func() error {
		_, err := readAll(ctx, r, 1<<20)
		return err
	})
	if !errors.Is(err, cause) {
		t.Errorf("err = %v, want the context's cause", err)
	}
}

func TestWriteLogWritesFilesAndDevicesAndRefusesAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(path, []byte("an older and longer message\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteLog(context.Background(), path, []byte("done\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "done\n" {
		t.Errorf("termination log holds %q, want only the new message", b)
	}
	if err := WriteLog(context.Background(), "/dev/null", []byte("done\n")); err != nil {
		t.Errorf("a character device: %v", err)
	}
	if err := WriteLog(context.Background(), filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing path: err = %v, want fs.ErrNotExist", err)
	}
	p := fifo(t)
	err := returnsWithin(t, "writing to a FIFO nobody reads", func() error { return WriteLog(context.Background(), p, []byte("done\n")) })
	if err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("a FIFO: err = %v, want it refused", err)
	}
}
