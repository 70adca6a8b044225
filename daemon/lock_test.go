package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/daemon"
)

// TestSQLiteStoreLockedWhileADaemonRuns: a second daemon on a config
// file's store.sqlite is refused, naming the first one's pid and address,
// until the first stops; then it starts. A daemon on another file of the
// same folder is not refused (the lock is the database's, not the
// folder's).
func TestSQLiteStoreLockedWhileADaemonRuns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := func(db string) daemon.Config {
		return daemon.Config{
			Listen:  "127.0.0.1:0",
			Store:   daemon.StoreConfig{SQLite: filepath.Join(dir, db)},
			RootKey: daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
			Logger:  discardLogger(),
		}
	}
	ctx := context.Background()
	first, err := daemon.New(ctx, cfg("rotary.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = daemon.New(ctx, cfg("rotary.db"))
	want := fmt.Sprintf("is in use by another rotary server (pid %d, http://%s); stop it or point store.sqlite at another file", os.Getpid(), first.Addr())
	if err == nil || !strings.HasPrefix(err.Error(), "config: store.sqlite ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("second daemon on the same store.sqlite: %v; want %q", err, want)
	}
	other, err := daemon.New(ctx, cfg("other.db"))
	if err != nil {
		t.Fatalf("a daemon on another database file of the folder: %v", err)
	}
	other.Stop()
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	again, err := daemon.New(ctx, cfg("rotary.db"))
	if err != nil {
		t.Fatalf("after the first daemon stopped: %v", err)
	}
	again.Stop()
}
