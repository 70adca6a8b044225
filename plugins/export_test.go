package plugins

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteStateRecord writes the record a supervisor of daemon owner (a pid)
// with StateDir dir keeps for plugin name running as process group pgid
// from path, as a daemon killed with -9 would have left it.
func WriteStateRecord(dir, name string, pgid int, path string, owner int) error {
	b, err := json.Marshal(stateRecord{Name: name, Pgid: pgid, Path: path, Start: processStart(pgid), Owner: owner, OwnerStart: processStart(owner)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, fmt.Sprintf("plugin-%s-%d.json", name, owner)), b, 0o600)
}
