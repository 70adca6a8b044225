package plugins

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	pid, pgid int
	start     uint64 // clock ticks after boot
	zombie    bool
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and
	// parentheses, so cut after the last closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, false
	}
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{pid: pid, pgid: pg, start: start, zombie: f[0] == "Z" || f[0] == "X"}, true
}

// processStart is the start time of pid (0 when unknown).
func processStart(pid int) uint64 {
	st, _ := readProcStat(pid)
	return st.start
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []procStat {
	entries, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok && st.pgid == pgid && !st.zombie {
			out = append(out, st)
		}
	}
	return out
}

// killLeftover kills what is left of the process group of a plugin a
// previous daemon recorded, when it is still that plugin's group:
//
//   - its leader (pid == pgid) runs: it must run the recorded executable
//     and have started when recorded; otherwise the pid was reused and
//     nothing is killed;
//   - its leader is gone but members remain: the group number cannot be
//     reused while the group has members, so they are what the plugin
//     left (its children), and are killed.
//
// It reports what it did, for the log.
func killLeftover(r stateRecord) (killed bool, why string) {
	members := groupMembers(r.Pgid)
	if len(members) == 0 {
		return false, "no process left"
	}
	for _, m := range members {
		if m.pid != r.Pgid {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", m.pid))
		if err != nil {
			return false, fmt.Sprintf("pid %d: cannot read its executable (%v); not killed", m.pid, err)
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if filepath.Clean(exe) != filepath.Clean(r.Path) {
			return false, fmt.Sprintf("pid %d now runs %s, not the plugin; not killed", m.pid, exe)
		}
		if r.Start != 0 && m.start != r.Start {
			return false, fmt.Sprintf("pid %d started after the record (pid reused); not killed", m.pid)
		}
	}
	if err := syscall.Kill(-r.Pgid, syscall.SIGKILL); err != nil {
		return false, fmt.Sprintf("kill group %d: %v", r.Pgid, err)
	}
	return true, fmt.Sprintf("killed process group %d (%d processes)", r.Pgid, len(members))
}
