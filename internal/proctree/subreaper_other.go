//go:build !linux

package proctree

// setSubreaper does nothing where the kernel has no child subreaper: the supervisor still kills the
// command's process group when the gate dies.
func setSubreaper() {}
