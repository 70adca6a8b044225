package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxCoverWork bounds the glob-containment steps one Covers call may take
// (the sum over the pairs of rules it compares of len(g)*len(h)). A check
// that would need more is refused with ErrCoverTooComplex rather than
// letting a large document keep the daemon busy.
const MaxCoverWork = 1 << 25

// ErrCoverTooComplex is returned, wrapped, when a coverage check would
// exceed MaxCoverWork. The caller must treat it as "not covered".
var ErrCoverTooComplex = errors.New("policy too complex to check against the caller's policies")

// GlobContains reports whether every name glob g matches is also matched
// by glob h: L(g) ⊆ L(h), with the wildcards of Match.
//
// The check is sound but not complete: when it says yes, containment
// holds; in odd cases where containment holds it may say no (for example
// when g is covered only by the alphabet being finite). It simulates g
// against h symbol by symbol: a '*' of h consumes any run of g's symbols,
// wildcards included; a '?' of h consumes one literal or one '?' of g; a
// literal of h consumes only the same literal; a '*' of g can only be
// consumed by a '*' of h. Runs of wildcards are first put in one order
// ('?'s, then one '*'), which changes no glob's meaning, so that "*?" and
// "?*" contain each other. It takes len(g)*len(h) steps.
func GlobContains(h, g string) bool {
	ok, _ := globContains(h, g, -1)
	return ok
}

// globContains is GlobContains with a step budget (negative: none). It
// returns the steps taken.
func globContains(h, g string, budget int) (bool, int) {
	h, g = normalizeGlob(h), normalizeGlob(g)
	n, m := len(g), len(h)
	steps := (n + 1) * (m + 1)
	if budget >= 0 && steps > budget {
		return false, steps
	}
	// reach[j]: g[:i] can be consumed by h[:j].
	reach := make([]bool, m+1)
	next := make([]bool, m+1)
	reach[0] = true
	starClosure(h, reach)
	for i := 0; i < n; i++ {
		clear(next)
		moved := false
		for j := 0; j < m; j++ {
			if !reach[j] {
				continue
			}
			switch h[j] {
			case '*':
				next[j], moved = true, true // the star of h consumes g[i]
			case '?':
				if g[i] != '*' {
					next[j+1], moved = true, true
				}
			default:
				if g[i] == h[j] {
					next[j+1], moved = true, true
				}
			}
		}
		if !moved {
			return false, steps
		}
		starClosure(h, next)
		reach, next = next, reach
	}
	return reach[m], steps
}

// normalizeGlob rewrites each run of wildcards as its '?'s followed by at
// most one '*' ("*?*" becomes "?*"), which matches the same names and lets
// the symbol-by-symbol simulation of globContains line them up.
func normalizeGlob(g string) string {
	if !strings.Contains(g, "*") {
		return g
	}
	var b strings.Builder
	for i := 0; i < len(g); {
		if g[i] != '*' && g[i] != '?' {
			b.WriteByte(g[i])
			i++
			continue
		}
		star := false
		for ; i < len(g) && (g[i] == '*' || g[i] == '?'); i++ {
			if g[i] == '*' {
				star = true
			} else {
				b.WriteByte('?')
			}
		}
		if star {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// starClosure lets every '*' of h consume nothing: a position reachable
// before a star is reachable after it.
func starClosure(h string, reach []bool) {
	for j := 1; j <= len(h); j++ {
		if h[j-1] == '*' && reach[j-1] {
			reach[j] = true
		}
	}
}

// UncoveredError says which grant of a policy the caller's policies do
// not cover. Rule numbers count from 0, as ParsePolicy's errors do.
type UncoveredError struct {
	Rule   int
	Field  string // "secrets", "keys" or "system"
	Glob   string
	Action Action
}

func (e *UncoveredError) Error() string {
	return fmt.Sprintf("rule %d grants %q on %s %q, which the caller's policies do not grant",
		e.Rule, string(e.Action), e.Field, e.Glob)
}

// Covers checks that held grants everything p grants: for every rule of p
// and every action it lists, one rule of held of the same kind lists that
// action or admin and has a glob that contains the rule's glob
// (GlobContains). admin in p needs admin in held; admin in held covers
// every action of its kind. It returns nil when covered, an
// *UncoveredError naming the first grant that is not, or an error
// wrapping ErrCoverTooComplex.
//
// Like GlobContains it is sound, not complete: a rule covered only by the
// union of several held rules (say "a" and "a?*" together for "a*") is
// reported as not covered.
func Covers(held []Policy, p Policy) error {
	budget := MaxCoverWork
	for i, r := range p.Rules {
		kind, glob, ok := r.selector()
		if !ok {
			return fmt.Errorf("rule %d: %w", i, r.validate())
		}
		for _, a := range r.Actions {
			covered := false
			for _, hp := range held {
				for _, hr := range hp.Rules {
					hk, hg, ok := hr.selector()
					if !ok || hk != kind || !slices.Contains(actionsByKind[hk], a) {
						continue
					}
					if !slices.Contains(hr.Actions, a) && !slices.Contains(hr.Actions, ActionAdmin) {
						continue
					}
					in, steps := globContains(hg, glob, budget)
					budget -= steps
					if budget < 0 {
						return fmt.Errorf("rule %d: %w", i, ErrCoverTooComplex)
					}
					if in {
						covered = true
						break
					}
				}
				if covered {
					break
				}
			}
			if !covered {
				return &UncoveredError{Rule: i, Field: fieldOf(kind), Glob: glob, Action: a}
			}
		}
	}
	return nil
}
