package auth

import (
	"fmt"
	"strings"
)

// MaxGlobLength bounds a rule's glob.
const MaxGlobLength = 512

// secretNameChars are the characters of a secret name (see
// secrets.ValidateName); a secrets glob may use them and the wildcards.
const secretNameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+=.@-"

// Match reports whether name matches the glob pattern: '*' matches any run
// of characters (including '/' and the empty run), '?' matches exactly one
// byte, anything else matches itself. The whole name must match.
//
// It runs in O(len(pattern)*len(name)) time: on a mismatch it only ever
// retries from the most recent '*', which is enough because a later star
// can absorb whatever an earlier one would have.
func Match(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0 // position after the last '*' seen, and where its run ends
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p+1, n
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]):
			p++
			n++
		case star >= 0:
			mark++
			p, n = star, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// validGlob checks a glob of the given rule field. Secrets globs may use
// only secret-name characters and wildcards, since nothing else can ever
// match; keys and system globs may use any printable ASCII but spaces.
func validGlob(field, g string) error {
	if g == "" {
		return fmt.Errorf("field %q: empty glob (use \"*\" for everything)", field)
	}
	if len(g) > MaxGlobLength {
		return fmt.Errorf("field %q: glob is %d characters, the limit is %d", field, len(g), MaxGlobLength)
	}
	pos := 0
	for _, c := range g {
		pos++
		if c == '*' || c == '?' {
			continue
		}
		if field == "secrets" {
			if c >= 0x80 || !strings.ContainsRune(secretNameChars, c) {
				return fmt.Errorf("field %q: character %q at position %d can never match a secret name (use letters, digits, /_+=.@- and the wildcards * and ?)",
					field, c, pos)
			}
			continue
		}
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("field %q: character %q at position %d is not allowed (use printable ASCII without spaces)",
				field, c, pos)
		}
	}
	return nil
}
