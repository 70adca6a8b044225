package kms

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rotary-secrets/rotary/sensitive"
)

// A key whose base64 contains a recognisable marker, to prove errors never
// echo what they read.
var markerKey = bytes.Repeat([]byte("SECRETKEY"), 4)[:RootKeySize]

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileSource(t *testing.T) {
	t.Parallel()
	good := base64.StdEncoding.EncodeToString(markerKey)
	tests := []struct {
		name    string
		content *string // nil: no file
		wantErr string
	}{
		{"plain", ptr(good), ""},
		{"surrounding whitespace", ptr("\n  " + good + " \r\n"), ""},
		{"missing file", nil, "does not exist"},
		{"bad base64", ptr(good[:10] + "*" + good[11:]), "not valid standard base64"},
		{"url encoding", ptr(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32))), "not valid standard base64"},
		{"too short", ptr(base64.StdEncoding.EncodeToString(markerKey[:31])), "holds 31 bytes, want 32"},
		{"too long", ptr(base64.StdEncoding.EncodeToString(append(markerKey, 'x'))), "holds 33 bytes, want 32"},
		{"empty", ptr(""), "holds 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent")
			if tt.content != nil {
				path = writeFile(t, *tt.content)
			}
			key, err := FileSource{Path: path}.RootKey(context.Background())
			checkSource(t, key, err, tt.wantErr, path)
		})
	}
}

func TestEnvSource(t *testing.T) {
	// Not parallel: it sets environment variables.
	good := base64.StdEncoding.EncodeToString(markerKey)
	tests := []struct {
		name    string
		value   *string
		wantErr string
	}{
		{"set", ptr(good), ""},
		{"with newline", ptr(good + "\n"), ""},
		{"unset", nil, "not set"},
		{"empty", ptr(""), "not set"},
		{"bad base64", ptr("!!" + good), "not valid standard base64"},
		{"wrong length", ptr(base64.StdEncoding.EncodeToString(markerKey[:16])), "holds 16 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const name = "ROTARY_TEST_ROOT_KEY"
			if tt.value != nil {
				t.Setenv(name, *tt.value)
			} else {
				t.Setenv(name, "")
				os.Unsetenv(name)
			}
			key, err := EnvSource{Name: name}.RootKey(context.Background())
			checkSource(t, key, err, tt.wantErr, name)
		})
	}
}

func checkSource(t *testing.T, key sensitive.Bytes, err error, wantErr, where string) {
	t.Helper()
	if wantErr == "" {
		if err != nil || !bytes.Equal(key.Reveal(), markerKey) {
			t.Fatalf("RootKey = %d bytes, %v; want the key", key.Len(), err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), where) {
		t.Fatalf("RootKey err = %v, want one containing %q and naming %s", err, wantErr, where)
	}
	if strings.Contains(err.Error(), "SECRETKEY") || strings.Contains(err.Error(), "U0VDUkVU") {
		t.Fatalf("RootKey err %q echoes the key", err)
	}
}

func cheapPassphrase(path string, salt []byte, keep bool) PassphraseSource {
	return PassphraseSource{Path: path, Salt: salt, Keep: keep, Time: 1, MemoryKiB: 64, Threads: 1}
}

func TestPassphraseSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	salt := NewSalt()
	if len(salt) != MinSaltSize || bytes.Equal(salt, NewSalt()) {
		t.Fatalf("NewSalt returned %d bytes or repeats", len(salt))
	}

	path := writeFile(t, "correct horse battery staple\n")
	k1, err := cheapPassphrase(path, salt, false).RootKey(ctx)
	if err != nil || k1.Len() != RootKeySize {
		t.Fatalf("RootKey = %d bytes, %v", k1.Len(), err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("passphrase file still there after use (stat err = %v)", err)
	}
	_, err = cheapPassphrase(path, salt, false).RootKey(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("RootKey(deleted file) err = %v", err)
	}

	// Keep leaves the file; the same passphrase (without its line break)
	// and salt give the same key; another salt or passphrase another key.
	kept := writeFile(t, "correct horse battery staple")
	k2, err := cheapPassphrase(kept, salt, true).RootKey(ctx)
	if err != nil || !k2.Equal(k1) {
		t.Fatalf("RootKey(kept, same passphrase) = equal %v, %v; want the same key", k2.Equal(k1), err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("Keep: file gone: %v", err)
	}
	k3, _ := cheapPassphrase(kept, NewSalt(), true).RootKey(ctx)
	if k3.Equal(k1) {
		t.Fatal("another salt gave the same key")
	}
	k4, _ := cheapPassphrase(writeFile(t, "correct horse battery stapler"), salt, true).RootKey(ctx)
	if k4.Equal(k1) {
		t.Fatal("another passphrase gave the same key")
	}

	_, err = cheapPassphrase(writeFile(t, "\n"), salt, true).RootKey(ctx)
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("RootKey(empty passphrase) err = %v", err)
	}
	_, err = cheapPassphrase(kept, salt[:8], true).RootKey(ctx)
	wantErr(t, "RootKey(short salt)", err, ErrInvalidArgument)
}

// The default argon2id parameters are the documented ones; slow-ish, so
// run once.
func TestPassphraseDefaults(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("argon2id with 64 MiB")
	}
	path := writeFile(t, "pass")
	salt := bytes.Repeat([]byte{1}, 16)
	def, err := PassphraseSource{Path: path, Salt: salt, Keep: true}.RootKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	explicit, _ := PassphraseSource{Path: path, Salt: salt, Keep: true, Time: 3, MemoryKiB: 64 * 1024, Threads: 2}.RootKey(context.Background())
	if !def.Equal(explicit) {
		t.Fatal("defaults differ from time=3, memory=64MiB, threads=2")
	}
}

func TestPassphraseSalt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemKeyStore()
	var wg sync.WaitGroup
	salts := make([][]byte, 10)
	for i := range salts {
		wg.Go(func() {
			var err error
			if salts[i], err = PassphraseSalt(ctx, store); err != nil {
				t.Errorf("PassphraseSalt err = %v", err)
			}
		})
	}
	wg.Wait()
	for _, s := range salts {
		if !bytes.Equal(s, salts[0]) || len(s) != MinSaltSize {
			t.Fatal("daemons got different salts")
		}
	}
}

func TestWriteRootKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "root.key")
	if err := WriteRootKeyFile(path); err != nil {
		t.Fatalf("WriteRootKeyFile err = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	key, err := FileSource{Path: path}.RootKey(context.Background())
	if err != nil || key.Len() != RootKeySize {
		t.Fatalf("FileSource on written file = %d bytes, %v", key.Len(), err)
	}
	before, _ := os.ReadFile(path)
	err = WriteRootKeyFile(path)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("WriteRootKeyFile(existing) err = %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("existing key file was changed")
	}
	a, _ := GenerateRootKey()
	b, _ := GenerateRootKey()
	if a == b || len(a) != 44 {
		t.Fatalf("GenerateRootKey gave %q and %q", a, b)
	}
}

func ptr[T any](v T) *T { return &v }
