package redistest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill the child when the test binary exits,
// however it exits (a panic, a timeout, os.Exit before cleanups ran).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
