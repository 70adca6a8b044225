package rotators

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/rotary-secrets/rotary/sensitive"
)

// Character classes of generated passwords.
const (
	Lower   = "abcdefghijklmnopqrstuvwxyz"
	Upper   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	Digits  = "0123456789"
	Symbols = "-_.~^,:;!#$%&*+=?@"
	// URISafeSymbols never need escaping in a connection URI or a
	// key=value DSN, and never start a shell or SQL quoting problem.
	URISafeSymbols = "-_.~"
)

// PasswordPolicy says how to generate a password. The zero value is the
// default: 32 characters of letters, digits and URI-safe symbols, at
// least one of each class.
type PasswordPolicy struct {
	Length            int    `json:"length,omitempty"`
	ExcludeCharacters string `json:"exclude_characters,omitempty"`
	// RequireEachClass: at least one lower, upper, digit and symbol (when
	// the alphabet has symbols). Default true; a pointer so that false can
	// be said.
	RequireEachClass *bool `json:"require_each_class,omitempty"`
	// Symbols overrides the symbol alphabet (default URISafeSymbols).
	Symbols *string `json:"symbols,omitempty"`
}

// Limits on generated passwords.
const (
	DefaultPasswordLength = 32
	MinPasswordLength     = 12
	MaxPasswordLength     = 256
)

// Validate checks the policy without generating anything.
func (p PasswordPolicy) Validate() error {
	_, err := p.classes()
	return err
}

func (p PasswordPolicy) length() int {
	if p.Length == 0 {
		return DefaultPasswordLength
	}
	return p.Length
}

func (p PasswordPolicy) classes() ([]string, error) {
	n := p.length()
	if n < MinPasswordLength || n > MaxPasswordLength {
		return nil, fmt.Errorf("password.length %d: must be between %d and %d", n, MinPasswordLength, MaxPasswordLength)
	}
	symbols := URISafeSymbols
	if p.Symbols != nil {
		symbols = *p.Symbols
	}
	for _, r := range symbols {
		if r > 0x7e || r <= 0x20 {
			return nil, errors.New("password.symbols: only printable ASCII other than space")
		}
	}
	strip := func(set string) string {
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune(p.ExcludeCharacters, r) {
				return -1
			}
			return r
		}, set)
	}
	var classes []string
	for _, set := range []string{Lower, Upper, Digits, symbols} {
		if s := strip(set); s != "" {
			classes = append(classes, dedupe(s))
		}
	}
	if len(classes) == 0 {
		return nil, errors.New("password.exclude_characters: excludes every character")
	}
	alphabet := strings.Join(classes, "")
	if len(alphabet) < 10 {
		return nil, fmt.Errorf("password.exclude_characters: leaves only %d characters; at least 10 are needed", len(alphabet))
	}
	if p.requireEach() && len(classes) > n {
		return nil, fmt.Errorf("password.length %d: too short to hold one of each of %d classes", n, len(classes))
	}
	return classes, nil
}

func (p PasswordPolicy) requireEach() bool { return p.RequireEachClass == nil || *p.RequireEachClass }

func dedupe(s string) string {
	var b strings.Builder
	for _, r := range s {
		if !strings.ContainsRune(b.String(), r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// GeneratePassword makes a password from the policy with crypto/rand.
// Every character is drawn uniformly (rand.Int has no modulo bias); when
// every class is required, one position per class is drawn from that
// class and the positions are shuffled, which keeps the result uniform
// over the passwords that satisfy the policy closely enough for any
// practical purpose while never retrying unboundedly.
func GeneratePassword(p PasswordPolicy) (sensitive.Bytes, error) {
	classes, err := p.classes()
	if err != nil {
		return nil, err
	}
	n := p.length()
	alphabet := strings.Join(classes, "")
	out := make([]byte, n)
	pick := func(set string) (byte, error) {
		i, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		if err != nil {
			return 0, fmt.Errorf("generate password: %w", err)
		}
		return set[i.Int64()], nil
	}
	for i := range out {
		if out[i], err = pick(alphabet); err != nil {
			return nil, err
		}
	}
	if p.requireEach() {
		// Draw distinct positions, one per class, and fill them from it.
		pos := make([]int, n)
		for i := range pos {
			pos[i] = i
		}
		for i := range classes {
			j, err := rand.Int(rand.Reader, big.NewInt(int64(n-i)))
			if err != nil {
				return nil, fmt.Errorf("generate password: %w", err)
			}
			k := i + int(j.Int64())
			pos[i], pos[k] = pos[k], pos[i]
			if out[pos[i]], err = pick(classes[i]); err != nil {
				return nil, err
			}
		}
	}
	return sensitive.Bytes(out), nil
}
