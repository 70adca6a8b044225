package postgres

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lib/pq"
)

// maxIdentifierLen is PostgreSQL's NAMEDATALEN-1: a longer role name is
// silently truncated by the server, which would make the rotator act on a
// role other than the one the secret names.
const maxIdentifierLen = 63

// checkRoleName refuses role names PostgreSQL would not take literally.
// Everything else (quotes, backslashes, spaces, unicode, ;--, %_) is fine:
// names are always quoted with pq.QuoteIdentifier or bound as parameters.
func checkRoleName(name string) error {
	switch {
	case name == "":
		return errors.New("role name is empty")
	case strings.IndexByte(name, 0) >= 0:
		// pq.QuoteIdentifier cuts at a NUL, so "app\x00x" would become "app".
		return errors.New("role name contains a NUL byte")
	case !utf8.ValidString(name):
		return errors.New("role name is not valid UTF-8")
	case len(name) > maxIdentifierLen:
		return fmt.Errorf("role name is %d bytes long; PostgreSQL keeps at most %d", len(name), maxIdentifierLen)
	}
	return nil
}

// alterPasswordSQL sets role's password to a SCRAM verifier. The verifier
// is a literal because ALTER ROLE takes no parameters; it is not the
// password, so even a statement echoed into an error or the server log
// reveals no password.
func alterPasswordSQL(role, verifier string) string {
	return "ALTER ROLE " + pq.QuoteIdentifier(role) + " PASSWORD " + pq.QuoteLiteral(verifier)
}

// roleAttrs are the attributes of the first user that the alternating
// strategy copies to the second one when it creates it.
type roleAttrs struct {
	Inherit    bool
	ConnLimit  int
	ValidUntil string // rolvaliduntil as text in the same session; "" for none
}

// createRoleSQL creates the second user of the alternating pair, with its
// password and the first user's attributes, in one statement.
func createRoleSQL(role, verifier string, a roleAttrs) string {
	var b strings.Builder
	b.WriteString("CREATE ROLE ")
	b.WriteString(pq.QuoteIdentifier(role))
	b.WriteString(" LOGIN")
	if !a.Inherit {
		b.WriteString(" NOINHERIT")
	}
	if a.ConnLimit >= 0 {
		b.WriteString(" CONNECTION LIMIT ")
		b.WriteString(strconv.Itoa(a.ConnLimit))
	}
	if a.ValidUntil != "" {
		b.WriteString(" VALID UNTIL ")
		b.WriteString(pq.QuoteLiteral(a.ValidUntil))
	}
	b.WriteString(" PASSWORD ")
	b.WriteString(pq.QuoteLiteral(verifier))
	return b.String()
}

// membership is one row of pg_auth_members: member belongs to Group.
type membership struct {
	Group string
	Admin bool
	// Inherit and Set exist from PostgreSQL 16 on; Options says whether
	// they were read.
	Inherit, Set bool
	Options      bool
}

// grantSQL grants m's group to member with the same options.
func grantSQL(m membership, member string) string {
	s := "GRANT " + pq.QuoteIdentifier(m.Group) + " TO " + pq.QuoteIdentifier(member)
	if m.Options { // PostgreSQL 16+: every option said explicitly
		return s + " WITH ADMIN " + strconv.FormatBool(m.Admin) +
			", INHERIT " + strconv.FormatBool(m.Inherit) + ", SET " + strconv.FormatBool(m.Set)
	}
	if m.Admin {
		s += " WITH ADMIN OPTION"
	}
	return s
}

// missingMemberships returns the memberships of the first user that the
// second lacks, or holds with fewer options. Memberships only the second
// user has are left alone: the rotator adds, it never revokes.
func missingMemberships(first, second []membership) []membership {
	have := make(map[string]membership, len(second))
	for _, m := range second {
		if h, ok := have[m.Group]; ok { // PostgreSQL 16 may list one group per grantor
			m.Admin, m.Inherit, m.Set = m.Admin || h.Admin, m.Inherit || h.Inherit, m.Set || h.Set
		}
		have[m.Group] = m
	}
	var out []membership
	seen := map[string]bool{}
	for _, m := range first {
		if seen[m.Group] {
			continue
		}
		seen[m.Group] = true
		h, ok := have[m.Group]
		if !ok || (m.Admin && !h.Admin) || (m.Options && (m.Inherit != h.Inherit || m.Set != h.Set)) {
			out = append(out, m)
		}
	}
	return out
}

// Catalogue queries. Role names are always bound as parameters.
const (
	queryRoleExists  = `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`
	queryRoleAttrs   = `SELECT rolinherit, rolconnlimit, COALESCE(rolvaliduntil::text, '') FROM pg_catalog.pg_roles WHERE rolname = $1`
	queryMemberships = `SELECT g.rolname, m.admin_option FROM pg_catalog.pg_auth_members m
		JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
		JOIN pg_catalog.pg_roles u ON u.oid = m.member
		WHERE u.rolname = $1 ORDER BY g.rolname`
	queryMemberships16 = `SELECT g.rolname, m.admin_option, m.inherit_option, m.set_option FROM pg_catalog.pg_auth_members m
		JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
		JOIN pg_catalog.pg_roles u ON u.oid = m.member
		WHERE u.rolname = $1 ORDER BY g.rolname`
	// queryTerminate ends every other session of a role; pg_terminate_backend
	// needs membership in that role (a role may end its own sessions) or
	// pg_signal_backend.
	queryTerminate = `SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid))
		FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()`
	queryWho        = `SELECT current_user, session_user`
	queryVersionNum = `SHOW server_version_num`
)
