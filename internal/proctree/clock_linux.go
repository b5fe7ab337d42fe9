package proctree

import (
	"syscall"
	"unsafe"
)

// clockMonotonic is CLOCK_MONOTONIC from linux/time.h: one clock for every process of the host (of a
// time namespace), the one Go's timers run on.
const clockMonotonic = 1

// monoNow reads the host's monotonic clock in nanoseconds.
func monoNow() int64 {
	var ts syscall.Timespec
	_, _, _ = syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
