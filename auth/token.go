package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Token format.
const (
	// TokenPrefix starts every generated token, so that a leaked token is
	// recognisable by secret scanners and by people.
	TokenPrefix = "rot_"
	// TokenLength is the length of a generated token: the prefix and 32
	// random bytes in unpadded base64url.
	TokenLength = len(TokenPrefix) + 43
	// TokenIDPrefix starts every public token id.
	TokenIDPrefix = "tok_"
	// MaxTokenLength bounds any bearer token, generated or operator-chosen.
	MaxTokenLength = 256

	tokenRandomBytes = 32
	tokenIDBytes     = 6
)

// ErrMalformedToken is returned, wrapped with the reason, for a bearer
// token that cannot be a rotary token. The API answers 401.
var ErrMalformedToken = errors.New("malformed token")

// NewToken returns a fresh token, its public id and the hash to store. The
// plaintext is shown to the user once and never stored.
func NewToken() (plaintext, id string, hash []byte, err error) {
	b := make([]byte, tokenRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, fmt.Errorf("new token: %w", err)
	}
	idb := make([]byte, tokenIDBytes)
	if _, err := rand.Read(idb); err != nil {
		return "", "", nil, fmt.Errorf("new token id: %w", err)
	}
	plaintext = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	clear(b)
	return plaintext, TokenIDPrefix + hex.EncodeToString(idb), HashToken(plaintext), nil
}

// HashToken returns the SHA-256 of the token: what the store keeps and
// looks tokens up by. See the package documentation for why a fast hash is
// right for tokens.
func HashToken(plaintext string) []byte {
	h := sha256.Sum256([]byte(plaintext))
	return h[:]
}

// ParseToken checks that a bearer token could be a rotary token and
// returns its hash for the store lookup. A token starting with "rot_" must
// have exactly the generated length and alphabet; any other token (an
// operator-chosen root token) must be 1 to MaxTokenLength printable ASCII
// characters without spaces. Errors wrap ErrMalformedToken and never
// contain the token.
func ParseToken(s string) ([]byte, error) {
	if err := checkTokenChars(s); err != nil {
		return nil, err
	}
	if strings.HasPrefix(s, TokenPrefix) {
		if len(s) != TokenLength {
			return nil, fmt.Errorf("%w: a %s token is %d characters, this one is %d",
				ErrMalformedToken, TokenPrefix, TokenLength, len(s))
		}
		for i := len(TokenPrefix); i < len(s); i++ {
			if !isBase64URL(s[i]) {
				return nil, fmt.Errorf("%w: character at position %d is not base64url",
					ErrMalformedToken, i+1)
			}
		}
	}
	return HashToken(s), nil
}

// ValidateCustomToken checks a root token chosen by the operator
// (--dev-root-token, ROTARY_ROOT_TOKEN): the same rules as ParseToken, and
// at least minLen characters. Outside development, minLen should be high
// (say 32): the token is stored as a fast hash, which is safe only for
// tokens nobody can guess.
func ValidateCustomToken(s string, minLen int) error {
	if _, err := ParseToken(s); err != nil {
		return err
	}
	if len(s) < minLen {
		return fmt.Errorf("%w: token is %d characters, the minimum is %d", ErrMalformedToken, len(s), minLen)
	}
	return nil
}

func checkTokenChars(s string) error {
	if s == "" {
		return fmt.Errorf("%w: token is empty", ErrMalformedToken)
	}
	if len(s) > MaxTokenLength {
		return fmt.Errorf("%w: token is %d bytes, the limit is %d", ErrMalformedToken, len(s), MaxTokenLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: character at position %d is a space, a control character or not ASCII",
				ErrMalformedToken, i+1)
		}
	}
	return nil
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// TokenMatches reports, in constant time, whether plaintext hashes to hash.
func TokenMatches(plaintext string, hash []byte) bool {
	return EqualHashes(HashToken(plaintext), hash)
}

// EqualHashes compares two token hashes in constant time. Use it wherever a
// presented token's hash is compared with a stored one outside an index
// lookup.
func EqualHashes(a, b []byte) bool {
	return len(a) == sha256.Size && subtle.ConstantTimeCompare(a, b) == 1
}

// ValidateTokenID checks a public token id ("tok_" and 12 lowercase hex),
// as given to `token revoke`.
func ValidateTokenID(id string) error {
	if strings.HasPrefix(id, TokenPrefix) {
		// Never echo what is probably a token.
		return fmt.Errorf("invalid token id: this is a token, not a token id (%s followed by %d hex digits; see token list)",
			TokenIDPrefix, 2*tokenIDBytes)
	}
	rest, ok := strings.CutPrefix(id, TokenIDPrefix)
	if ok && len(rest) == 2*tokenIDBytes && strings.ToLower(rest) == rest {
		if _, err := hex.DecodeString(rest); err == nil {
			return nil
		}
	}
	return fmt.Errorf("invalid token id: want %s followed by %d lowercase hex digits", TokenIDPrefix, 2*tokenIDBytes)
}
