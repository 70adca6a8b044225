//go:build !linux

package plugins

// processStart is unknown outside Linux.
func processStart(int) uint64 { return 0 }

// killLeftover cannot tell a reused pid from the plugin's outside Linux
// (no /proc), so it kills nothing: the SDK's watchdog ends plugins whose
// host is gone.
func killLeftover(r stateRecord) (bool, string) {
	return false, "cannot verify the process outside Linux; not killed"
}
