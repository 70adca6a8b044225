package rabbit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// SecretType is the only secret type this rotator rotates.
const SecretType = "key-value"

// DefaultTimeout bounds each connection and HTTP call when the config
// names no connect_timeout.
const DefaultTimeout = 10 * time.Second

// Config is the rotation config.
type Config struct {
	// Strategy: admin or alternating; single-user (the default, as for the
	// built-in rotators) is refused with rotators.ErrUnsupported.
	Strategy string `json:"strategy,omitempty"`
	// AdminSecret names a key-value secret of the same shape for a user
	// with the administrator tag.
	AdminSecret string                  `json:"admin_secret,omitempty"`
	Password    rotators.PasswordPolicy `json:"password,omitempty"`
	// AlternateUsername is the second user of the alternating strategy
	// (default: the first user's name with "_b" appended).
	AlternateUsername string `json:"alternate_username,omitempty"`
	// ConnectTimeout bounds each AMQP connection and HTTP call (default
	// 10s, at most 5m).
	ConnectTimeout string `json:"connect_timeout,omitempty"`
}

// errSingleUser explains why single-user is refused.
const errSingleUser = "only users with the administrator tag may change passwords through RabbitMQ's management API, " +
	"so a user cannot change its own; use strategy admin (admin_secret: a user with the administrator tag) or alternating"

// ParseConfig reads and checks a config strictly: unknown fields are
// refused and errors name the field.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			msg := err.Error()
			var te *json.UnmarshalTypeError
			switch {
			case strings.HasPrefix(msg, "json: unknown field "):
				return c, fmt.Errorf("config: unknown field %s (known: strategy, admin_secret, password, alternate_username, connect_timeout)",
					strings.TrimPrefix(msg, "json: unknown field "))
			case errors.As(err, &te) && te.Field != "":
				return c, fmt.Errorf("config: field %q: want a %s", te.Field, te.Type)
			}
			return c, errors.New("config: not a valid JSON object")
		}
		if dec.More() {
			return c, errors.New("config: more than one JSON value")
		}
	}
	switch c.Strategy {
	case "", rotators.StrategySingleUser:
		return c, fmt.Errorf("config: field \"strategy\": %s%s: %w: %s", rotators.StrategySingleUser,
			map[bool]string{true: " (the default)", false: ""}[c.Strategy == ""], rotators.ErrUnsupported, errSingleUser)
	case rotators.StrategyAdmin, rotators.StrategyAlternating:
		if c.AdminSecret == "" {
			return c, fmt.Errorf("config: field \"admin_secret\": strategy %s needs the name of a key-value secret for a user with the administrator tag", c.Strategy)
		}
	default:
		return c, fmt.Errorf("config: field \"strategy\": %q: use admin or alternating", c.Strategy)
	}
	if c.AlternateUsername != "" && c.Strategy != rotators.StrategyAlternating {
		return c, fmt.Errorf("config: field \"alternate_username\": only for strategy alternating")
	}
	if err := checkUsername(c.AlternateUsername); c.AlternateUsername != "" && err != nil {
		return c, fmt.Errorf("config: field \"alternate_username\": %w", err)
	}
	if err := c.Password.Validate(); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if c.ConnectTimeout != "" {
		if d, err := time.ParseDuration(c.ConnectTimeout); err != nil || d <= 0 || d > 5*time.Minute {
			return c, fmt.Errorf("config: field \"connect_timeout\": %q: a duration up to 5m", c.ConnectTimeout)
		}
	}
	return c, nil
}

// Timeout returns the connect timeout.
func (c Config) Timeout() time.Duration {
	if d, err := time.ParseDuration(c.ConnectTimeout); err == nil && d > 0 {
		return d
	}
	return DefaultTimeout
}

// db returns the config in the database rotators' form, for the pair
// helpers (PendingUsername, CheckPair, DBTarget's alternative user).
func (c Config) db() rotators.DBConfig {
	return rotators.DBConfig{Strategy: c.Strategy, AdminSecret: c.AdminSecret, AlternateUsername: c.AlternateUsername}
}

// Creds is a parsed value:
//
//	{"username":"app","password":"…","host":"127.0.0.1","port":"5672",
//	 "management_url":"http://127.0.0.1:15672"}
//
// A key-value secret holds strings only, so port (and allow_plaintext) are
// strings; a JSON number or boolean is accepted too. Optional fields:
// vhost (the virtual host Test opens, default "/"), sslmode, sslrootcert,
// tls_server_name and allow_plaintext with the meanings of db-credentials
// (rotators.DBCredentials) for the AMQP connection, and sslrootcert also
// for an https management_url.
type Creds struct {
	Username      string
	Host          string
	Port          int
	ManagementURL string
	Vhost         string
	transport     rotators.DBCredentials // host, port and the TLS fields, for Mode, CheckTransport and TLSConfig
	mgmt          *url.URL
	pw            sensitive.Bytes
}

// knownFields are the value's fields; others are kept as they are when
// the password changes but play no part.
var knownFields = []string{"username", "password", "host", "port", "management_url", "vhost", "sslmode", "sslrootcert", "tls_server_name", "allow_plaintext"}

