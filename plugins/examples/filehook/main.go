// Command filehook is the example hook plugin: it appends every event it
// gets, as one JSON line, to the file its registration's environment names
// in FILEHOOK_PATH (created 0600).
//
//	rotary plugin register filehook --path /usr/local/lib/rotary/filehook --sha256 HEX --env FILEHOOK_PATH=/var/log/rotary-events.jsonl
//	rotary hook add audit-file --on all --plugin filehook
package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/plugins/sdk"
)

func main() {
	path := os.Getenv("FILEHOOK_PATH")
	var mu sync.Mutex
	sdk.Serve(sdk.Config{
		Info: sdk.Info{Name: "filehook", Version: "1.0.0"},
		Hook: sdk.HookFunc(func(_ context.Context, e events.Event) error {
			if !filepath.IsAbs(path) {
				return errors.New("filehook: FILEHOOK_PATH must name an absolute file (set it in the plugin's registration)")
			}
			mu.Lock()
			defer mu.Unlock()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				return err
			}
			_, err = f.Write(append(e.Marshal(), '\n'))
			return errors.Join(err, f.Close())
		}),
	})
}
