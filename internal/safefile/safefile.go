// Package safefile opens the files an operator names (task file, SQL files, certificates, header
// files, the termination log) so that a wrong path cannot hang the gate: a FIFO, a socket or a device
// is refused before the open that would block on it, the open itself never blocks (O_NONBLOCK), the
// kind is checked again on the open file, and reads and writes stop at a deadline or when the context
// is cancelled, so that a signal always wins.
package safefile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Timeout bounds one read or write when the context has no earlier deadline. A regular file is read
// in far less; the bound is for what should never happen (a stalled network file system).
const Timeout = 30 * time.Second

// ErrTooLarge is returned by ReadFile for a file longer than its limit.
var ErrTooLarge = errors.New("too large")

// kindError is a path that is not the kind of file expected.
func kindError(path string, mode fs.FileMode, want string) error {
	return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("not %s but %s", want, describe(mode))}
}

func describe(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	}
	return "an irregular file (" + mode.Type().String() + ")"
}

// open opens path with flag|O_NONBLOCK after checking (before and after the open) that it is of a
// kind ok accepts; want names those kinds in errors.
func open(path string, flag int, ok func(fs.FileMode) bool, want string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !ok(fi.Mode()) {
		return nil, kindError(path, fi.Mode(), want)
	}
	f, err := os.OpenFile(path, flag|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// The path may have been replaced between the check and the open.
	if fi, err = f.Stat(); err != nil || !ok(fi.Mode()) {
		_ = f.Close()
		if err == nil {
			err = kindError(path, fi.Mode(), want)
		}
		return nil, err
	}
	return f, nil
}

func regular(m fs.FileMode) bool { return m.IsRegular() }

// Open opens the regular file at path for reading without blocking. Anything else (a directory, a
// FIFO, a device, a socket) is an error naming what it is.
func Open(path string) (*os.File, error) {
	return open(path, os.O_RDONLY, regular, "a regular file")
}

// ReadFile reads the regular file at path, at most limit bytes (a longer file is ErrTooLarge), until
// ctx is done or Timeout has passed.
func ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(ctx, f, limit)
}

// withDeadline runs op on f with the deadline of ctx (at most Timeout away); cancelling ctx ends it.
// Files the runtime cannot poll (regular files) ignore deadlines: their reads do not block.
func withDeadline(ctx context.Context, f *os.File, op func() error) error {
	deadline := time.Now().Add(Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = f.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := op()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

func readAll(ctx context.Context, f *os.File, limit int64) ([]byte, error) {
	var data []byte
	err := withDeadline(ctx, f, func() error {
		var err error
		data, err = io.ReadAll(io.LimitReader(f, limit+1))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", f.Name(), ErrTooLarge, limit)
	}
	return data, nil
}

// WriteLog replaces the content of path with data, when path is a regular file or a character
// device (Kubernetes' /dev/termination-log is either). A path that does not exist is fs.ErrNotExist;
// a FIFO, a directory or a socket is refused; the write stops at ctx's deadline (at most Timeout).
func WriteLog(ctx context.Context, path string, data []byte) error {
	f, err := open(path, os.O_WRONLY|os.O_TRUNC, func(m fs.FileMode) bool {
		return m.IsRegular() || m&fs.ModeCharDevice != 0
	}, "a regular file or a character device")
	if err != nil {
		return err
	}
	err = withDeadline(ctx, f, func() error {
		_, err := f.Write(data)
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
