//go:build unix && !linux

package hooks

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the hook in its own process group (killed whole at its
// deadline).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
