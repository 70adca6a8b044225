// Package rotator is the template plugin's rotator: the single-user
// strategy over an account store, a directory (config "accounts_dir") with
// one file per account holding a salted hash of its password. It is the
// whole rotators contract a plugin needs: Info, ValidateConfig, Target (so
// a rotation is bound to its account), Create, Set (idempotent), Test and
// Finish.
package rotator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rotary-secrets/rotary/plugins/sdk"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Config is the rotation config.
type Config struct {
	AccountsDir string                  `json:"accounts_dir"`
	Strategy    string                  `json:"strategy,omitempty"` // single-user (the only one)
	Password    rotators.PasswordPolicy `json:"password,omitempty"`
}

// Rotator rotates basic-auth secrets in an account store.
type Rotator struct{}

var (
	_ rotators.Rotator         = Rotator{}
	_ rotators.ConfigValidator = Rotator{}
	_ rotators.Targeter        = Rotator{}
	_ sdk.Informer             = Rotator{}
)

// PluginInfo implements sdk.Informer.
func (Rotator) PluginInfo() sdk.Info {
	return sdk.Info{
		Name: "template", Version: "1.0.0", SecretTypes: []string{"basic-auth"},
		ConfigExample:  json.RawMessage(`{"accounts_dir":"/var/lib/accounts"}`),
		IdentityFields: []string{"accounts_dir", "username"},
	}
}

func parseConfig(secretType string, raw json.RawMessage) (Config, error) {
	var c Config
	if secretType != "basic-auth" {
		return c, fmt.Errorf("%w: secret type %q (the template rotates basic-auth secrets)", rotators.ErrUnsupported, secretType)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config: %v", err)
	}
	if !filepath.IsAbs(c.AccountsDir) {
		return c, fmt.Errorf("config: field accounts_dir %q must be an absolute path", c.AccountsDir)
	}
	if c.Strategy != "" && c.Strategy != rotators.StrategySingleUser {
		return c, fmt.Errorf("config: field strategy %q: %w (only single-user)", c.Strategy, rotators.ErrUnsupported)
	}
	if err := c.Password.Validate(); err != nil {
		return c, fmt.Errorf("config: field password: %w", err)
	}
	return c, nil
}

// Credentials is a basic-auth value.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func parseValue(v rotators.Value) (Credentials, error) {
	var c Credentials
	if err := json.Unmarshal(v.Reveal(), &c); err != nil {
		return c, errors.New("basic-auth: not a JSON object with username and password")
	}
	if c.Username == "" {
		return c, errors.New(`basic-auth: field "username" is empty`)
	}
	if c.Password == "" {
		return c, errors.New(`basic-auth: field "password" is empty`)
	}
	return c, nil
}

// ValidateConfig implements rotators.ConfigValidator.
func (Rotator) ValidateConfig(_ context.Context, secretType string, raw json.RawMessage) error {
	_, err := parseConfig(secretType, raw)
	return err
}

// Target implements rotators.Targeter: the account store and the user.
func (Rotator) Target(_ context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	c, err := parseConfig(req.SecretType, req.Config)
	if err != nil {
		return nil, err
	}
	v, err := parseValue(req.Value)
	if err != nil {
		return nil, err
	}
	return rotators.Target{
		{Name: "accounts_dir", Value: c.AccountsDir, Server: true},
		{Name: "username", Value: v.Username},
	}, nil
}

// Create implements rotators.Rotator: the same user with a new password.
func (Rotator) Create(_ context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	c, err := parseConfig(req.Secret.Type, req.Config)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	cur, err := parseValue(req.Current)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("current value: %w", err)
	}
	pw, err := rotators.GeneratePassword(c.Password)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	v, err := rotators.WithCredentials(req.Current, cur.Username, pw)
	return rotators.CreateResponse{Value: v}, err
}

