package rabbit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Rotator rotates a RabbitMQ user's password through the management
// HTTP API. The zero value is ready to use and holds no state.
type Rotator struct{}

// New returns the rotator, for the plugin's main.
func New() Rotator { return Rotator{} }

var (
	_ rotators.Rotator         = Rotator{}
	_ rotators.ConfigValidator = Rotator{}
	_ rotators.Rollbacker      = Rotator{}
	_ rotators.Targeter        = Rotator{}
)

func randomKey() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ValidateConfig checks a rotation config when it is saved: the secret
// type, the strategy (single-user is refused with rotators.ErrUnsupported
// and the reason) and every field.
func (Rotator) ValidateConfig(_ context.Context, secretType string, raw json.RawMessage) error {
	if secretType != SecretType {
		return fmt.Errorf("rabbitmq: secret type %q: %w: the rabbitmq rotator rotates %s secrets "+
			`{"username","password","host","port","management_url"}`, secretType, rotators.ErrUnsupported, SecretType)
	}
	if _, err := ParseConfig(raw); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	return nil
}

// Create generates the pending value: the current value with a new
// password, for alternating the other user of the pair. It touches
// nothing outside the process.
func (Rotator) Create(_ context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("rabbitmq: create: %w", err)
	}
	cur, err := ParseValue(req.Current, "current")
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("rabbitmq: create: %w", err)
	}
	prevUser := ""
	if len(req.Previous) > 0 {
		if prev, err := ParseValue(req.Previous, "previous"); err == nil {
			prevUser = prev.Username
		}
	}
	pendUser := cfg.db().PendingUsername(cur.Username, prevUser)
	if cfg.Strategy == rotators.StrategyAlternating {
		if err := cfg.db().CheckPair(cur.Username, pendUser); err != nil {
			pendUser = cfg.db().Alternate(cur.Username) // the previous user was not of the pair: start it again
		}
	}
	pw, err := rotators.GeneratePassword(cfg.Password)
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("rabbitmq: create: %w", err)
	}
	v, err := withCredentials(req.Current, pendUser, pw)
	pw.Wipe()
	if err != nil {
		return rotators.CreateResponse{}, errors.New("rabbitmq: create: the current value is not a JSON object")
	}
	return rotators.CreateResponse{Value: v}, nil
}

