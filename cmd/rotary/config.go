package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rotary-secrets/rotary/daemon"
)

// The server's YAML configuration file. Decoding is strict: an unknown or
// repeated key is an error naming it and its line. String values may hold
// $env{NAME} and $file{PATH} references, resolved while decoding; errors
// about them name the field and the reference, never a resolved value.

const (
	defaultSQLitePath    = "/var/lib/rotary/rotary.db"
	defaultRootTokenFile = "/var/lib/rotary/root-token"
)

// fileConfig mirrors the YAML document; yaml tags name the keys.
type fileConfig struct {
	Listen              string         `yaml:"listen"`
	TLS                 tlsFile        `yaml:"tls"`
	AllowInsecureHTTP   bool           `yaml:"allow_insecure_http"`
	Store               storeFile      `yaml:"store"`
	RootKey             rootKeyFile    `yaml:"root_key"`
	RootTokenFile       string         `yaml:"root_token_file"`
	Redis               redisFile      `yaml:"redis"`
	Regions             []string       `yaml:"regions"`
	PluginDir           string         `yaml:"plugin_dir"`
	PluginStartTimeout  configDuration `yaml:"plugin_start_timeout"`
	PluginCallTimeout   configDuration `yaml:"plugin_call_timeout"`
	MinRotationInterval configDuration `yaml:"min_rotation_interval"`
	RotationConcurrency int            `yaml:"rotation_concurrency"`
	AuditWriters        int            `yaml:"audit_writers"`
	AuditAnchorEvery    int64          `yaml:"audit_anchor_every"`
	AuditAnchorInterval configDuration `yaml:"audit_anchor_interval"`
	ShutdownTimeout     configDuration `yaml:"shutdown_timeout"`
	RotationLease       configDuration `yaml:"rotation_lease"`
	RetryBackoff        configDuration `yaml:"retry_backoff"`
	Events              eventsFile     `yaml:"events"`
	OutboxRetention     configDuration `yaml:"outbox_retention"`
	HookMaxAttempts     int            `yaml:"hook_max_attempts"`
	HookMaxAge          configDuration `yaml:"hook_max_age"`
	HookMaxBacklog      int            `yaml:"hook_max_backlog"`
}

// redisFile is the redis: block; a plain string is its url.
type redisFile struct {
	URL        string       `yaml:"url"`
	Addrs      []string     `yaml:"addrs"`
	MasterName string       `yaml:"master_name"`
	Username   string       `yaml:"username"`
	Password   string       `yaml:"password"`
	DB         int          `yaml:"db"`
	TLS        redisTLSFile `yaml:"tls"`
	Prefix     string       `yaml:"prefix"`
	MaxLen     int          `yaml:"max_len"`
}

type redisTLSFile struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

var redisFileType = reflect.TypeOf(redisFile{})

// eventsFile configures GET /v1/events.
type eventsFile struct {
	Poll      configDuration `yaml:"poll"`
	Heartbeat configDuration `yaml:"heartbeat"`
}

type tlsFile struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

type storeFile struct {
	SQLite   string `yaml:"sqlite"`
	Postgres string `yaml:"postgres"`
}

type rootKeyFile struct {
	File           string `yaml:"file"`
	Env            string `yaml:"env"`
	PassphraseFile string `yaml:"passphrase_file"`
	Keep           bool   `yaml:"keep"`
}

// configDuration is a duration in parseDuration syntax ("7d", "90s").
type configDuration time.Duration

var durationType = reflect.TypeOf(configDuration(0))

// configEnv is what reference resolution may look at.
type configEnv struct {
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error)
}

func osConfigEnv() configEnv { return configEnv{lookupEnv: os.LookupEnv, readFile: os.ReadFile} }

// loadConfigFile reads and parses the config file at path.
func loadConfigFile(path string, env configEnv) (daemon.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return daemon.Config{}, fmt.Errorf("config: %w", err)
	}
	return parseConfig(b, env)
}

