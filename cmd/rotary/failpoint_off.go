//go:build !failpoints

package main

// failpoint is nil in release builds: the engine's failpoint hook is only
// compiled into test builds (see failpoint_on.go).
func failpoint(func(string) string) func(string) { return nil }
