package mysql

import (
	"crypto/sha1" //nolint:gosec // mysql_native_password is defined as SHA1(SHA1(password)).
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// quoteString returns s as a single-quoted SQL string literal that the
// server reads back as exactly s. go-sql-driver exports no escaping
// function, so this mirrors what its client-side interpolation does:
//
//   - with NO_BACKSLASH_ESCAPES in the session's sql_mode, a backslash is
//     an ordinary character and the only escape is a doubled quote;
//   - otherwise a backslash starts an escape, so backslash, both quotes,
//     NUL, newline, carriage return and Ctrl-Z are escaped with one.
//
// The connection charset is utf8mb4, in which no multi-byte character
// contains the bytes of a quote or a backslash, so escaping bytes is safe.
func quoteString(s string, noBackslashEscapes bool) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if noBackslashEscapes {
			if c == '\'' {
				b.WriteString("''")
			} else {
				b.WriteByte(c)
			}
			continue
		}
		switch c {
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case 0x1a:
			b.WriteString(`\Z`)
		case '\'':
			b.WriteString(`\'`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// account is a MySQL/MariaDB account, 'user'@'host'.
type account struct {
	User, Host string
}

func (a account) String() string { return a.User + "@" + a.Host }

// literal returns the account as 'user'@'host' with both parts quoted as
// string literals.
func (a account) literal(noBackslashEscapes bool) string {
	return quoteString(a.User, noBackslashEscapes) + "@" + quoteString(a.Host, noBackslashEscapes)
}

// parseAccount splits the result of CURRENT_USER() ("user@host"). A user
// name may contain '@' but a host name may not, so the last '@' splits.
func parseAccount(s string) (account, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return account{}, fmt.Errorf("mysql: unexpected CURRENT_USER() %q", s)
	}
	return account{User: s[:i], Host: s[i+1:]}, nil
}

// Limits the server puts on account names (MariaDB 10.4+: 128 characters
// for the user, 255 for the host; MySQL 8: 32 and 255).
const (
	maxUserChars = 128
	maxHostChars = 255
)

func checkName(what, s string, maxChars int) error {
	switch {
	case s == "":
		return fmt.Errorf("mysql: %s is empty", what)
	case !utf8.ValidString(s):
		return fmt.Errorf("mysql: %s is not valid UTF-8", what)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("mysql: %s contains a NUL byte", what)
	case utf8.RuneCountInString(s) > maxChars:
		return fmt.Errorf("mysql: %s is longer than %d characters", what, maxChars)
	}
	return nil
}

// nativeHash returns the mysql_native_password verifier of password:
// "*" followed by the upper-case hex of SHA1(SHA1(password)), which is
// what MariaDB stores and accepts in IDENTIFIED BY PASSWORD and
// SET PASSWORD = '<hash>'. The server never sees the password itself.
func nativeHash(password []byte) string {
	h1 := sha1.Sum(password) //nolint:gosec // the protocol's definition.
	h2 := sha1.Sum(h1[:])    //nolint:gosec
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}

// flavor says which server a session talks to and how it reads literals.
type flavor struct {
	MariaDB            bool
	NoBackslashEscapes bool
}

// Statement builders. Every piece of outside text goes through
// quoteString; the only other inputs are the verifier (hex from
// nativeHash, quoted anyway) and integers formatted by strconv.

// setOwnPasswordSQL changes the password of the session's own account.
// MariaDB: SET PASSWORD = '<verifier>' needs no privilege and carries only
// the hash. MySQL 8 accepts no client-computed caching_sha2_password
// verifier for one's own account, so there the password is sent as a
// literal (MySQL rewrites it out of its general and slow logs and the
// binary log); callers scrub it from any error.
func setOwnPasswordSQL(f flavor, password []byte) string {
	if f.MariaDB {
		return "SET PASSWORD = " + quoteString(nativeHash(password), f.NoBackslashEscapes)
	}
	return "ALTER USER USER() IDENTIFIED BY " + quoteString(string(password), f.NoBackslashEscapes)
}

// alterPasswordSQL changes acct's password (needs CREATE USER).
func alterPasswordSQL(f flavor, acct account, password []byte) string {
	return "ALTER USER " + acct.literal(f.NoBackslashEscapes) + identifiedBy(f, password)
}

// createUserSQL creates acct unless it exists (a re-run after a crash
// finds it and leaves it alone; the caller then sets the password).
func createUserSQL(f flavor, acct account, password []byte) string {
	return "CREATE USER IF NOT EXISTS " + acct.literal(f.NoBackslashEscapes) + identifiedBy(f, password)
}

func identifiedBy(f flavor, password []byte) string {
	if f.MariaDB {
		return " IDENTIFIED BY PASSWORD " + quoteString(nativeHash(password), f.NoBackslashEscapes)
	}
	return " IDENTIFIED BY " + quoteString(string(password), f.NoBackslashEscapes)
}

func showGrantsSQL(f flavor, acct account) string {
	return "SHOW GRANTS FOR " + acct.literal(f.NoBackslashEscapes)
}

func killSQL(id uint64) string {
	return "KILL CONNECTION " + strconv.FormatUint(id, 10)
}

// secretForms returns every form in which password may appear in a
// statement this package builds, for scrubbing errors.
func secretForms(password []byte) [][]byte {
	if len(password) == 0 {
		return nil
	}
	p := string(password)
	forms := []string{p, nativeHash(password), quoteString(p, false), quoteString(p, true)}
	out := make([][]byte, 0, len(forms))
	for _, s := range forms {
		out = append(out, []byte(s))
	}
	return out
}

var errAmbiguous = errors.New("several accounts")
