package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rotary-secrets/rotary/sensitive"
)

// DefaultIterations is the PBKDF2 iteration count of the verifiers this
// package computes: what PostgreSQL itself uses (scram_iterations, 4096 by
// default), and what RFC 7677 recommends as the minimum.
const DefaultIterations = 4096

// Bounds on a configured iteration count. Below 4096 is weaker than
// PostgreSQL's own verifiers; above a million every login costs seconds.
const (
	MinIterations = 4096
	MaxIterations = 1 << 20
)

// saltLen is the salt length PostgreSQL uses (SCRAM_DEFAULT_SALT_LEN).
const saltLen = 16

// ScramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, in its rolpassword format:
//
//	SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>
//
// with a fresh random 16-byte salt (RFC 5802 and 7677: SaltedPassword =
// PBKDF2-HMAC-SHA-256(password, salt, iterations), ClientKey =
// HMAC(SaltedPassword, "Client Key"), StoredKey = SHA-256(ClientKey),
// ServerKey = HMAC(SaltedPassword, "Server Key")). Given to ALTER ROLE …
// PASSWORD, PostgreSQL recognises the format and stores it as it is, so the
// password itself never reaches the server or its log. iterations <= 0
// means DefaultIterations.
//
// The password must be ASCII: PostgreSQL's clients normalise a password
// with SASLprep before salting it, which leaves ASCII unchanged; this
// package does not implement SASLprep for other characters and refuses
// them rather than compute a verifier that libpq-based clients would not
// match. Generated passwords are always printable ASCII.
func ScramVerifier(password sensitive.Bytes, iterations int) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram: salt: %w", err)
	}
	return scramVerifierWithSalt(password, salt, iterations)
}

func scramVerifierWithSalt(password sensitive.Bytes, salt []byte, iterations int) (string, error) {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	p := password.Reveal()
	if len(p) == 0 {
		return "", errors.New("scram: empty password")
	}
	for _, c := range p {
		if c == 0 || c >= 0x80 {
			return "", errors.New("scram: the password must be ASCII without NUL (SASLprep is not implemented for other characters)")
		}
	}
	salted, err := pbkdf2.Key(sha256.New, string(p), salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram: pbkdf2: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	clear(salted)
	clear(clientKey)
	b64 := base64.StdEncoding
	return "SCRAM-SHA-256$" + strconv.Itoa(iterations) + ":" + b64.EncodeToString(salt) +
		"$" + b64.EncodeToString(storedKey[:]) + ":" + b64.EncodeToString(serverKey), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// parseVerifier splits a rolpassword SCRAM verifier into its iteration
// count and salt (for tests and for checking a verifier's shape).
func parseVerifier(v string) (iterations int, salt []byte, err error) {
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		return 0, nil, errors.New("scram: not a SCRAM-SHA-256 verifier")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok || strings.Count(keys, ":") != 1 {
		return 0, nil, errors.New("scram: malformed verifier")
	}
	it, s, ok := strings.Cut(params, ":")
	if !ok {
		return 0, nil, errors.New("scram: malformed verifier")
	}
	if iterations, err = strconv.Atoi(it); err != nil || iterations <= 0 {
		return 0, nil, errors.New("scram: malformed iteration count")
	}
	if salt, err = base64.StdEncoding.DecodeString(s); err != nil {
		return 0, nil, errors.New("scram: malformed salt")
	}
	return iterations, salt, nil
}
