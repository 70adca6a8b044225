package rotators

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Targeter is implemented by rotators that touch an account on a server.
// It names the identity of the account a value is for, so that the engine
// can bind a rotation to one account when its settings are saved and
// refuse, before every step that talks to the server, a value naming any
// other (a token that may write the secret must not be able to point the
// admin credential at another user, or send a password to another host).
// Rotators that touch no target (random) do not implement it.
type Targeter interface {
	Target(ctx context.Context, req TargetRequest) (Target, error)
}

// TargetRequest asks for the identity of the target a value names.
type TargetRequest struct {
	SecretType string
	Config     json.RawMessage
	// Value is the value whose target is asked for: the current value when
	// the settings are saved, then every value the engine is about to send
	// (current, pending, previous) and the admin secret's value.
	Value Value
	// Previous is the previous value when the settings are saved (empty
	// otherwise): for the alternating strategy it names the other user of
	// the pair once the pair has been used.
	Previous Value
}

// TargetField is one field of a target's identity. Names and values are
// never secret (engine, host, port, database, user names).
type TargetField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Or lists the other values a later version of the secret may hold in
	// this field: the other user of an alternating pair.
	Or []string `json:"or,omitempty"`
	// Server marks a field that names the server (engine, host, port): the
	// admin secret's value must name the same one.
	Server bool `json:"server,omitempty"`
}

// Target is the identity of the account a value is for: fields in a fixed
// order, by name.
type Target []TargetField

// ErrTargetMismatch is returned when a value names another target than the
// one its rotation is bound to.
var ErrTargetMismatch = errors.New("target mismatch")

// Field returns the field called name.
func (t Target) Field(name string) (TargetField, bool) {
	for _, f := range t {
		if f.Name == name {
			return f, true
		}
	}
	return TargetField{}, false
}

func (f TargetField) allows(v string) bool {
	if v == f.Value {
		return true
	}
	for _, o := range f.Or {
		if v == o {
			return true
		}
	}
	return false
}

func (f TargetField) bound() string {
	s := strconv.Quote(f.Value)
	for _, o := range f.Or {
		s += " or " + strconv.Quote(o)
	}
	return s
}

// Check reports whether got, the identity of a value (what, e.g. "the
// pending version"), is allowed by t, the identity the rotation is bound
// to. With serverOnly only the fields marked Server are compared (the admin
// value). The error wraps ErrTargetMismatch and names the field; it holds
// no secret, as no identity field is one.
func (t Target) Check(got Target, what string, serverOnly bool) error {
	for _, f := range t {
		if serverOnly && !f.Server {
			continue
		}
		g, ok := got.Field(f.Name)
		if !ok {
			return fmt.Errorf("%w: field %q is missing in %s, the rotation is bound to %s", ErrTargetMismatch, f.Name, what, f.bound())
		}
		if !f.allows(g.Value) {
			return fmt.Errorf("%w: field %q is %q in %s, the rotation is bound to %s", ErrTargetMismatch, f.Name, g.Value, what, f.bound())
		}
	}
	if serverOnly {
		return nil
	}
	for _, g := range got {
		if _, ok := t.Field(g.Name); !ok {
			return fmt.Errorf("%w: field %q (%q) of %s is not part of the rotation's binding", ErrTargetMismatch, g.Name, g.Value, what)
		}
	}
	return nil
}

// Equal reports whether two identities are the same, field by field.
func (t Target) Equal(o Target) bool {
	if len(t) != len(o) {
		return false
	}
	for i := range t {
		a, b := t[i], o[i]
		if a.Name != b.Name || a.Value != b.Value || a.Server != b.Server || strings.Join(a.Or, "\x00") != strings.Join(b.Or, "\x00") {
			return false
		}
	}
	return true
}

// Same reports whether two identities allow the same values in every
// field: the alternating pair bound on either of its users is the same
// target.
func (t Target) Same(o Target) bool {
	if len(t) != len(o) {
		return false
	}
	for _, f := range t {
		g, ok := o.Field(f.Name)
		if !ok || g.Server != f.Server {
			return false
		}
		a, b := append([]string{f.Value}, f.Or...), append([]string{g.Value}, g.Or...)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(slices.Compact(a), slices.Compact(b)) {
			return false
		}
	}
	return true
}

// String renders the identity as name=value pairs, for audit records and
// messages; fields with no value (no client certificate, say) are left out.
func (t Target) String() string {
	if len(t) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(t))
	for _, f := range t {
		if f.Value == "" && len(f.Or) == 0 {
			continue
		}
		v := strconv.Quote(f.Value)
		for _, o := range f.Or {
			v += "|" + strconv.Quote(o)
		}
		parts = append(parts, f.Name+"="+v)
	}
	return strings.Join(parts, " ")
}

// DBTarget is the identity of a database account: engine, host, port,
// dbname and username, and for the alternating strategy the other user of
// the pair (see DBConfig.PendingUsername; previousUser is the previous
// value's user, "" if none) as an alternative username. c.Engine must
// already be the rotator's canonical engine name, c.Username the user
// name the rotator uses, and c.DBName the database it connects to when the
// value names none.
func DBTarget(cfg DBConfig, c DBCredentials, previousUser string) Target {
	user := TargetField{Name: "username", Value: c.Username}
	if cfg.Strategy == StrategyAlternating {
		if other := cfg.PendingUsername(c.Username, previousUser); other != c.Username {
			user.Or = []string{other}
		}
	}
	allowPlaintext := ""
	if c.AllowPlaintext {
		allowPlaintext = "true"
	}
	mode, err := c.Mode()
	if err != nil {
		mode = c.SSLMode // refused by the rotator before it connects; bound as written
	}
	return Target{
		{Name: "engine", Value: c.Engine, Server: true},
		{Name: "host", Value: c.Host, Server: true},
		{Name: "port", Value: strconv.Itoa(c.Port), Server: true},
		{Name: "dbname", Value: c.DBName},
		user,
		// How the rotator reaches the server is part of the binding too:
		// otherwise a writer could downgrade verify-full to require, or
		// point the certificate paths at other files of the daemon's host.
		{Name: "sslmode", Value: mode},
		{Name: "sslrootcert", Value: c.SSLRootCert},
		{Name: "sslcert", Value: c.SSLCert},
		{Name: "sslkey", Value: c.SSLKey},
		{Name: "tls_server_name", Value: c.TLSServerName},
		{Name: "allow_plaintext", Value: allowPlaintext},
	}
}
