package rabbit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Hashing algorithms of RabbitMQ's internal users.
const (
	hashSHA256 = "rabbit_password_hashing_sha256"
	hashSHA512 = "rabbit_password_hashing_sha512"
	hashMD5    = "rabbit_password_hashing_md5"
)

// HashPassword computes what RabbitMQ stores for pw with
// rabbit_password_hashing_sha256: a random 4-byte salt, then
// base64(salt ‖ SHA-256(salt ‖ pw)). The rotator sends only this, so the
// plaintext never crosses the management API.
func HashPassword(pw []byte) (string, error) {
	salt := make([]byte, 4)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	h := sha256.New()
	h.Write(salt)
	h.Write(pw)
	return base64.StdEncoding.EncodeToString(h.Sum(salt)), nil
}

// hashMatches reports whether a stored password_hash is pw's.
func hashMatches(stored, algorithm string, pw []byte) bool {
	b, err := base64.StdEncoding.DecodeString(stored)
	if err != nil || len(b) < 5 {
		return false
	}
	salt, sum := b[:4], b[4:]
	var got []byte
	switch algorithm {
	case hashSHA256, "":
		h := sha256.New()
		h.Write(salt)
		h.Write(pw)
		got = h.Sum(nil)
	case hashSHA512:
		h := sha512.New()
		h.Write(salt)
		h.Write(pw)
		got = h.Sum(nil)
	default: // md5 is legacy: never matched, so Set always rewrites it as sha256
		return false
	}
	return subtle.ConstantTimeCompare(got, sum) == 1
}

// mgmt is a client of the management API authenticated as one user.
type mgmt struct {
	base    *url.URL
	as      Creds
	hc      *http.Client
	secrets []sensitive.Bytes // scrubbed from every error
}

func newMgmt(as Creds, timeout time.Duration, secrets ...sensitive.Bytes) (*mgmt, error) {
	tr := &http.Transport{Proxy: nil, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout, DisableKeepAlives: true}
	if as.mgmt.Scheme == "https" {
		t := rotators.DBCredentials{Host: as.mgmt.Hostname(), SSLMode: rotators.SSLVerifyFull, SSLRootCert: as.transport.SSLRootCert}
		if mode, _ := as.transport.Mode(); !rotators.Plaintext(mode) {
			t.SSLMode = mode // the value's own TLS choice for AMQP applies to the API too
		}
		tc, err := t.TLSConfig()
		if err != nil {
			return nil, fmt.Errorf("management_url: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	return &mgmt{
		base: as.mgmt,
		as:   as,
		hc: &http.Client{Transport: tr, Timeout: timeout,
			// Never follow a redirect: it could carry the admin's credentials elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		secrets: append(secrets, as.pw),
	}, nil
}

// errorf formats an error and removes every password in play from it.
func (m *mgmt) errorf(format string, a ...any) error {
	return sensitive.Sanitize(fmt.Errorf(format, a...), m.secrets...)
}

// errNotFound is a 404 answer.
var errNotFound = errors.New("not found")

// path joins escaped segments under the API root: /api/users/NAME.
func (m *mgmt) path(segments ...string) string {
	u := *m.base
	p := u.Path + "/api"
	for _, s := range segments {
		p += "/" + url.PathEscape(s)
	}
	u.Path, u.RawPath = "", ""
	return u.String() + p
}

// do sends one request; out, when not nil, receives the JSON answer.
func (m *mgmt) do(ctx context.Context, method, what string, in, out any, segments ...string) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode: %w", what, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.path(segments...), body)
	if err != nil {
		return m.errorf("%s: %w", what, err)
	}
	req.SetBasicAuth(m.as.Username, string(m.as.pw.Reveal()))
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return m.errorf("%s: %s %s: %w", what, method, m.base.Redacted(), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w", what, errNotFound)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s: the management API at %s refused user %q's credential (401)", what, m.base.Redacted(), m.as.Username)
	case resp.StatusCode >= 300:
		var e struct{ Error, Reason string }
		_ = json.Unmarshal(b, &e)
		msg := strings.TrimSpace(e.Error + ": " + e.Reason)
		if e.Error == "" && e.Reason == "" {
			msg = strings.TrimSpace(string(b))
			if len(msg) > 200 {
				msg = msg[:200] + "…"
			}
		}
		return m.errorf("%s: %s answered %s: %s", what, m.base.Redacted(), resp.Status, msg)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s: the management API's answer is not the expected JSON", what)
		}
	}
	return nil
}

// tags reads RabbitMQ's tags field: a list (3.9 and later) or a
// comma-separated string (earlier versions).
type tags []string

func (t *tags) UnmarshalJSON(b []byte) error {
	var l []string
	if err := json.Unmarshal(b, &l); err == nil {
		*t = l
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = nil
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*t = append(*t, x)
		}
	}
	return nil
}

// user is GET /api/users/NAME.
type user struct {
	Name         string `json:"name"`
	PasswordHash string `json:"password_hash"`
	Algorithm    string `json:"hashing_algorithm"`
	Tags         tags   `json:"tags"`
}

