//go:build failpoints

package main

import (
	"fmt"
	"os"
	"strings"
)

// failpoint returns the rotation engine's failpoint hook in test builds
// (go build -tags failpoints). ROTARY_FAILPOINTS lists point names
// (comma-separated); when the engine reaches one, the daemon prints
// "FAILPOINT <name>" on stderr and stops there for good, so that a crash
// test can kill -9 it at exactly that instant. Release builds have no
// such hook (failpoint_off.go).
func failpoint(getenv func(string) string) func(string) {
	points := map[string]bool{}
	for _, p := range strings.Split(getenv("ROTARY_FAILPOINTS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			points[p] = true
		}
	}
	if len(points) == 0 {
		return nil
	}
	return func(name string) {
		if points[name] {
			fmt.Fprintf(os.Stderr, "FAILPOINT %s\n", name)
			select {} // hold here until killed
		}
	}
}
