package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/daemon"
)

func testEnv(vars map[string]string, files map[string]string) configEnv {
	return configEnv{
		lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		readFile: func(p string) ([]byte, error) {
			if v, ok := files[p]; ok {
				return []byte(v), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
	}
}

func TestParseConfigFull(t *testing.T) {
	t.Parallel()
	doc := `
listen: 0.0.0.0:8443
tls: {cert_file: /etc/rotary/cert.pem, key_file: /etc/rotary/key.pem, client_ca_file: /etc/rotary/ca.pem}
allow_insecure_http: false
store:
  postgres: "postgres://rotary:$env{PGPASS}@db/rotary?sslmode=disable"
root_key:
  passphrase_file: /run/secrets/pass
  keep: true
root_token_file: /var/lib/rotary/token
redis: $file{/run/secrets/redis-url}
regions: [default, eu-west-1]
plugin_dir: /usr/lib/rotary/plugins
plugin_start_timeout: 5s
plugin_call_timeout: 1m
min_rotation_interval: 1d
rotation_concurrency: 4
shutdown_timeout: 30s
outbox_retention: 2d
hook_max_attempts: 5
hook_max_age: 6h
hook_max_backlog: 100
`
	cfg, err := parseConfig([]byte(doc), testEnv(map[string]string{"PGPASS": "s3cret"},
		map[string]string{"/run/secrets/redis-url": "redis://127.0.0.1:6379/0\n"}))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	want := daemon.Config{
		Listen:              "0.0.0.0:8443",
		TLS:                 daemon.TLSConfig{CertFile: "/etc/rotary/cert.pem", KeyFile: "/etc/rotary/key.pem", ClientCAFile: "/etc/rotary/ca.pem"},
		Store:               daemon.StoreConfig{Postgres: "postgres://rotary:s3cret@db/rotary?sslmode=disable"},
		RootKey:             daemon.RootKeyConfig{PassphraseFile: "/run/secrets/pass", Keep: true},
		RootTokenFile:       "/var/lib/rotary/token",
		Redis:               daemon.RedisConfig{URL: "redis://127.0.0.1:6379/0"},
		Regions:             []string{"default", "eu-west-1"},
		PluginDir:           "/usr/lib/rotary/plugins",
		PluginStartTimeout:  5 * time.Second,
		PluginCallTimeout:   time.Minute,
		MinRotationInterval: 24 * time.Hour,
		RotationConcurrency: 4,
		ShutdownTimeout:     30 * time.Second,
	}
	if cfg.Listen != want.Listen || cfg.TLS != want.TLS || cfg.Store != want.Store || cfg.RootKey != want.RootKey ||
		cfg.RootTokenFile != want.RootTokenFile || cfg.Redis.URL != want.Redis.URL || strings.Join(cfg.Regions, ",") != "default,eu-west-1" ||
		cfg.PluginDir != want.PluginDir || cfg.PluginStartTimeout != want.PluginStartTimeout ||
		cfg.PluginCallTimeout != want.PluginCallTimeout || cfg.MinRotationInterval != want.MinRotationInterval ||
		cfg.RotationConcurrency != want.RotationConcurrency || cfg.ShutdownTimeout != want.ShutdownTimeout ||
		cfg.OutboxRetention != 48*time.Hour || cfg.HookMaxAttempts != 5 || cfg.HookMaxAge != 6*time.Hour || cfg.HookMaxBacklog != 100 {
		t.Errorf("parseConfig =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig([]byte("root_key: {file: /etc/rotary/root.key}\n"), testEnv(nil, nil))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if cfg.Store.SQLite != "/var/lib/rotary/rotary.db" || cfg.RootTokenFile != "/var/lib/rotary/root-token" || cfg.Listen != "127.0.0.1:8420" {
		t.Errorf("defaults: store %+v, root_token_file %q, listen %q", cfg.Store, cfg.RootTokenFile, cfg.Listen)
	}
	cfg, err = parseConfig([]byte("store: {sqlite: /data/r.db}\nroot_key: {env: ROTARY_ROOT_KEY}\n"), testEnv(nil, nil))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if cfg.RootTokenFile != "/data/root-token" {
		t.Errorf("root_token_file = %q, want /data/root-token (beside the database)", cfg.RootTokenFile)
	}
	if cfg.RootKey.Env != "ROTARY_ROOT_KEY" {
		t.Errorf("root_key.env = %q, want the variable's name", cfg.RootKey.Env)
	}
}

func TestParseRedisMapping(t *testing.T) {
	t.Parallel()
	doc := "root_key: {file: /k}\nredis:\n  addrs: [\"s1:26379\", \"s2:26379\"]\n  master_name: mymaster\n  username: relay\n  password: $env{REDIS_PW}\n  prefix: \"app:\"\n  max_len: 5000\n"
	env := configEnv{lookupEnv: func(k string) (string, bool) { return "pw-from-env", k == "REDIS_PW" }}
	cfg, err := parseConfig([]byte(doc), env)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Redis
	if strings.Join(r.Addrs, ",") != "s1:26379,s2:26379" || r.MasterName != "mymaster" || r.Username != "relay" ||
		r.Password != "pw-from-env" || r.Prefix != "app:" || r.MaxLen != 5000 || !r.Enabled() {
		t.Fatalf("redis = %+v", r)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	env := testEnv(map[string]string{"SECRET": "hunter2hunter2", "NUM": "many"},
		map[string]string{"/ok": "hunter2hunter2"})
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "root_key: {file: /k}\nlisten_addr: x\n", []string{`unknown key "listen_addr"`, "line 2"}},
		{"unknown nested key", "root_key: {file: /k}\nstore:\n  sqlite: /a\n  mysql: x\n", []string{`unknown key "store.mysql"`, "line 4"}},
		{"repeated key", "root_key: {file: /k}\nlisten: a:1\nlisten: b:2\n", []string{`"listen" given twice`, "line 3"}},
		{"missing env", "root_key: {file: /k}\nstore: {postgres: \"postgres://u:$env{PGPASS}@h/db\"}\n", []string{"store.postgres", "$env{PGPASS}", "not set"}},
		{"unreadable file", "root_key: {file: /k}\nredis: $file{/run/nope}\n", []string{"redis", "$file{/run/nope}", "cannot read"}},
		{"empty reference", "root_key: {file: /k}\nredis: $env{}\n", []string{"redis", "names nothing"}},
		{"bad duration", "root_key: {file: /k}\nmin_rotation_interval: soon\n", []string{"min_rotation_interval", `"soon"`}},
		{"bad int", "root_key: {file: /k}\nrotation_concurrency: lots\n", []string{"rotation_concurrency", "integer"}},
		{"bad int from env hides value", "root_key: {file: /k}\nrotation_concurrency: $env{NUM}\n", []string{"rotation_concurrency", "integer"}},
		{"bad bool", "root_key: {file: /k}\nallow_insecure_http: maybe\n", []string{"allow_insecure_http", "true or false"}},
		{"list expected", "root_key: {file: /k}\nregions: default\n", []string{"regions", "list"}},
		{"mapping expected", "root_key: {file: /k}\nstore: /var/lib/x.db\n", []string{"store", "mapping"}},
		{"two stores", "root_key: {file: /k}\nstore: {sqlite: /a, postgres: \"postgres://$env{SECRET}@h/x\"}\n", []string{"store", "not both"}},
		{"no root key", "store: {sqlite: /a}\n", []string{"root_key"}},
		{"two root keys", "root_key: {file: /k, env: X}\n", []string{"root_key", "only one"}},
		{"keep without passphrase", "root_key: {file: /k, keep: true}\n", []string{"root_key.keep"}},
		{"bad listen", "root_key: {file: /k}\nlisten: 8420\n", []string{"listen", "host:port"}},
		{"tls half", "root_key: {file: /k}\ntls: {cert_file: /c}\n", []string{"tls.key_file"}},
		{"bad postgres", "root_key: {file: /k}\nstore:\n  postgres: $file{/ok}\n", []string{"store.postgres"}},
		{"duplicate region", "root_key: {file: /k}\nregions: [a, a]\n", []string{"regions[1]"}},
		{"bad yaml", "root_key: [\n", []string{"config:"}},
		{"redis not a url", "root_key: {file: /k}\nredis: localhost:6379\n", []string{"redis.url", "redis://"}},
		{"redis url and addrs", "root_key: {file: /k}\nredis: {url: \"redis://a:1\", addrs: [\"b:2\"]}\n", []string{"redis", "exactly one"}},
		{"redis settings without a server", "root_key: {file: /k}\nredis: {prefix: \"x:\"}\n", []string{"redis", "neither"}},
		{"redis half a client cert", "root_key: {file: /k}\nredis: {url: \"redis://a:1\", tls: {cert_file: /c}}\n", []string{"redis.tls", "key_file"}},
		{"redis missing CA", "root_key: {file: /k}\nredis: {url: \"redis://a:1\", tls: {ca_file: /nonexistent/ca.pem}}\n", []string{"redis.tls.ca_file"}},
		{"redis unknown key", "root_key: {file: /k}\nredis: {url: \"redis://a:1\", channel: x}\n", []string{`unknown key "redis.channel"`}},
		{"not a mapping", "- a\n- b\n", []string{"mapping"}},
	}
	for _, tt := range tests {
		_, err := parseConfig([]byte(tt.doc), env)
		if err == nil {
			t.Errorf("%s: parseConfig succeeded, want an error", tt.name)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "config: ") {
			t.Errorf("%s: error %q does not start with \"config: \"", tt.name, msg)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not mention %q", tt.name, msg, w)
			}
		}
		for _, secret := range []string{"hunter2hunter2", "many"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: error %q reveals a referenced value", tt.name, msg)
			}
		}
	}
}

