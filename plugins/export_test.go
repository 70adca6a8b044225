package plugins

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// WriteStateRecord writes the record a supervisor with StateDir dir keeps
// for plugin name running as process group pgid from path, as a daemon
// killed with -9 would have left it.
func WriteStateRecord(dir, name string, pgid int, path string) error {
	s := &Supervisor{cfg: SupervisorConfig{StateDir: dir}}
	b, err := json.Marshal(stateRecord{Name: name, Pgid: pgid, Path: path, Start: processStart(pgid)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.recordPath(name)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(s.recordPath(name), b, 0o600)
}