// parseConfig parses a YAML config document into a daemon.Config.
func parseConfig(data []byte, env configEnv) (daemon.Config, error) {
	var fc fileConfig
	if err := decodeConfig(data, &fc, env); err != nil {
		return daemon.Config{}, err
	}
	return fc.daemonConfig()
}

func decodeConfig(data []byte, fc *fileConfig, env configEnv) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file: every default
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	d := &configDecoder{env: env}
	return d.decode(root, reflect.ValueOf(fc).Elem(), "")
}

type configDecoder struct{ env configEnv }

func fieldName(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

func (d *configDecoder) errorf(n *yaml.Node, path, format string, args ...any) error {
	return fmt.Errorf("config: %s (line %d): %s", fieldName(path), n.Line, fmt.Sprintf(format, args...))
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func (d *configDecoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) {
		return nil // keep the zero value (the default)
	}
	switch {
	case v.Type() == durationType:
		s, fromRef, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		dur, err := parseDuration(s)
		if err != nil || dur < 0 {
			if fromRef {
				return d.errorf(n, path, "want a duration such as 90s, 15m, 12h or 7d")
			}
			return d.errorf(n, path, "invalid duration %q (want e.g. 90s, 15m, 12h, 7d)", s)
		}
		v.SetInt(int64(dur))
		return nil
	case v.Type() == redisFileType && n.Kind == yaml.ScalarNode:
		return d.decode(n, v.FieldByName("URL"), path)
	case v.Kind() == reflect.Struct:
		return d.decodeStruct(n, v, path)
	case v.Kind() == reflect.String:
		s, _, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		v.SetString(s)
		return nil
	case v.Kind() == reflect.Bool:
		s, fromRef, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			if fromRef {
				return d.errorf(n, path, "want true or false")
			}
			return d.errorf(n, path, "want true or false, got %q", s)
		}
		return nil
	case v.Kind() == reflect.Int:
		s, fromRef, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		i, err := strconv.Atoi(s)
		if err != nil {
			if fromRef {
				return d.errorf(n, path, "want an integer")
			}
			return d.errorf(n, path, "want an integer, got %q", s)
		}
		v.SetInt(int64(i))
		return nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		if n.Kind != yaml.SequenceNode {
			return d.errorf(n, path, "want a list, e.g. [default, eu-west-1]")
		}
		out := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			s, _, err := d.scalar(item, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		v.Set(reflect.ValueOf(out))
		return nil
	}
	return d.errorf(n, path, "unsupported field type %s", v.Type())
}

func (d *configDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, path, "want a mapping of keys to values")
	}
	fields := map[string]int{}
	var known []string
	for i := 0; i < v.NumField(); i++ {
		tag := strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			fields[tag] = i
			known = append(known, tag)
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key := kn.Value
		full := key
		if path != "" {
			full = path + "." + key
		}
		if kn.Kind != yaml.ScalarNode {
			return fmt.Errorf("config: line %d: keys of %s must be plain words", kn.Line, fieldName(path))
		}
		idx, ok := fields[key]
		if !ok {
			return fmt.Errorf("config: line %d: unknown key %q (known keys of %s: %s)",
				kn.Line, full, fieldName(path), strings.Join(known, ", "))
		}
		if seen[key] {
			return fmt.Errorf("config: line %d: key %q given twice", kn.Line, full)
		}
		seen[key] = true
		if err := d.decode(vn, v.Field(idx), full); err != nil {
			return err
		}
	}
	return nil
}

var refPattern = regexp.MustCompile(`\$(env|file)\{([^}]*)\}`)

