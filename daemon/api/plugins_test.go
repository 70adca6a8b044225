package api

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidatePluginName(t *testing.T) {
	for name, ok := range map[string]bool{
		"rabbitmq": true, "a": true, "0x": true, "my_plugin-2": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "_a": false, "A": false, "a.b": false, "a/b": false, "a b": false,
		strings.Repeat("a", 64): false, "plugin:x": false, "..": false,
	} {
		if err := ValidatePluginName(name); (err == nil) != ok {
			t.Errorf("ValidatePluginName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestCheckPluginEnv(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string // "" = ok
	}{
		{nil, ""},
		{[]string{"A=1", "LOG_LEVEL=debug", "EMPTY="}, ""},
		{[]string{"NOEQUALS"}, "KEY=VALUE"},
		{[]string{"=x"}, "KEY=VALUE"},
		{[]string{"1A=x"}, "KEY=VALUE"},
		{[]string{"A-B=x"}, "KEY=VALUE"},
		{[]string{"ROTARY_TOKEN=x"}, "reserved"},
		{[]string{"PLUGIN_MIN_PORT=1"}, "reserved"},
		{[]string{"A=1", "A=2"}, "twice"},
		{[]string{"A=" + strings.Repeat("x", maxPluginEnvLen)}, "longer"},
		{make([]string, maxPluginEnv+1), "at most"},
	} {
		err := checkPluginEnv(tc.env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkPluginEnv(%.40q) = %v, want nil", tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("checkPluginEnv(%.40q) = %v, want an error about %q", tc.env, err, tc.want)
		}
	}
}

func TestCheckPluginFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", 0o755)
	sum := sha256.Sum256([]byte("#!/bin/sh\n"))
	got, err := checkPluginFile(good, "")
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("checkPluginFile(good) = %q, %v; want its sha256", got, err)
	}
	if _, err := checkPluginFile(good, dir); err != nil {
		t.Fatalf("checkPluginFile(good, its folder) = %v", err)
	}
	for _, tc := range []struct {
		path, dir, want string
	}{
		{"", "", "required"},
		{"relative/x", "", "not an absolute path"},
		{dir + "/./good", "", "not a clean path"},
		{filepath.Join(dir, "missing"), "", "no such file"},
		{dir, "", "not a regular file"},
		{write("noexec", 0o644), "", "not executable"},
		{write("worldw", 0o757), "", "writable by anyone"},
		{good, "/usr/lib/rotary/plugins", "outside the plugin folder"},
		{good, dir + "/sub", "outside the plugin folder"},
		{dir, dir, "outside the plugin folder"},
	} {
		if _, err := checkPluginFile(tc.path, tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkPluginFile(%q, %q) = %v, want an error about %q", tc.path, tc.dir, err, tc.want)
		}
	}
}
