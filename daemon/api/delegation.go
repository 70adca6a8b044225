package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/store"
)

// Delegation: a token hands on only what it holds (as Vault does for
// child tokens). A root token may do anything. Any other token
//   - gives a new token only policies it holds itself, by name, never
//     "root", and a lifetime that ends no later than its own;
//   - writes a policy only if its own policies grant everything the new
//     document grants (auth.Covers), and rewrites or deletes an existing
//     policy only if they also grant everything the old one does, so it
//     cannot weaken or edit a policy a stronger token relies on;
//   - revokes only itself or tokens whose policies it holds all of, and
//     never a root token.
// Refusals are 403s naming the policy, rule or lifetime; the request's
// audit record says denied.

// denied is a 403 that says what the caller may not hand on.
func denied(format string, args ...any) error {
	return &httpError{http.StatusForbidden, "permission denied: " + fmt.Sprintf(format, args...)}
}

// mayGive checks that the caller may give a token the named policies.
func (p *principal) mayGive(names []string) error {
	if p.isRoot() {
		return nil
	}
	for _, n := range names {
		if n == RootPolicyName {
			return denied("policy %q is given only by a root token", n)
		}
		if !slices.Contains(p.names, n) {
			return denied("policy %q: a token may only give policies it holds itself (this one holds %s)", n, quoteList(p.names))
		}
	}
	return nil
}

// capExpiry returns the expiry of a token the caller creates: the
// requested one (nil: none), which must not outlive a non-root caller
// that expires; with no ttl requested, such a caller's child expires with
// it.
func (p *principal) capExpiry(ttl string, requested *time.Time, now time.Time) (*time.Time, error) {
	if p.isRoot() || p.expiresAt == nil {
		return requested, nil
	}
	limit := *p.expiresAt
	if requested == nil {
		return &limit, nil
	}
	if requested.After(limit) {
		return nil, denied("ttl: %s would outlive this token, which expires at %s; ask for at most %s",
			ttl, limit.UTC().Format(time.RFC3339), limit.Sub(now).Truncate(time.Second))
	}
	return requested, nil
}

// mayGrant checks that the caller's own policies grant everything doc
// grants.
func (p *principal) mayGrant(name string, doc auth.Policy) error {
	if p.isRoot() {
		return nil
	}
	if err := auth.Covers(p.policies, doc); err != nil {
		return denied("policy %q: %s; a token may only grant what it holds", name, err)
	}
	return nil
}

// mayChange checks that the caller may rewrite or delete the stored
// policy old: its own policies grant everything old grants. A stored
// document that no longer parses cannot be checked, so only a root token
// may touch it.
func (p *principal) mayChange(old store.Policy) error {
	if p.isRoot() {
		return nil
	}
	doc, err := auth.ParsePolicy(old.Document)
	if err != nil {
		return denied("policy %q: the stored document cannot be checked against this token's policies; only a root token may change or delete it", old.Name)
	}
	if err := auth.Covers(p.policies, doc); err != nil {
		return denied("policy %q grants more than this token holds (%s); only a token that holds all of it may change or delete it", old.Name, err)
	}
	return nil
}

// mayRevoke checks that the caller may revoke tok.
func (p *principal) mayRevoke(tok store.Token) error {
	if p.isRoot() || tok.ID == p.tokenID {
		return nil
	}
	for _, n := range tok.Policies {
		if n == RootPolicyName {
			return denied("token %s holds the root policy; only a root token may revoke it", tok.ID)
		}
		if !slices.Contains(p.names, n) {
			return denied("token %s holds policy %q, which this token does not hold", tok.ID, n)
		}
	}
	return nil
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// looksLikeToken reports whether s has the shape of a generated token, so
// that it is never echoed.
func looksLikeToken(s string) bool {
	return len(s) == auth.TokenLength && strings.HasPrefix(s, auth.TokenPrefix)
}