// ParseValue reads a value (what: "current", "pending", "admin"…) and
// checks where it points: host must be a host name or an IP address,
// management_url an http(s) URL without credentials, and no password may
// travel in plaintext to a host that is not loopback (rotators.ErrPlaintext)
// unless allow_plaintext is "true". Errors name the field and never quote
// the password.
func ParseValue(v rotators.Value, what string) (Creds, error) {
	var c Creds
	if len(v) == 0 {
		return c, fmt.Errorf("%s value is missing", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v.Reveal(), &m); err != nil {
		return c, fmt.Errorf("%s value: not a JSON object with username, password, host, port and management_url", what)
	}
	str := func(name string, required bool) (string, error) {
		raw, ok := m[name]
		if !ok || string(raw) == "null" {
			if required {
				return "", fmt.Errorf("%s value: field %q is missing", what, name)
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			if s == "" && required {
				return "", fmt.Errorf("%s value: field %q is empty", what, name)
			}
			return s, nil
		}
		if name == "port" || name == "allow_plaintext" { // a number or a boolean, as written
			var n json.Number
			var b bool
			if json.Unmarshal(raw, &n) == nil || json.Unmarshal(raw, &b) == nil {
				return string(raw), nil
			}
		}
		return "", fmt.Errorf("%s value: field %q: want a string", what, name)
	}
	var err error
	var port, pw, plain string
	if c.Username, err = str("username", true); err != nil {
		return c, err
	}
	if pw, err = str("password", true); err != nil {
		return c, err
	}
	if c.Host, err = str("host", true); err != nil {
		return c, err
	}
	if port, err = str("port", true); err != nil {
		return c, err
	}
	if c.ManagementURL, err = str("management_url", true); err != nil {
		return c, err
	}
	if c.Vhost, err = str("vhost", false); err != nil {
		return c, err
	}
	if c.Vhost == "" {
		c.Vhost = "/"
	}
	t := &c.transport
	for name, dst := range map[string]*string{"sslmode": &t.SSLMode, "sslrootcert": &t.SSLRootCert, "tls_server_name": &t.TLSServerName, "allow_plaintext": &plain} {
		if *dst, err = str(name, false); err != nil {
			return c, err
		}
	}
	switch plain {
	case "", "false":
	case "true":
		t.AllowPlaintext = true
	default:
		return c, fmt.Errorf("%s value: field \"allow_plaintext\": %q: want \"true\" or \"false\"", what, plain)
	}
	if err := checkUsername(c.Username); err != nil {
		return c, fmt.Errorf("%s value: field \"username\": %w", what, err)
	}
	if c.Port, err = strconv.Atoi(port); err != nil || c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("%s value: field \"port\": %q: want the AMQP port, 1 to 65535", what, port)
	}
	if err := rotators.CheckHost(c.Host); err != nil {
		return c, fmt.Errorf("%s value: %w", what, err)
	}
	t.Host, t.Port = c.Host, c.Port
	mode, err := t.Mode()
	if err != nil {
		return c, fmt.Errorf("%s value: %w", what, err)
	}
	if mode == rotators.SSLAllow || mode == rotators.SSLPrefer {
		return c, fmt.Errorf(`%s value: field "sslmode": %q: AMQP does not negotiate TLS on one port; use disable, require, verify-ca or verify-full`, what, t.SSLMode)
	}
	if err := t.CheckTransport(); err != nil {
		return c, fmt.Errorf("%s value: %w", what, err)
	}
	if c.mgmt, err = parseManagementURL(c.ManagementURL, t.AllowPlaintext); err != nil {
		return c, fmt.Errorf("%s value: %w", what, err)
	}
	c.pw = sensitive.Bytes(pw)
	return c, nil
}

// parseManagementURL checks a management_url: http or https, a host name
// or IP address, no credentials, query or fragment; http only to a
// loopback host unless allowPlaintext (the management API takes the
// admin's password in every request).
func parseManagementURL(s string, allowPlaintext bool) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf(`field "management_url": %q: want http(s)://host:port, e.g. http://127.0.0.1:15672`, s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf(`field "management_url": scheme %q: want http or https`, u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New(`field "management_url": must not hold credentials (the admin value's username and password are used)`)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf(`field "management_url": %q: no query or fragment`, s)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf(`field "management_url": %q has no host`, s)
	}
	if err := rotators.CheckHost(host); err != nil {
		return nil, fmt.Errorf(`field "management_url": %w`, err)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf(`field "management_url": port %q: want 1 to 65535`, p)
		}
	}
	if u.Scheme == "http" && !rotators.IsLoopback(host) && !allowPlaintext {
		return nil, fmt.Errorf(`field "management_url": %w to %q over http: use an https management_url (and "sslrootcert": the CA certificate, PEM), `+
			`or "allow_plaintext": "true" to accept the risk`, rotators.ErrPlaintext, host)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// checkUsername refuses names the rotator cannot use: empty ones and
// names with control characters (RabbitMQ accepts any UTF-8 name; every
// name travels percent-encoded in URL paths and length-prefixed in AMQP).
func checkUsername(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q: control characters are not allowed in user names", name)
		}
	}
	return nil
}

func (c Creds) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// withCredentials returns v with username and password replaced, every
// other field kept.
func withCredentials(v rotators.Value, username string, password rotators.Value) (rotators.Value, error) {
	return rotators.WithCredentials(v, username, password)
}
