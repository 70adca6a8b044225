package kms

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/crypto/argon2"

	"github.com/rotary-secrets/rotary/sensitive"
)

// RootKeySize is the size of the root key and of every AES key kms uses.
const RootKeySize = 32

// KeySource supplies the root key. The root key never comes from the
// store: it is read from a file, an environment variable or derived from a
// passphrase, once, when the daemon starts.
type KeySource interface {
	// RootKey returns the 32-byte root key. Errors name where the key was
	// looked for, never what was found there.
	RootKey(ctx context.Context) (sensitive.Bytes, error)
}

var (
	_ KeySource = FileSource{}
	_ KeySource = EnvSource{}
	_ KeySource = PassphraseSource{}
)

// FileSource reads the root key from a file holding its standard base64
// encoding (surrounding whitespace allowed), as written by
// WriteRootKeyFile.
type FileSource struct {
	Path string
}

// RootKey implements KeySource.
func (s FileSource) RootKey(context.Context) (sensitive.Bytes, error) {
	what := fmt.Sprintf("root key file %s", s.Path)
	if s.Path == "" {
		return nil, fmt.Errorf("kms: root key file: no path given")
	}
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kms: %s: does not exist", what)
	}
	if err != nil {
		return nil, fmt.Errorf("kms: %s: %w", what, err) // *PathError: path and cause only
	}
	defer clear(data)
	return decodeRootKey(what, data)
}

// EnvSource reads the root key from an environment variable holding its
// standard base64 encoding.
type EnvSource struct {
	Name string
}

// RootKey implements KeySource.
func (s EnvSource) RootKey(context.Context) (sensitive.Bytes, error) {
	what := fmt.Sprintf("root key environment variable %s", s.Name)
	if s.Name == "" {
		return nil, fmt.Errorf("kms: root key environment variable: no name given")
	}
	v, ok := os.LookupEnv(s.Name)
	if !ok || v == "" {
		return nil, fmt.Errorf("kms: %s: not set", what)
	}
	return decodeRootKey(what, []byte(v))
}

// decodeRootKey decodes base64 text into a root key. Its errors never
// include the text, not even the position of a bad character.
func decodeRootKey(what string, text []byte) (sensitive.Bytes, error) {
	text = bytes.TrimSpace(text)
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("kms: %s: not valid standard base64", what)
	}
	if n != RootKeySize {
		clear(key)
		return nil, fmt.Errorf("kms: %s: holds %d bytes, want %d", what, n, RootKeySize)
	}
	return sensitive.Bytes(key[:n]), nil
}

// Default argon2id parameters of PassphraseSource (RFC 9106's second
// recommended option, with two lanes).
const (
	DefaultArgonTime    = 3
	DefaultArgonMemory  = 64 * 1024 // KiB, so 64 MiB
	DefaultArgonThreads = 2
)

// MinSaltSize is the smallest salt PassphraseSource accepts.
const MinSaltSize = 16

// PassphraseSource derives the root key from a passphrase with argon2id.
// The passphrase is the file's content without its trailing line break.
// After reading it, RootKey deletes the file unless Keep is set, so the
// passphrase does not linger on disk; a second call then fails.
//
// Salt must be at least 16 bytes and the same on every start: keep it in
// the store with PassphraseSalt. The argon2id parameters default to
// DefaultArgonTime, DefaultArgonMemory and DefaultArgonThreads; changing
// them changes the derived key.
type PassphraseSource struct {
	Path string
	Salt []byte
	Keep bool

	Time      uint32 // argon2id passes; 0 means DefaultArgonTime
	MemoryKiB uint32 // argon2id memory in KiB; 0 means DefaultArgonMemory
	Threads   uint8  // argon2id lanes; 0 means DefaultArgonThreads
}

// RootKey implements KeySource.
func (s PassphraseSource) RootKey(context.Context) (sensitive.Bytes, error) {
	what := fmt.Sprintf("passphrase file %s", s.Path)
	if s.Path == "" {
		return nil, fmt.Errorf("kms: passphrase file: no path given")
	}
	if len(s.Salt) < MinSaltSize {
		return nil, invalidf("%s: salt is %d bytes, want at least %d", what, len(s.Salt), MinSaltSize)
	}
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kms: %s: does not exist (it is deleted after use unless kept)", what)
	}
	if err != nil {
		return nil, fmt.Errorf("kms: %s: %w", what, err)
	}
	defer clear(data)
	pass := bytes.TrimRight(data, "\r\n")
	if len(pass) == 0 {
		return nil, fmt.Errorf("kms: %s: passphrase is empty", what)
	}
	if !s.Keep {
		if err := os.Remove(s.Path); err != nil {
			return nil, fmt.Errorf("kms: %s: delete after reading: %w", what, err)
		}
	}
	key := argon2.IDKey(pass, s.Salt,
		cmp.Or(s.Time, DefaultArgonTime),
		cmp.Or(s.MemoryKiB, DefaultArgonMemory),
		cmp.Or(s.Threads, DefaultArgonThreads),
		RootKeySize)
	return sensitive.Bytes(key), nil
}

// NewSalt returns a fresh random salt for PassphraseSource.
func NewSalt() []byte {
	return randomBytes(rand.Reader, MinSaltSize)
}

// MetaPassphraseSalt is the meta name under which PassphraseSalt keeps
// the salt.
const MetaPassphraseSalt = "kms.passphrase_salt"

// PassphraseSalt returns the passphrase salt stored in ks, creating it on
// first use. Two daemons starting at once agree on one salt.
func PassphraseSalt(ctx context.Context, ks KeyStore) ([]byte, error) {
	salt, err := ks.GetMeta(ctx, MetaPassphraseSalt)
	if err == nil {
		if len(salt) < MinSaltSize {
			return nil, fmt.Errorf("kms: meta %s: salt is %d bytes, want at least %d", MetaPassphraseSalt, len(salt), MinSaltSize)
		}
		return salt, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("kms: read meta %s: %w", MetaPassphraseSalt, err)
	}
	salt = NewSalt()
	err = ks.PutMetaIfAbsent(ctx, MetaPassphraseSalt, salt)
	if errors.Is(err, ErrConflict) {
		return PassphraseSalt(ctx, ks) // another daemon won the race
	}
	if err != nil {
		return nil, fmt.Errorf("kms: write meta %s: %w", MetaPassphraseSalt, err)
	}
	return salt, nil
}

// GenerateRootKey returns a new random root key in the standard base64
// encoding that FileSource and EnvSource read.
func GenerateRootKey() (string, error) {
	key := randomBytes(rand.Reader, RootKeySize)
	defer clear(key)
	return base64.StdEncoding.EncodeToString(key), nil
}

// WriteRootKeyFile writes a new random root key to path with mode 0600. It
// refuses to overwrite an existing file: losing a root key loses every
// secret it protects.
func WriteRootKeyFile(path string) error {
	key, err := GenerateRootKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("kms: root key file %s: already exists; refusing to overwrite", path)
	}
	if err != nil {
		return fmt.Errorf("kms: create root key file: %w", err)
	}
	_, err = f.WriteString(key + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("kms: write root key file %s: %w", path, err)
	}
	return nil
}