func TestLoadConfigFileMissing(t *testing.T) {
	t.Parallel()
	_, err := loadConfigFile("/nonexistent/rotary.yaml", testEnv(nil, nil))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/rotary.yaml") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadConfigFile(missing) err = %v, want one naming the file", err)
	}
}

func TestDevConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := devConfig(serverFlags{dev: true, dataDir: dir, devRootToken: "devroot", listen: "127.0.0.1:9999"},
		func(string) string { return "" })
	if err != nil {
		t.Fatalf("devConfig: %v", err)
	}
	if !cfg.Dev || cfg.Store.SQLite != dir+"/rotary.db" || cfg.RootKey.File != dir+"/root.key" || !cfg.RootKey.Generate ||
		cfg.RootTokenFile != dir+"/root-token" || cfg.RootToken != "devroot" || cfg.MinRotationInterval != time.Second ||
		cfg.Listen != "127.0.0.1:9999" {
		t.Errorf("devConfig = %+v", cfg)
	}
}

// The flags that override the file are checked by the same validation as
// the file (daemon.Config.Validate), with the same message.
func TestServerFlagsAreValidatedWithTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rotary.yaml")
	body := "store:\n  sqlite: " + filepath.Join(dir, "r.db") + "\nroot_key:\n  file: " + filepath.Join(dir, "root.key") + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, flag, want string }{
		{"listen: nohostport\n", "", `config: listen: "nohostport" is not host:port`},
		{"", "--listen=nohostport", `config: listen: "nohostport" is not host:port`},
		{"listen: 0.0.0.0:9999\n", "", "plain HTTP is only allowed on loopback"},
		{"", "--listen=0.0.0.0:9999", "plain HTTP is only allowed on loopback"},
	} {
		if err := os.WriteFile(path, []byte(body+tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"--config", path}
		if tc.flag != "" {
			args = append(args, tc.flag)
		}
		err := serverConfigArgs(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("server %v: %v; want an error with %q", args, err, tc.want)
		}
	}
}