// scalar returns a scalar's text with its references resolved, and
// whether any reference was used (then the text must not be printed).
func (d *configDecoder) scalar(n *yaml.Node, path string) (string, bool, error) {
	if n.Kind != yaml.ScalarNode {
		return "", false, d.errorf(n, path, "want a single value, not a list or mapping")
	}
	s := n.Value
	if !strings.Contains(s, "$env{") && !strings.Contains(s, "$file{") {
		return s, false, nil
	}
	var firstErr error
	out := refPattern.ReplaceAllStringFunc(s, func(ref string) string {
		if firstErr != nil {
			return ""
		}
		m := refPattern.FindStringSubmatch(ref)
		kind, arg := m[1], m[2]
		if arg == "" {
			firstErr = d.errorf(n, path, "%s names nothing", ref)
			return ""
		}
		switch kind {
		case "env":
			val, ok := d.env.lookupEnv(arg)
			if !ok {
				firstErr = d.errorf(n, path, "%s: environment variable %s is not set", ref, arg)
				return ""
			}
			return val
		default:
			b, err := d.env.readFile(arg)
			if err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				firstErr = d.errorf(n, path, "%s: cannot read the file: %v", ref, err)
				return ""
			}
			return strings.TrimRight(string(b), "\r\n")
		}
	})
	if firstErr != nil {
		return "", true, firstErr
	}
	return out, true, nil
}

// daemonConfig validates the decoded file and fills the defaults that
// depend on other fields. Errors name the field.
func (fc *fileConfig) daemonConfig() (daemon.Config, error) {
	cfg := daemon.Config{
		Listen:            fc.Listen,
		TLS:               daemon.TLSConfig{CertFile: fc.TLS.CertFile, KeyFile: fc.TLS.KeyFile, ClientCAFile: fc.TLS.ClientCAFile},
		AllowInsecureHTTP: fc.AllowInsecureHTTP,
		Store:             daemon.StoreConfig{SQLite: fc.Store.SQLite, Postgres: fc.Store.Postgres},
		RootKey:           daemon.RootKeyConfig{File: fc.RootKey.File, Env: fc.RootKey.Env, PassphraseFile: fc.RootKey.PassphraseFile, Keep: fc.RootKey.Keep},
		RootTokenFile:     fc.RootTokenFile,
		Redis: daemon.RedisConfig{
			URL: fc.Redis.URL, Addrs: fc.Redis.Addrs, MasterName: fc.Redis.MasterName,
			Username: fc.Redis.Username, Password: fc.Redis.Password, DB: fc.Redis.DB,
			CAFile: fc.Redis.TLS.CAFile, CertFile: fc.Redis.TLS.CertFile, KeyFile: fc.Redis.TLS.KeyFile,
			ServerName: fc.Redis.TLS.ServerName, Prefix: fc.Redis.Prefix, MaxLen: int64(fc.Redis.MaxLen),
		},
		Regions:             fc.Regions,
		PluginDir:           fc.PluginDir,
		PluginStartTimeout:  time.Duration(fc.PluginStartTimeout),
		PluginCallTimeout:   time.Duration(fc.PluginCallTimeout),
		MinRotationInterval: time.Duration(fc.MinRotationInterval),
		RotationConcurrency: fc.RotationConcurrency,
		AuditWriters:        fc.AuditWriters,
		AuditAnchorEvery:    fc.AuditAnchorEvery,
		AuditAnchorInterval: time.Duration(fc.AuditAnchorInterval),
		ShutdownTimeout:     time.Duration(fc.ShutdownTimeout),
		RotationLease:       time.Duration(fc.RotationLease),
		RetryBackoffBase:    time.Duration(fc.RetryBackoff),
		EventsPoll:          time.Duration(fc.Events.Poll),
		EventsHeartbeat:     time.Duration(fc.Events.Heartbeat),
		OutboxRetention:     time.Duration(fc.OutboxRetention),
		HookMaxAttempts:     fc.HookMaxAttempts,
		HookMaxAge:          time.Duration(fc.HookMaxAge),
		HookMaxBacklog:      fc.HookMaxBacklog,
	}
	// Defaults that depend on where the daemon runs from the file; the
	// rest (and every check) is daemon.Config.Validate, the one place the
	// configuration is validated.
	switch {
	case cfg.Store.Postgres != "" && cfg.Store.SQLite == "":
		if cfg.RootTokenFile == "" {
			cfg.RootTokenFile = defaultRootTokenFile
		}
	case cfg.Store.SQLite == "" && cfg.Store.Postgres == "":
		cfg.Store.SQLite = defaultSQLitePath
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}
