package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/store"
)

var (
	errTokenExpired = errors.New("token expired")
	errTokenRevoked = errors.New("token revoked")
)

// RootPolicyName is the built-in policy of the root token. It cannot be
// written or deleted through the API.
const RootPolicyName = auth.RootPolicyName

// principal is an authenticated caller.
type principal struct {
	tokenID  string
	policies []auth.Policy
	// names are the token's policy names (sorted), expiresAt its expiry
	// (nil: none): what it may hand on to a token it creates.
	names     []string
	expiresAt *time.Time
}

// isRoot reports whether the caller holds the built-in root policy, the
// only one that may give the root policy, write any policy and revoke a
// root token.
func (p *principal) isRoot() bool { return slices.Contains(p.names, RootPolicyName) }

func (p *principal) allowed(kind auth.Kind, name string, action auth.Action) bool {
	return auth.Allowed(p.policies, auth.Resource{Kind: kind, Name: name}, action)
}

type cachedToken struct {
	tok     store.Token
	pols    []auth.Policy
	fetched time.Time
}

// authenticator resolves bearer tokens to principals. Lookups are cached
// for ttl: a revocation or policy change made on this daemon takes effect
// at once (the cache is flushed); one made on another daemon sharing the
// store takes effect within ttl.
type authenticator struct {
	st  store.Store
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedToken // by token hash (hex)
}

func newAuthenticator(st store.Store, ttl time.Duration, now func() time.Time) *authenticator {
	return &authenticator{st: st, ttl: ttl, now: now, cache: map[string]cachedToken{}}
}

func (a *authenticator) flush() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

func (a *authenticator) authenticate(ctx context.Context, header string) (*principal, error) {
	raw, ok := strings.CutPrefix(header, "Bearer ")
	raw = strings.TrimSpace(raw)
	if !ok || raw == "" {
		return nil, errUnauthorized
	}
	// Refuse what cannot be a token before any lookup. The reason is not
	// shown: the answer is the same for every bad token, and never holds it.
	hash, err := auth.ParseToken(raw)
	if err != nil {
		return nil, errUnauthorized
	}
	key := string(hash)
	now := a.now()

	a.mu.Lock()
	c, hit := a.cache[key]
	a.mu.Unlock()
	if !hit || now.Sub(c.fetched) > a.ttl {
		tok, err := a.st.GetTokenByHash(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errUnauthorized
		}
		if err != nil {
			return nil, err
		}
		pols, err := a.policies(ctx, tok.Policies)
		if err != nil {
			return nil, err
		}
		c = cachedToken{tok: tok, pols: pols, fetched: now}
		a.mu.Lock()
		if len(a.cache) > 10000 {
			clear(a.cache)
		}
		a.cache[key] = c
		a.mu.Unlock()
	}
	if c.tok.RevokedAt != nil {
		return nil, errTokenRevoked
	}
	if c.tok.ExpiresAt != nil && !now.Before(*c.tok.ExpiresAt) {
		return nil, errTokenExpired
	}
	return &principal{tokenID: c.tok.ID, policies: c.pols, names: c.tok.Policies, expiresAt: c.tok.ExpiresAt}, nil
}

// policies loads named policies. A policy deleted since the token was made
// grants nothing.
func (a *authenticator) policies(ctx context.Context, names []string) ([]auth.Policy, error) {
	var out []auth.Policy
	for _, n := range names {
		if n == RootPolicyName {
			out = append(out, auth.RootPolicy())
			continue
		}
		p, err := a.st.GetPolicy(ctx, n)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pol, err := auth.ParsePolicy(p.Document)
		if err != nil {
			continue // stored policies were validated; a bad one grants nothing
		}
		out = append(out, pol)
	}
	return out, nil
}
