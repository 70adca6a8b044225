package plugins

import "syscall"

// sysProcAttr puts the plugin in its own process group (killed whole on
// Close) and asks Linux to SIGKILL it when the daemon dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