// admin parses the admin value, checks it names the same management API
// as the account's value, and returns a client authenticated as it after
// checking (GET /api/whoami) that it is that user with the administrator
// tag.
func admin(ctx context.Context, cfg Config, account Creds, raw rotators.Value, secrets ...sensitive.Bytes) (*mgmt, error) {
	a, err := ParseValue(raw, "admin")
	if err != nil {
		return nil, err
	}
	if a.mgmt.String() != account.mgmt.String() {
		return nil, fmt.Errorf("%w: the admin value's management_url %q is not the account's %q", rotators.ErrTargetMismatch, a.mgmt.Redacted(), account.mgmt.Redacted())
	}
	m, err := newMgmt(a, cfg.Timeout(), secrets...)
	if err != nil {
		return nil, fmt.Errorf("admin value: %w", err)
	}
	if err := m.checkAdmin(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// pair parses current and pending of a Set or Rollback and checks the
// pending user is the one the strategy allows: the current user (admin)
// or the other user of its pair (alternating).
func pair(cfg Config, current, pending rotators.Value) (cur, pend Creds, err error) {
	if cur, err = ParseValue(current, "current"); err != nil {
		return
	}
	if pend, err = ParseValue(pending, "pending"); err != nil {
		return
	}
	if cur.addr() != pend.addr() || cur.mgmt.String() != pend.mgmt.String() {
		return cur, pend, fmt.Errorf("%w: the pending value names another server (%s, %s) than the current one (%s, %s)",
			rotators.ErrTargetMismatch, pend.addr(), pend.mgmt.Redacted(), cur.addr(), cur.mgmt.Redacted())
	}
	switch cfg.Strategy {
	case rotators.StrategyAlternating:
		err = cfg.db().CheckPair(cur.Username, pend.Username)
	default:
		if pend.Username != cur.Username {
			err = fmt.Errorf("%w: the pending value is for user %q, the current one for %q; strategy admin changes one user's password",
				rotators.ErrWrongIdentity, pend.Username, cur.Username)
		}
	}
	return cur, pend, err
}

// Set gives the pending user the pending password (as a salted SHA-256
// hash), keeping its tags. Alternating creates the other user of the pair
// on first use with the current user's tags, permissions and topic
// permissions. Idempotent: a user whose stored hash already is the
// pending password's is left alone.
func (Rotator) Set(ctx context.Context, req rotators.SetRequest) error {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("rabbitmq: set: %w", err)
	}
	cur, pend, err := pair(cfg, req.Current, req.Pending)
	if err != nil {
		return fmt.Errorf("rabbitmq: set: %w", err)
	}
	m, err := admin(ctx, cfg, cur, req.Admin, cur.pw, pend.pw)
	if err != nil {
		return fmt.Errorf("rabbitmq: set: %w", err)
	}
	u, err := m.getUser(ctx, pend.Username)
	switch {
	case errors.Is(err, errNotFound) && cfg.Strategy == rotators.StrategyAlternating:
		first, err := m.getUser(ctx, cur.Username)
		if err != nil {
			return fmt.Errorf("rabbitmq: set: %w", err)
		}
		h, err := HashPassword(pend.pw.Reveal())
		if err != nil {
			return fmt.Errorf("rabbitmq: set: %w", err)
		}
		if err := m.putUser(ctx, pend.Username, h, first.Tags); err != nil {
			return fmt.Errorf("rabbitmq: set: create the alternate user: %w", err)
		}
		if err := m.copyPermissions(ctx, cur.Username, pend.Username); err != nil {
			return fmt.Errorf("rabbitmq: set: %w", err)
		}
		return nil
	case errors.Is(err, errNotFound):
		return fmt.Errorf("rabbitmq: set: user %q does not exist on %s", pend.Username, m.base.Redacted())
	case err != nil:
		return fmt.Errorf("rabbitmq: set: %w", err)
	}
	if cfg.Strategy == rotators.StrategyAlternating {
		// A crash between creating the user and copying the permissions
		// left a user without any: finish the copy.
		if has, err := m.hasPermissions(ctx, pend.Username); err != nil {
			return fmt.Errorf("rabbitmq: set: %w", err)
		} else if !has {
			if err := m.copyPermissions(ctx, cur.Username, pend.Username); err != nil {
				return fmt.Errorf("rabbitmq: set: %w", err)
			}
		}
	}
	if err := m.setPassword(ctx, u, pend.pw.Reveal()); err != nil {
		return fmt.Errorf("rabbitmq: set: %w", err)
	}
	return nil
}

// Test opens an AMQP connection with the value and checks that the
// broker holds it for the value's user (checkIdentity).
func (Rotator) Test(ctx context.Context, req rotators.TestRequest) error {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("rabbitmq: test: %w", err)
	}
	v, err := ParseValue(req.Value, "tested")
	if err != nil {
		return fmt.Errorf("rabbitmq: test: %w", err)
	}
	ac, err := Dial(ctx, v, cfg.Timeout())
	if err != nil {
		return fmt.Errorf("rabbitmq: test: %w", err)
	}
	defer ac.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout())
	defer cancel()
	if _, err := checkIdentity(ctx, ac, v.Username); err != nil {
		return fmt.Errorf("rabbitmq: test: %w", sensitive.Sanitize(err, v.pw))
	}
	return nil
}

// Finish: the old password stopped working when Set replaced it (admin),
// or stays the other user's until the next rotation (alternating), so a
// normal finish changes nothing. In an emergency, alternating first gives
// the previous user a random password nobody keeps; then, unless
// KeepSessions, the open connections of the current user (and of the
// previous one) are closed.
func (Rotator) Finish(ctx context.Context, req rotators.FinishRequest) error {
	if !req.Emergency {
		return nil
	}
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("rabbitmq: finish: %w", err)
	}
	cur, err := ParseValue(req.Current, "current")
	if err != nil {
		return fmt.Errorf("rabbitmq: finish: %w", err)
	}
	users := []string{cur.Username}
	secrets := []sensitive.Bytes{cur.pw}
	var prev Creds
	if len(req.Previous) > 0 {
		if prev, err = ParseValue(req.Previous, "previous"); err != nil {
			return fmt.Errorf("rabbitmq: finish: %w", err)
		}
		secrets = append(secrets, prev.pw)
		if prev.Username != cur.Username {
			if cfg.Strategy != rotators.StrategyAlternating {
				return fmt.Errorf("rabbitmq: finish: %w: the previous value is for user %q, the current one for %q",
					rotators.ErrWrongIdentity, prev.Username, cur.Username)
			}
			if err := cfg.db().CheckPair(cur.Username, prev.Username); err != nil {
				return fmt.Errorf("rabbitmq: finish: %w", err)
			}
			users = append(users, prev.Username)
		}
	}
	m, err := admin(ctx, cfg, cur, req.Admin, secrets...)
	if err != nil {
		return fmt.Errorf("rabbitmq: finish: %w", err)
	}
	if len(users) == 2 {
		u, err := m.getUser(ctx, prev.Username)
		if err != nil && !errors.Is(err, errNotFound) {
			return fmt.Errorf("rabbitmq: finish: %w", err)
		}
		// Never scramble a user whose password is the current one.
		if err == nil && !hashMatches(u.PasswordHash, u.Algorithm, cur.pw.Reveal()) {
			if err := m.scramble(ctx, u); err != nil {
				return fmt.Errorf("rabbitmq: finish: change the previous user %q's password: %w", prev.Username, err)
			}
			req.Effects.Add(rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: "user " + strconv.Quote(prev.Username)})
		}
	} else if len(req.Previous) > 0 {
		// Set gave the user its new password: report the old one useless
		// once the server's hash says so.
		u, err := m.getUser(ctx, cur.Username)
		if err != nil {
			return fmt.Errorf("rabbitmq: finish: %w", err)
		}
		if !hashMatches(u.PasswordHash, u.Algorithm, prev.pw.Reveal()) {
			req.Effects.Add(rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: "user " + strconv.Quote(cur.Username)})
		}
	}
	if req.KeepSessions {
		return nil
	}
	for _, name := range users {
		if err := m.closeConnections(ctx, name); err != nil {
			return fmt.Errorf("rabbitmq: finish: passwords changed, but connections stay open: %w", err)
		}
	}
	return nil
}

