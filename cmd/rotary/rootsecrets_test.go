package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/daemon"
)

// serverConfigArgs runs the server command's configuration step (no
// daemon starts) with the real environment.
func serverConfigArgs(t *testing.T, args ...string) error {
	t.Helper()
	a := &app{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: os.Getenv}
	cmd := a.serverCmd()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	var sf serverFlags
	sf.config, _ = cmd.Flags().GetString("config")
	sf.dev, _ = cmd.Flags().GetBool("dev")
	sf.dataDir, _ = cmd.Flags().GetString("data-dir")
	sf.devRootToken, _ = cmd.Flags().GetString("dev-root-token")
	sf.listen, _ = cmd.Flags().GetString("listen")
	_, err := a.serverConfig(cmd, sf)
	return err
}

// writeConfig writes a config file using SQLite and a 0600 root key file
// in dir, and returns its path.
func writeConfig(t *testing.T, dir string) string {
	t.Helper()
	key := filepath.Join(dir, "root.key")
	if err := os.WriteFile(key, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "rotary.yaml")
	doc := "store: {sqlite: " + filepath.Join(dir, "rotary.db") + "}\nroot_key: {file: " + key + "}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRootTokenEnv: outside --dev, ROTARY_ROOT_TOKEN must pass
// auth.ValidateCustomToken with a 32-character minimum; the error names the
// variable and never holds the token; in every case the variable is gone
// from the environment afterwards. Not parallel: it sets the environment.
func TestRootTokenEnv(t *testing.T) {
	tests := []struct {
		name, token string
		dev         bool
		wantErr     string
	}{
		{"short outside dev", "canary-short-root-token", false, "the minimum is 32"},
		{"spaces", "canary root token with spaces 0123456789", false, "space"},
		{"strong outside dev", "canary-" + strings.Repeat("x", 40), false, ""},
		{"short in dev", "canary-dev", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(rootTokenEnv, tt.token)
			t.Setenv("ROTARY_TOKEN", tt.token)
			dir := t.TempDir()
			args := []string{"--config", writeConfig(t, dir)}
			if tt.dev {
				args = []string{"--dev", "--data-dir", dir}
			}
			err := serverConfigArgs(t, args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("serverConfig = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), rootTokenEnv)):
				t.Fatalf("serverConfig = %v, want an error naming %s and containing %q", err, rootTokenEnv, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), tt.token):
				t.Fatalf("serverConfig error %q holds the token", err)
			}
			for _, name := range []string{rootTokenEnv, "ROTARY_TOKEN"} {
				if _, ok := os.LookupEnv(name); ok {
					t.Errorf("after serverConfig, %s is still set", name)
				}
			}
		})
	}
}

func TestDevRootTokenChecked(t *testing.T) {
	t.Setenv(rootTokenEnv, "")
	err := serverConfigArgs(t, "--dev", "--data-dir", t.TempDir(), "--dev-root-token", "canary with space")
	if err == nil || !strings.Contains(err.Error(), "--dev-root-token") || strings.Contains(err.Error(), "canary") {
		t.Fatalf("--dev-root-token with a space: err = %v, want one naming the flag and not the token", err)
	}
}

