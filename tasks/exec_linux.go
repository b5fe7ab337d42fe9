package tasks

import "syscall"

// setDeathSignal has the kernel SIGKILL the command when the gate dies.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
