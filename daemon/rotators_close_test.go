package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

// TestStopClosesRotators: the daemon's built-in database rotators keep
// pools of admin sessions; Stop closes them, so that an admin Set after
// Stop fails with rotators.ErrPoolClosed before it connects anywhere. The
// control: before Stop the same Set tries to connect (to a port nothing
// listens on) and fails with that.
func TestStopClosesRotators(t *testing.T) {
	dir := t.TempDir()
	d, err := New(context.Background(), Config{
		Listen:  "127.0.0.1:0",
		Store:   StoreConfig{SQLite: filepath.Join(dir, "rotary.db")},
		RootKey: RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	value := func(engine, password string) rotators.Value {
		return rotators.Value(fmt.Sprintf(`{"engine":%q,"host":"127.0.0.1","port":%d,"username":"app","password":%q,"dbname":"test","sslmode":"disable"}`,
			engine, port, password))
	}
	cfg := json.RawMessage(`{"strategy":"admin","admin_secret":"db-admin"}`)
	set := func(name, engine string) error {
		return d.builtin[name].Set(t.Context(), rotators.SetRequest{
			Config: cfg, Current: value(engine, "current-pw-1"), Pending: value(engine, "pending-pw-2"), Admin: value(engine, "admin-pw-3"),
		})
	}
	rotatorsWithPools := map[string]string{"postgres": "postgres", "mysql": "mysql"}
	for name, engine := range rotatorsWithPools {
		if err := set(name, engine); err == nil || errors.Is(err, rotators.ErrPoolClosed) {
			t.Fatalf("%s: Set before Stop = %v; want a failed connection", name, err)
		}
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, engine := range rotatorsWithPools {
		if err := set(name, engine); !errors.Is(err, rotators.ErrPoolClosed) {
			t.Errorf("%s: Set after Stop = %v; want ErrPoolClosed (the daemon closed its pools)", name, err)
		}
	}
}