// TestRootFilesPrivate: a root key, passphrase or root token file that
// group or others may read is refused, naming the file, its mode and the
// fix; a 0600 file and a file that does not exist yet are accepted.
func TestRootFilesPrivate(t *testing.T) {
	t.Setenv(rootTokenEnv, "")
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o600, 0o400} {
		for _, which := range []string{"root_key.file", "root_token_file", "dev root.key"} {
			dir := t.TempDir()
			cfg := writeConfig(t, dir)
			var path string
			args := []string{"--config", cfg}
			switch which {
			case "root_key.file":
				path = filepath.Join(dir, "root.key")
			case "root_token_file":
				path = filepath.Join(dir, "root-token") // the default beside store.sqlite
				if err := os.WriteFile(path, []byte("x\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				path = filepath.Join(dir, "root.key")
				args = []string{"--dev", "--data-dir", dir}
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			err := serverConfigArgs(t, args...)
			if mode&0o077 == 0 {
				if err != nil {
					t.Errorf("%s mode %04o: serverConfig = %v, want nil", which, mode, err)
				}
				continue
			}
			want := []string{path, "mode " + modeString(mode), "chmod 600"}
			if !errors.Is(err, errFileTooOpen) {
				t.Errorf("%s mode %04o: serverConfig = %v, want errFileTooOpen", which, mode, err)
				continue
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s mode %04o: error %q does not contain %q", which, mode, err, w)
				}
			}
		}
	}
}

func modeString(m os.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return "0" + string(digits[p>>6&7]) + string(digits[p>>3&7]) + string(digits[p&7])
}

func TestCheckRootFilesPassphrase(t *testing.T) {
	t.Parallel()
	pass := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Config{RootKey: daemon.RootKeyConfig{PassphraseFile: pass}}
	if err := checkRootFiles(cfg); err != nil {
		t.Fatalf("checkRootFiles(0600 passphrase file) = %v, want nil", err)
	}
	if err := os.Chmod(pass, 0o644); err != nil {
		t.Fatal(err)
	}
	err := checkRootFiles(cfg)
	if !errors.Is(err, errFileTooOpen) || !strings.Contains(err.Error(), "root_key.passphrase_file") || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("checkRootFiles(0644 passphrase file) = %v, want errFileTooOpen naming the field and mode", err)
	}
	cfg.RootKey.PassphraseFile = filepath.Join(t.TempDir(), "absent")
	if err := checkRootFiles(cfg); err != nil {
		t.Fatalf("checkRootFiles(absent file) = %v, want nil", err)
	}
}

// TestRootTokenFileEnv: ROTARY_ROOT_TOKEN_FILE (a systemd credential or a
// container secret) gives the root token from a file; a missing, empty,
// too open or weak file, or both variables at once, is refused naming the
// variable (and never printing the token); the variable is gone from the
// environment afterwards. Not parallel: it sets the environment.
func TestRootTokenFileEnv(t *testing.T) {
	strong := "canary-" + strings.Repeat("y", 40)
	tests := []struct {
		name, content string
		mode          os.FileMode
		missing       bool
		alsoEnv       bool
		wantErr       string
	}{
		{name: "strong token", content: strong + "\n", mode: 0o400},
		{name: "missing file", missing: true, wantErr: "no such file"},
		{name: "empty file", content: "\n", mode: 0o600, wantErr: "is empty"},
		{name: "readable by group", content: strong, mode: 0o640, wantErr: "group or others"},
		{name: "weak token", content: "canary-short\n", mode: 0o600, wantErr: "the minimum is 32"},
		{name: "both variables", content: strong, mode: 0o600, alsoEnv: true, wantErr: "both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "root-token")
			if !tt.missing {
				if err := os.WriteFile(file, []byte(tt.content), tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv(rootTokenFileEnv, file)
			env := ""
			if tt.alsoEnv {
				env = strong
			}
			t.Setenv(rootTokenEnv, env)
			a := &app{getenv: os.Getenv}
			tok, err := a.rootTokenFromEnv(false)
			switch {
			case tt.wantErr == "" && (err != nil || tok != strong):
				t.Fatalf("rootTokenFromEnv = (%d characters, %v), want the file's token", len(tok), err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "ROTARY_ROOT_TOKEN")):
				t.Fatalf("rootTokenFromEnv err = %v, want one naming the variable and containing %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "canary"):
				t.Fatalf("rootTokenFromEnv error %q holds the token", err)
			}
			if _, ok := os.LookupEnv(rootTokenFileEnv); ok {
				t.Errorf("after rootTokenFromEnv, %s is still set", rootTokenFileEnv)
			}
		})
	}
}
