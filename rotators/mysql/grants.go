package mysql

import (
	"errors"
	"fmt"
	"strings"
)

// Copying grants (alternating strategy).
//
// SHOW GRANTS FOR 'a'@'h' prints statements such as
//
//	GRANT USAGE ON *.* TO `a`@`h` IDENTIFIED BY PASSWORD '*…' REQUIRE SSL
//	GRANT SELECT (`c`) ON `db`.`t` TO `a`@`h` WITH GRANT OPTION
//	GRANT `role` TO `a`@`h`
//	SET DEFAULT ROLE `role` FOR `a`@`h`
//
// rewriteGrant replays one of them for another user. It tokenizes the line
// (backtick identifiers with doubled backticks, quoted strings with
// doubled quotes and backslash escapes, words, punctuation) so that
// nothing inside a quoted name or string can pass for a keyword, finds the
// first top-level TO (GRANT) or FOR (SET DEFAULT ROLE) followed by an
// account, checks that the account is the one asked about, and replaces
// only that account with the new one, quoted by quoteString. Text before
// it (privileges, object and role names) was quoted by the server and is
// kept byte for byte. After it, an IDENTIFIED clause is dropped: the new
// user has its own password. Lines of any other shape are refused rather
// than guessed at.

type tokKind int

const (
	tokWord   tokKind = iota // a bare word: GRANT, SELECT, TO, …
	tokIdent                 // `quoted identifier`
	tokString                // 'string' or "string"
	tokPunct                 // one character: @ . * , ( ) =
)

type token struct {
	kind       tokKind
	text       string // the decoded value (idents, strings) or the raw text
	start, end int    // byte offsets in the line
}

func (t token) isWord(w string) bool { return t.kind == tokWord && strings.EqualFold(t.text, w) }

var errGrantSyntax = errors.New("mysql: cannot read a SHOW GRANTS line")

func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '`':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, errGrantSyntax
				}
				if s[j] == '`' {
					if j+1 < len(s) && s[j+1] == '`' {
						b.WriteByte('`')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{tokIdent, b.String(), i, j + 1})
			i = j + 1
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, errGrantSyntax
				}
				if s[j] == '\\' {
					if j+1 >= len(s) {
						return nil, errGrantSyntax
					}
					b.WriteByte(unescapeByte(s[j+1]))
					j += 2
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{tokString, b.String(), i, j + 1})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j], i, j})
			i = j
		case strings.IndexByte("@.*,()=", c) >= 0:
			toks = append(toks, token{tokPunct, s[i : i+1], i, i + 1})
			i++
		default:
			return nil, errGrantSyntax
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func unescapeByte(c byte) byte {
	switch c {
	case '0':
		return 0
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'Z':
		return 0x1a
	case 'b':
		return '\b'
	}
	return c
}

// grantAction says how to replay a rewritten line.
type grantAction int

const (
	grantSkip grantAction = iota // nothing to copy (bare USAGE ON *.*)
	grantExec                    // run the statement as it is
)

// rewriteGrant returns line with from replaced by to, and whether there is
// anything to run. f decides how the new account is quoted.
func rewriteGrant(line string, from, to account, f flavor) (string, grantAction, error) {
	toks, err := tokenize(line)
	if err != nil {
		return "", 0, err
	}
	if len(toks) == 0 {
		return "", grantSkip, nil
	}
	var kw string
	switch {
	case toks[0].isWord("GRANT"):
		kw = "TO"
	case len(toks) >= 3 && toks[0].isWord("SET") && toks[1].isWord("DEFAULT") && toks[2].isWord("ROLE"):
		kw = "FOR"
	default:
		return "", 0, fmt.Errorf("%w: it is neither GRANT nor SET DEFAULT ROLE", errGrantSyntax)
	}
	at := -1
	for i, t := range toks {
		if t.isWord(kw) {
			at = i
			break
		}
	}
	if at < 0 || at+3 >= len(toks) {
		return "", 0, fmt.Errorf("%w: no %s account", errGrantSyntax, kw)
	}
	u, sep, h := toks[at+1], toks[at+2], toks[at+3]
	if !isName(u) || sep.kind != tokPunct || sep.text != "@" || !isName(h) {
		return "", 0, fmt.Errorf("%w: no account after %s", errGrantSyntax, kw)
	}
	if u.text != from.User || h.text != from.Host {
		return "", 0, fmt.Errorf("%w: it names another account", errGrantSyntax)
	}
	rest := toks[at+4:]
	suffix := line[h.end:]
	if len(rest) > 0 && rest[0].isWord("IDENTIFIED") {
		// Drop IDENTIFIED BY PASSWORD '…' or IDENTIFIED VIA … [USING '…']
		// [OR …], up to the next top-level REQUIRE or WITH.
		end := len(rest)
		for i := 1; i < len(rest); i++ {
			if rest[i].isWord("REQUIRE") || rest[i].isWord("WITH") {
				end = i
				break
			}
		}
		if end == len(rest) {
			suffix = ""
		} else {
			suffix = " " + line[rest[end].start:]
		}
		rest = rest[end:]
	}
	// GRANT USAGE ON *.* grants no privilege: with nothing after the
	// account it is skipped, and account options (REQUIRE …, WITH
	// MAX_…) are copied with ALTER USER, which needs only CREATE USER
	// where GRANT would need the global GRANT OPTION.
	if kw == "TO" && at == 6 && toks[1].isWord("USAGE") && toks[2].isWord("ON") &&
		toks[3].text == "*" && toks[4].text == "." && toks[5].text == "*" && !hasGrantOption(rest) {
		if len(rest) == 0 {
			return "", grantSkip, nil
		}
		return "ALTER USER " + to.literal(f.NoBackslashEscapes) + suffix, grantExec, nil
	}
	return line[:u.start] + to.literal(f.NoBackslashEscapes) + suffix, grantExec, nil
}

func isName(t token) bool { return t.kind == tokIdent || t.kind == tokString || t.kind == tokWord }

func hasGrantOption(toks []token) bool {
	for i := 0; i+1 < len(toks); i++ {
		if toks[i].isWord("GRANT") && toks[i+1].isWord("OPTION") {
			return true
		}
	}
	return false
}
