//go:build unix && !linux

package plugins

import "syscall"

// sysProcAttr puts the plugin in its own process group (killed whole on
// Close). There is no parent-death signal here: the SDK's watchdog ends a
// plugin whose host is gone.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
