package api

// What metadata reveals, and to whom. Describe-level callers (many) see a
// secret's shape; read-level callers (few) see what only the value's
// holders should: the text of a target's errors, which names hosts, users
// and the server's own words, and the fingerprints, which let a holder
// confirm a guessed value. The rule is AWS Secrets Manager's and Vault's:
// metadata that depends on the value goes with the right to read it.

import (
	"strings"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
)

// Error categories shown to callers who may describe a secret but not read
// it, in place of a target's error text.
const (
	ErrCategoryAuth     = "auth failed"
	ErrCategoryUnreach  = "unreachable"
	ErrCategoryTimeout  = "timeout"
	ErrCategoryRefused  = "refused"
	ErrCategoryMismatch = "target mismatch"
	ErrCategoryFailed   = "failed"
)

// errorCategories maps lowercase fragments of the messages of lib/pq, the
// MySQL driver, go-redis, net and context to a category. The first match
// wins, so the more specific fragments come first.
var errorCategories = []struct {
	fragment, category string
}{
	{"target mismatch", ErrCategoryMismatch},
	{"password authentication failed", ErrCategoryAuth}, // lib/pq 28P01
	{"access denied", ErrCategoryAuth},                  // MySQL/MariaDB 1045
	{"wrongpass", ErrCategoryAuth},                      // Redis 6
	{"noauth", ErrCategoryAuth},                         // Redis without AUTH
	{"invalid password", ErrCategoryAuth},
	{"authentication failed", ErrCategoryAuth},
	{"pq: 28000", ErrCategoryAuth},
	{"no pg_hba.conf entry", ErrCategoryAuth},
	{"connection refused", ErrCategoryRefused},
	{"i/o timeout", ErrCategoryTimeout},
	{"context deadline exceeded", ErrCategoryTimeout},
	{"deadline exceeded", ErrCategoryTimeout},
	{"timed out", ErrCategoryTimeout},
	{"timeout", ErrCategoryTimeout},
	{"no such host", ErrCategoryUnreach},
	{"no route to host", ErrCategoryUnreach},
	{"network is unreachable", ErrCategoryUnreach},
	{"host is down", ErrCategoryUnreach},
	{"connection reset", ErrCategoryUnreach},
	{"broken pipe", ErrCategoryUnreach},
	{"server misbehaving", ErrCategoryUnreach},
}

// ErrorCategory classifies a stored target error: one of the ErrCategory
// constants, or "" for no error. It never returns any of msg's text.
func ErrorCategory(msg string) string {
	if msg == "" {
		return ""
	}
	switch msg { // already a category: redacting twice changes nothing
	case ErrCategoryAuth, ErrCategoryUnreach, ErrCategoryTimeout, ErrCategoryRefused, ErrCategoryMismatch, ErrCategoryFailed:
		return msg
	}
	low := strings.ToLower(msg)
	for _, c := range errorCategories {
		if strings.Contains(low, c.fragment) {
			return c.category
		}
	}
	return ErrCategoryFailed
}

// mayRead reports whether p may read the value of secret name, and with it
// the target's error text and the fingerprints.
func (p *principal) mayRead(name string) bool {
	return p.allowed(auth.KindSecret, name, auth.ActionRead)
}

// revealError returns msg for a caller who may read the secret and its
// category otherwise.
func revealError(p *principal, name, msg string) string {
	if p.mayRead(name) {
		return msg
	}
	return ErrorCategory(msg)
}

// redactSecret removes from a description what only readers may see.
func redactSecret(p *principal, sec client.Secret) client.Secret {
	if p.mayRead(sec.Name) {
		return sec
	}
	vs := make([]client.Version, len(sec.Versions))
	for i, v := range sec.Versions {
		v.Fingerprint = ""
		vs[i] = v
	}
	sec.Versions = vs
	if sec.Rotation != nil {
		ri := *sec.Rotation
		ri.LastError = ErrorCategory(ri.LastError)
		sec.Rotation = &ri
	}
	return sec
}

// redactRun replaces a run's and its steps' error text with categories
// for a caller who may not read the secret.
func redactRun(p *principal, run client.Run) client.Run {
	if p.mayRead(run.Secret) {
		return run
	}
	run.Error = ErrorCategory(run.Error)
	steps := make([]client.RunStep, len(run.Steps))
	for i, st := range run.Steps {
		st.Error = ErrorCategory(st.Error)
		steps[i] = st
	}
	run.Steps = steps
	return run
}

// secretGlobs returns the globs of the rules in p's policies that allow
// action (or admin) on secrets, for filtering a listing in the store
// query; nil when one of them is "*" (everything). A rule with more than
// one selector grants nothing (see auth.Policy.Allows) and is skipped.
func secretGlobs(p *principal, action auth.Action) []string {
	var globs []string
	for _, pol := range p.policies {
		for _, r := range pol.Rules {
			if r.Secrets == "" || r.Keys != "" || r.System != "" {
				continue
			}
			ok := false
			for _, a := range r.Actions {
				ok = ok || a == action || a == auth.ActionAdmin
			}
			if !ok {
				continue
			}
			if strings.Trim(r.Secrets, "*") == "" {
				return nil
			}
			globs = append(globs, r.Secrets)
		}
	}
	return globs
}
