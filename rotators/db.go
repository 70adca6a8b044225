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
	// TLS to the target (see transport.go and the README section "TLS to
	// rotation targets"): sslmode as libpq reads it, the CA certificate
	// (PEM file), an optional client certificate and key (PEM files), the
	// name the certificate must carry when it is not the host, and an
	// explicit opt-in to plaintext to a host that is not loopback.
	SSLMode        string `json:"sslmode,omitempty"`
	SSLRootCert    string `json:"sslrootcert,omitempty"`
	SSLCert        string `json:"sslcert,omitempty"`
	SSLKey         string `json:"sslkey,omitempty"`
	TLSServerName  string `json:"tls_server_name,omitempty"`
	AllowPlaintext bool   `json:"allow_plaintext,omitempty"`
}

// ParseDBCredentials reads a db-credentials value and checks where it
// points: host must be a DNS name or an IP address (CheckHost) and the
// transport must not send a password in plaintext to a host that is not
// loopback (CheckTransport). Its errors never quote the password.
func ParseDBCredentials(v Value) (DBCredentials, error) {
	var c DBCredentials
	if err := json.Unmarshal(v.Reveal(), &c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return c, fmt.Errorf("db-credentials: field %q: want a %s", te.Field, te.Type)
		}
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
	if err := CheckHost(c.Host); err != nil {
		return c, fmt.Errorf("db-credentials: %w", err)
	}
	if err := c.CheckTransport(); err != nil {
		return c, fmt.Errorf("db-credentials: %w", err)
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
	// it can do what the application needs (default SELECT 1). It must be
	// one read-only statement (CheckSQLTestQuery; Redis: a read-only
	// command) and runs in a read-only transaction.
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

// readOnlyKeywords are the first words a SQL test_query may start with:
// statements that only read.
var readOnlyKeywords = map[string]bool{"SELECT": true, "WITH": true, "VALUES": true, "TABLE": true, "SHOW": true}

// CheckSQLTestQuery returns ErrTestQuery, wrapped with the reason, unless
// q is empty (the default SELECT 1) or one statement (an optional
// trailing ';') that starts with SELECT, WITH, VALUES, TABLE or SHOW and
// writes no file (INTO OUTFILE/DUMPFILE). Literals, quoted identifiers
// and comments are skipped; a backslash is never read as an escape, so a
// string that MySQL would end later makes the check refuse rather than
// accept. This is the early, readable refusal: the rotators also run the
// query in a read-only transaction, in a form the server itself limits to
// one statement.
func CheckSQLTestQuery(q string) error {
	if strings.TrimSpace(q) == "" {
		return nil
	}
	var words []string
	end := -1 // offset of the first ';' outside literals and comments
	for i := 0; i < len(q) && end < 0; {
		ch := q[i]
		switch {
		case ch == '\'' || ch == '"' || ch == '`':
			j := i + 1
			for {
				k := strings.IndexByte(q[j:], ch)
				if k < 0 {
					return fmt.Errorf("config: %w: unterminated %c quote", ErrTestQuery, ch)
				}
				j += k + 1
				if j < len(q) && q[j] == ch { // doubled quote: still inside
					j++
					continue
				}
				break
			}
			i = j
		case ch == '$' && (i == 0 || !isWordByte(q[i-1])):
			// PostgreSQL dollar quoting: $tag$ … $tag$.
			k := strings.IndexByte(q[i+1:], '$')
			tag := ""
			if k >= 0 {
				tag = q[i : i+k+2]
			}
			if k < 0 || strings.IndexFunc(tag[1:len(tag)-1], func(r rune) bool { return !isWordByte(byte(r)) || r > 127 }) >= 0 {
				i++
				continue
			}
			e := strings.Index(q[i+len(tag):], tag)
			if e < 0 {
				return fmt.Errorf("config: %w: unterminated %s quote", ErrTestQuery, tag)
			}
			i += len(tag) + e + len(tag)
		case ch == '-' && strings.HasPrefix(q[i:], "--"):
			k := strings.IndexByte(q[i:], '\n')
			if k < 0 {
				k = len(q) - i
			}
			i += k
		case ch == '/' && strings.HasPrefix(q[i:], "/*"):
			k := strings.Index(q[i+2:], "*/")
			if k < 0 {
				return fmt.Errorf("config: %w: unterminated /* comment", ErrTestQuery)
			}
			i += 2 + k + 2
		case ch == ';':
			end = i
		case isWordByte(ch):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			words = append(words, strings.ToUpper(q[i:j]))
			i = j
		default:
			i++
		}
	}
	if end >= 0 {
		if hasCode(q[end+1:]) {
			return fmt.Errorf("config: %w: it holds more than one statement (a ';' followed by more)", ErrTestQuery)
		}
	}
	if len(words) == 0 {
		return fmt.Errorf("config: %w: no statement", ErrTestQuery)
	}
	if !readOnlyKeywords[words[0]] {
		return fmt.Errorf("config: %w: it starts with %s; use SELECT, WITH, VALUES, TABLE or SHOW", ErrTestQuery, words[0])
	}
	for _, w := range words {
		if w == "OUTFILE" || w == "DUMPFILE" {
			return fmt.Errorf("config: %w: it writes a file (INTO %s)", ErrTestQuery, w)
		}
	}
	return nil
}

// hasCode reports whether s holds anything but spaces, comments and
// semicolons.
func hasCode(s string) bool {
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == ';':
			i++
		case strings.HasPrefix(s[i:], "--"):
			k := strings.IndexByte(s[i:], '\n')
			if k < 0 {
				return false
			}
			i += k
		case strings.HasPrefix(s[i:], "/*"):
			k := strings.Index(s[i+2:], "*/")
			if k < 0 {
				return true
			}
			i += 2 + k + 2
		default:
			return true
		}
	}
	return false
}

func isWordByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b >= 0x80
}

// CheckPair refuses an alternating pending user that is not the other
// user of the current user's pair: with alternate_username set the pair
// is that name and the other user, otherwise a user and its name with
// "_b" appended. Set checks it before the admin touches anything, so a
// current value naming some user cannot make the admin give a password
// (and the memberships of the current user) to an unrelated account.
func (c DBConfig) CheckPair(current, pending string) error {
	ok := false
	if c.AlternateUsername != "" {
		ok = current != pending && (current == c.AlternateUsername || pending == c.AlternateUsername)
	} else {
		ok = pending == current+"_b" || current == pending+"_b"
	}
	if !ok {
		return fmt.Errorf("alternating: %w: the pending user %q is not the other user of %q's pair (alternate_username %q)",
			ErrWrongIdentity, pending, current, c.Alternate(current))
	}
	return nil
}
