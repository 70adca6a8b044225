package rotators

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/sensitive"
)

// DBCredentials is a db-credentials value (see the contract): what a
// database rotator reads and writes. Fields other than these are kept as
// they are when a rotator changes the password.
type DBCredentials struct {
	Engine   string `json:"engine"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	DBName   string `json:"dbname,omitempty"`
	SSLMode  string `json:"sslmode,omitempty"`
}

// ParseDBCredentials reads a db-credentials value. Its errors never quote
// the value.
func ParseDBCredentials(v Value) (DBCredentials, error) {
	var c DBCredentials
	if err := json.Unmarshal(v.Reveal(), &c); err != nil {
		return c, errors.New("db-credentials: not a JSON object with engine, host, port, username and password")
	}
	switch {
	case c.Host == "":
		return c, errors.New(`db-credentials: field "host" is empty`)
	case c.Port < 1 || c.Port > 65535:
		return c, errors.New(`db-credentials: field "port" must be between 1 and 65535`)
	case c.Username == "" && c.Engine != "redis":
		return c, errors.New(`db-credentials: field "username" is empty`)
	case c.Password == "":
		return c, errors.New(`db-credentials: field "password" is empty`)
	}
	return c, nil
}

// WithCredentials returns v with username and password replaced, every
// other field kept as it was.
func WithCredentials(v Value, username string, password Value) (Value, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v.Reveal(), &m); err != nil {
		return nil, errors.New("db-credentials: not a JSON object")
	}
	u, _ := json.Marshal(username)
	p, _ := json.Marshal(string(password.Reveal()))
	m["username"], m["password"] = u, p
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, errors.New("db-credentials: cannot encode")
	}
	return sensitive.Bytes(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// DBConfig is the rotation config of the database rotators.
type DBConfig struct {
	Strategy string `json:"strategy,omitempty"` // single-user (default), admin, alternating
	// AdminSecret names a db-credentials secret with a user allowed to
	// change passwords (strategies admin and alternating).
	AdminSecret string         `json:"admin_secret,omitempty"`
	Password    PasswordPolicy `json:"password,omitempty"`
	// TestQuery runs after logging in with the pending credential, to check
	// it can do what the application needs (default SELECT 1).
	TestQuery string `json:"test_query,omitempty"`
	// AlternateUsername is the second user of the alternating strategy
	// (default: the first user's name with "_b" appended). The rotator
	// creates it, with the first user's memberships, on first use.
	AlternateUsername string `json:"alternate_username,omitempty"`
	// ConnectTimeout bounds each connection to the target (default 10s).
	ConnectTimeout string `json:"connect_timeout,omitempty"`
}

// ParseDBConfig reads and checks a database rotator config. Unknown fields
// are refused, and errors name the field.
func ParseDBConfig(raw json.RawMessage) (DBConfig, error) {
	var c DBConfig
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			msg := err.Error()
			if strings.HasPrefix(msg, "json: unknown field ") {
				return c, fmt.Errorf("config: unknown field %s", strings.TrimPrefix(msg, "json: unknown field "))
			}
			return c, errors.New("config: not a valid JSON object")
		}
	}
	if c.Strategy == "" {
		c.Strategy = StrategySingleUser
	}
	switch c.Strategy {
	case StrategySingleUser:
	case StrategyAdmin, StrategyAlternating:
		if c.AdminSecret == "" {
			return c, fmt.Errorf("config: strategy %s needs admin_secret (the name of a db-credentials secret)", c.Strategy)
		}
	default:
		return c, fmt.Errorf("config: strategy %q: use single-user, admin or alternating", c.Strategy)
	}
	if err := c.Password.Validate(); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if c.ConnectTimeout != "" {
		if d, err := time.ParseDuration(c.ConnectTimeout); err != nil || d <= 0 || d > 5*time.Minute {
			return c, fmt.Errorf("config: connect_timeout %q: a duration up to 5m", c.ConnectTimeout)
		}
	}
	return c, nil
}

// Timeout returns the connect timeout.
func (c DBConfig) Timeout() time.Duration {
	if d, err := time.ParseDuration(c.ConnectTimeout); err == nil && d > 0 {
		return d
	}
	return 10 * time.Second
}

// Alternate returns the other user of the alternating pair.
func (c DBConfig) Alternate(primary string) string {
	if c.AlternateUsername != "" {
		return c.AlternateUsername
	}
	return primary + "_b"
}

// PendingUsername returns the user the pending credential is for: the
// current user, or for alternating the other user of the pair. The pair
// is the current user and the previous version's user once the pair has
// been used; on the first alternating rotation it is the current user and
// Alternate(current).
func (c DBConfig) PendingUsername(current, previous string) string {
	if c.Strategy != StrategyAlternating {
		return current
	}
	if previous != "" && previous != current {
		return previous
	}
	return c.Alternate(current)
}
