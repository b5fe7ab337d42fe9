package tasks

import "syscall"

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from linux/prctl.h.
const prSetChildSubreaper = 36

// setSubreaper makes the supervisor adopt the orphans of its command's tree, so that it can find and
// kill those that left the process group.
func setSubreaper() { _, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0) }