// Rollback undoes Set after the pending value failed its test while the
// current one still works: alternating gives the other user a random
// password nobody keeps (it would otherwise stay a working credential no
// version stores); admin gives the user its current password back if it
// has the pending one. It never touches a user whose stored password is
// the current value's. Idempotent.
func (Rotator) Rollback(ctx context.Context, req rotators.RollbackRequest) error {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("rabbitmq: rollback: %w", err)
	}
	cur, pend, err := pair(cfg, req.Current, req.Pending)
	if err != nil {
		return fmt.Errorf("rabbitmq: rollback: %w", err)
	}
	if pend.Username == cur.Username && pend.pw.Equal(cur.pw) {
		return nil
	}
	m, err := admin(ctx, cfg, cur, req.Admin, cur.pw, pend.pw)
	if err != nil {
		return fmt.Errorf("rabbitmq: rollback: %w", err)
	}
	u, err := m.getUser(ctx, pend.Username)
	if errors.Is(err, errNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: rollback: %w", err)
	}
	if !hashMatches(u.PasswordHash, u.Algorithm, pend.pw.Reveal()) {
		return nil // Set never ran, or Rollback did already
	}
	if cfg.Strategy == rotators.StrategyAlternating {
		err = m.scramble(ctx, u)
	} else {
		err = m.setPassword(ctx, u, cur.pw.Reveal())
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: rollback: %w", err)
	}
	return nil
}

// Target names the account a value is for: host and port (AMQP),
// management_url, username (alternating: the other user of the pair as
// an alternative), vhost, and how the rotator reaches the server (sslmode,
// sslrootcert, tls_server_name, allow_plaintext), so that a writer cannot
// downgrade the transport either.
func (Rotator) Target(_ context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	c, err := ParseValue(req.Value, "the")
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	prevUser := ""
	if len(req.Previous) > 0 {
		if p, err := ParseValue(req.Previous, "previous"); err == nil {
			prevUser = p.Username
		}
	}
	user := rotators.TargetField{Name: "username", Value: c.Username}
	if cfg.Strategy == rotators.StrategyAlternating {
		other := cfg.db().PendingUsername(c.Username, prevUser)
		if cfg.db().CheckPair(c.Username, other) != nil {
			other = cfg.db().Alternate(c.Username)
		}
		if other != c.Username {
			user.Or = []string{other}
		}
	}
	mode, _ := c.transport.Mode()
	plain := ""
	if c.transport.AllowPlaintext {
		plain = "true"
	}
	return rotators.Target{
		{Name: "engine", Value: "rabbitmq", Server: true},
		{Name: "host", Value: c.Host, Server: true},
		{Name: "port", Value: strconv.Itoa(c.Port), Server: true},
		{Name: "management_url", Value: c.mgmt.String(), Server: true},
		user,
		{Name: "vhost", Value: c.Vhost},
		{Name: "sslmode", Value: mode},
		{Name: "sslrootcert", Value: c.transport.SSLRootCert},
		{Name: "tls_server_name", Value: c.transport.TLSServerName},
		{Name: "allow_plaintext", Value: plain},
	}, nil
}