// Set implements rotators.Rotator: the user changes its own password. Run
// twice it finds the pending password already set and does nothing.
func (Rotator) Set(_ context.Context, req rotators.SetRequest) error {
	c, err := parseConfig(req.Secret.Type, req.Config)
	if err != nil {
		return err
	}
	cur, err := parseValue(req.Current)
	if err != nil {
		return fmt.Errorf("current value: %w", err)
	}
	pend, err := parseValue(req.Pending)
	if err != nil {
		return fmt.Errorf("pending value: %w", err)
	}
	if pend.Username != cur.Username {
		return fmt.Errorf("%w: field \"username\": the pending value names another user than the current one", rotators.ErrTargetMismatch)
	}
	st := Store{Dir: c.AccountsDir}
	if st.Check(pend.Username, pend.Password) == nil {
		return nil // already set
	}
	if err := st.Check(cur.Username, cur.Password); err != nil {
		return fmt.Errorf("the current password is refused: %w", err)
	}
	return st.Put(pend.Username, pend.Password)
}

// Test implements rotators.Rotator: the password logs in.
func (Rotator) Test(_ context.Context, req rotators.TestRequest) error {
	c, err := parseConfig(req.Secret.Type, req.Config)
	if err != nil {
		return err
	}
	v, err := parseValue(req.Value)
	if err != nil {
		return err
	}
	return Store{Dir: c.AccountsDir}.Check(v.Username, v.Password)
}

// Finish implements rotators.Rotator. With single-user the old password
// stopped working in Set, so there is nothing left to clean up, in an
// emergency either. An emergency reports what the rotation made useless
// (req.Effects; `rotary rotate --emergency --wait` shows it), once it has
// checked that the account store really refuses the previous password.
func (Rotator) Finish(_ context.Context, req rotators.FinishRequest) error {
	if !req.Emergency || len(req.Previous) == 0 {
		return nil
	}
	c, err := parseConfig(req.Secret.Type, req.Config)
	if err != nil {
		return err
	}
	prev, err := parseValue(req.Previous)
	if err != nil {
		return fmt.Errorf("previous value: %w", err)
	}
	switch err := (Store{Dir: c.AccountsDir}).Check(prev.Username, prev.Password); {
	case err == nil:
		return fmt.Errorf("the previous password of user %q still logs in", prev.Username)
	case errors.Is(err, ErrRefused):
		req.Effects.Add(rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: fmt.Sprintf("user %q", prev.Username)})
		return nil
	default:
		return err
	}
}

// Store is the account store: one file per user, named by the hex of the
// user name, holding "SALT HASH" (hex, HASH = sha256(SALT || password)).
type Store struct{ Dir string }

// ErrRefused: the account does not exist or the password is wrong.
var ErrRefused = errors.New("login refused")

func (s Store) path(user string) string {
	return filepath.Join(s.Dir, hex.EncodeToString([]byte(user)))
}

func hash(salt []byte, password string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return h.Sum(nil)
}

// Put sets user's password, creating the account if needed. The file is
// replaced atomically.
func (s Store) Put(user, password string) error {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("account store: %w", err)
	}
	defer os.Remove(tmp.Name())
	fmt.Fprintf(tmp, "%x %x\n", salt, hash(salt, password))
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("account store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path(user)); err != nil {
		return fmt.Errorf("account store: %w", err)
	}
	return nil
}

// Check logs in: nil when user exists with this password.
func (s Store) Check(user, password string) error {
	b, err := os.ReadFile(s.path(user))
	if err != nil {
		return fmt.Errorf("user %q: %w", user, ErrRefused)
	}
	saltHex, sumHex, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	salt, err1 := hex.DecodeString(saltHex)
	sum, err2 := hex.DecodeString(sumHex)
	if err1 != nil || err2 != nil || subtle.ConstantTimeCompare(hash(salt, password), sum) != 1 {
		return fmt.Errorf("user %q: %w", user, ErrRefused)
	}
	return nil
}

// Remove deletes user's account.
func (s Store) Remove(user string) error {
	if err := os.Remove(s.path(user)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Value returns the basic-auth value of user and password.
func Value(user, password string) rotators.Value {
	b, _ := json.Marshal(Credentials{Username: user, Password: password})
	return sensitive.Bytes(b)
}
