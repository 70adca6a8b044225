package hooks

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the hook in its own process group (killed whole at its
// deadline) and kills it if the daemon dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