// checkAdmin makes sure the management API authenticates m as its own
// user and that the user has the administrator tag (GET /api/whoami).
func (m *mgmt) checkAdmin(ctx context.Context) error {
	var who user
	if err := m.do(ctx, http.MethodGet, "whoami", nil, &who, "whoami"); err != nil {
		return err
	}
	if who.Name != m.as.Username {
		return fmt.Errorf("%w: the management API says the admin session is %q's, not %q's; refusing to change anything",
			rotators.ErrWrongIdentity, who.Name, m.as.Username)
	}
	if !slices.Contains(who.Tags, "administrator") {
		return fmt.Errorf("admin user %q has tags %q, not administrator: only administrators may change passwords through the management API",
			m.as.Username, strings.Join(who.Tags, ","))
	}
	return nil
}

// getUser reads a user; errNotFound when there is none.
func (m *mgmt) getUser(ctx context.Context, name string) (user, error) {
	var u user
	err := m.do(ctx, http.MethodGet, fmt.Sprintf("read user %q", name), nil, &u, "users", name)
	return u, err
}

// putUser sets a user's password hash and tags (creating the user when
// there is none).
func (m *mgmt) putUser(ctx context.Context, name, hash string, t tags) error {
	body := map[string]any{"password_hash": hash, "hashing_algorithm": hashSHA256, "tags": strings.Join(t, ",")}
	return m.do(ctx, http.MethodPut, fmt.Sprintf("set user %q's password", name), body, nil, "users", name)
}

// setPassword gives name the password pw (as a hash), keeping its tags.
// Idempotent: when the stored hash already is pw's nothing is sent.
func (m *mgmt) setPassword(ctx context.Context, u user, pw []byte) error {
	if hashMatches(u.PasswordHash, u.Algorithm, pw) {
		return nil
	}
	h, err := HashPassword(pw)
	if err != nil {
		return err
	}
	return m.putUser(ctx, u.Name, h, u.Tags)
}

// permission is one entry of GET /api/users/NAME/permissions.
type permission struct {
	Vhost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// topicPermission is one entry of GET /api/users/NAME/topic-permissions.
type topicPermission struct {
	Vhost    string `json:"vhost"`
	Exchange string `json:"exchange"`
	Write    string `json:"write"`
	Read     string `json:"read"`
}

// copyPermissions gives to the permissions and topic permissions of from
// in every virtual host.
func (m *mgmt) copyPermissions(ctx context.Context, from, to string) error {
	var perms []permission
	if err := m.do(ctx, http.MethodGet, fmt.Sprintf("read user %q's permissions", from), nil, &perms, "users", from, "permissions"); err != nil {
		return err
	}
	for _, p := range perms {
		body := map[string]string{"configure": p.Configure, "write": p.Write, "read": p.Read}
		if err := m.do(ctx, http.MethodPut, fmt.Sprintf("give user %q the permissions of %q in vhost %q", to, from, p.Vhost), body, nil,
			"permissions", p.Vhost, to); err != nil {
			return err
		}
	}
	var topics []topicPermission
	if err := m.do(ctx, http.MethodGet, fmt.Sprintf("read user %q's topic permissions", from), nil, &topics, "users", from, "topic-permissions"); err != nil {
		return err
	}
	for _, p := range topics {
		body := map[string]string{"exchange": p.Exchange, "write": p.Write, "read": p.Read}
		if err := m.do(ctx, http.MethodPut, fmt.Sprintf("give user %q the topic permissions of %q in vhost %q", to, from, p.Vhost), body, nil,
			"topic-permissions", p.Vhost, to); err != nil {
			return err
		}
	}
	return nil
}

// hasPermissions reports whether name has permissions in any vhost.
func (m *mgmt) hasPermissions(ctx context.Context, name string) (bool, error) {
	var perms []permission
	if err := m.do(ctx, http.MethodGet, fmt.Sprintf("read user %q's permissions", name), nil, &perms, "users", name, "permissions"); err != nil {
		return false, err
	}
	return len(perms) > 0, nil
}

// closeConnections closes every open AMQP connection of name
// (DELETE /api/connections/username/NAME, which RabbitMQ answers from its
// connection tracking, not from the statistics that lag behind).
func (m *mgmt) closeConnections(ctx context.Context, name string) error {
	err := m.do(ctx, http.MethodDelete, fmt.Sprintf("close user %q's connections", name), nil, nil, "connections", "username", name)
	if errors.Is(err, errNotFound) { // RabbitMQ answers 204 for a user without connections: 404 is a missing endpoint
		return fmt.Errorf("%w: the management API has no /api/connections/username/ endpoint (RabbitMQ 3.8 or later needed)", err)
	}
	return err
}

// scramble gives name a fresh random password that nobody keeps.
func (m *mgmt) scramble(ctx context.Context, u user) error {
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{Length: 64})
	if err != nil {
		return err
	}
	defer pw.Wipe()
	h, err := HashPassword(pw.Reveal())
	if err != nil {
		return err
	}
	return m.putUser(ctx, u.Name, h, u.Tags)
}
