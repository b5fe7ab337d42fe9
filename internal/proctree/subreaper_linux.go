package proctree

import "syscall"

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from linux/prctl.h.
const prSetChildSubreaper = 36

// setSubreaper makes the calling process adopt the orphans of its descendants (the supervisor those of its
// command, the gate those of a killed supervisor), so that it can find and kill those that left the group.
func setSubreaper() { _, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0) }
