//go:build failpoints

package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// failpoint returns the rotation engine's failpoint hook in test builds
// (go build -tags failpoints). ROTARY_FAILPOINTS lists points, comma
// separated. When the engine reaches one, the daemon prints
// "FAILPOINT <name>" on stderr and then
//   - for "name": stops there for good, so that a crash test can kill -9
//     it at exactly that instant;
//   - for "name=wait:PATH": waits until PATH exists, then goes on, so that
//     a test can change the world (take a database away) at that instant.
//
// Release builds have no such hook (failpoint_off.go).
func failpoint(getenv func(string) string) func(string) {
	points := map[string]string{}
	for _, p := range strings.Split(getenv("ROTARY_FAILPOINTS"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		name, action, _ := strings.Cut(p, "=")
		points[name] = action
	}
	if len(points) == 0 {
		return nil
	}
	return func(name string) {
		action, ok := points[name]
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "FAILPOINT %s\n", name)
		if path, ok := strings.CutPrefix(action, "wait:"); ok {
			for {
				if _, err := os.Stat(path); err == nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		select {} // hold here until killed
	}
}
