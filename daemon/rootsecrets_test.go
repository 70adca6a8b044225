package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/rotary-secrets/rotary/daemon"
)

// TestRootKeyEnvUnset: the root key read from an environment variable is
// gone from the environment once the daemon is built, so nothing it starts
// inherits it. Not parallel: it changes the process environment.
func TestRootKeyEnvUnset(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	const name = "ROTARY_TEST_ROOT_KEY_ENV"
	t.Setenv(name, base64.StdEncoding.EncodeToString(key))
	dir := t.TempDir()
	d, err := daemon.New(context.Background(), daemon.Config{
		Listen:  "127.0.0.1:0",
		Store:   daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey: daemon.RootKeyConfig{Env: name},
		Logger:  discardLogger(),
	})
	if err != nil {
		t.Fatalf("New with root_key.env: %v", err)
	}
	defer d.Stop()
	if v, ok := os.LookupEnv(name); ok {
		t.Fatalf("after New, %s is still set (%d characters), want it unset", name, len(v))
	}
}

// TestRootTokenFileMadePrivate: a root token file that already exists
// with a loose mode is made 0600 before the token is written into it.
func TestRootTokenFileMadePrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "root-token")
	if err := os.WriteFile(tokFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokFile, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	d, err := daemon.New(context.Background(), daemon.Config{
		Listen:        "127.0.0.1:0",
		Store:         daemon.StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey:       daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootTokenFile: tokFile,
		Logger:        discardLogger(),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer d.Stop()
	fi, err := os.Stat(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 {
		t.Fatal("the root token was not written")
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("root token file mode = %04o, want 0600", perm)
	}
}
