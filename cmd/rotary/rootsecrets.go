package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/daemon"
)

// MinRootTokenLength is the shortest operator-chosen root token
// (ROTARY_ROOT_TOKEN) accepted outside --dev. Tokens are stored as a fast
// hash, which is safe only for tokens nobody can guess.
const MinRootTokenLength = 32

// rootTokenEnv names the environment variable of an operator-chosen root
// token.
const rootTokenEnv = "ROTARY_ROOT_TOKEN"

// rootTokenFileEnv names the environment variable of a file holding an
// operator-chosen root token: a systemd credential
// (Environment=ROTARY_ROOT_TOKEN_FILE=%d/root-token with
// LoadCredential=root-token:…) or a container secret. The file must give
// group and others no access, like the root key file.
const rootTokenFileEnv = "ROTARY_ROOT_TOKEN_FILE"

// rootTokenFromEnv reads ROTARY_ROOT_TOKEN, checks it and removes it from
// the environment, so that nothing the daemon starts later (hooks,
// plugins) inherits it. Outside dev mode it must be at least
// MinRootTokenLength characters. Errors never hold the token.
//
// ROTARY_ROOT_TOKEN_FILE names a file to read the token from instead; a
// missing, empty or too open file is an error naming the variable and the
// file, so a daemon given a credential that is not there does not start.
func (a *app) rootTokenFromEnv(dev bool) (string, error) {
	tok := a.getenv(rootTokenEnv)
	file := a.getenv(rootTokenFileEnv)
	// The client's token means nothing to the server: drop it too.
	for _, name := range []string{rootTokenEnv, rootTokenFileEnv, "ROTARY_TOKEN"} {
		if err := os.Unsetenv(name); err != nil {
			return "", fmt.Errorf("%s: unset: %w", name, err)
		}
	}
	src := rootTokenEnv
	if file != "" {
		src = rootTokenFileEnv
		if tok != "" {
			return "", fmt.Errorf("%s and %s are both set: give the root token one way", rootTokenEnv, rootTokenFileEnv)
		}
		var err error
		if tok, err = readRootTokenFile(file); err != nil {
			return "", err
		}
	}
	if tok == "" {
		return "", nil
	}
	if err := checkRootToken(tok, dev); err != nil {
		return "", fmt.Errorf("%s: %w", src, err)
	}
	return tok, nil
}

// readRootTokenFile reads the root token from the file named by
// ROTARY_ROOT_TOKEN_FILE (one line; a final newline is dropped).
func readRootTokenFile(path string) (string, error) {
	if err := checkPrivateFile(rootTokenFileEnv, path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w (the file with the root token for the first start)", rootTokenFileEnv, err)
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" {
		return "", fmt.Errorf("%s: %s is empty: write the root token into it (openssl rand -base64 32)", rootTokenFileEnv, path)
	}
	return tok, nil
}

// checkRootToken applies auth.ValidateCustomToken: at least
// MinRootTokenLength characters outside dev mode, any length in it.
func checkRootToken(tok string, dev bool) error {
	minLen := MinRootTokenLength
	if dev {
		minLen = 1
	}
	if err := auth.ValidateCustomToken(tok, minLen); err != nil {
		if dev {
			return err
		}
		return fmt.Errorf("%w (generate one with: openssl rand -base64 32)", err)
	}
	return nil
}

// checkRootFiles refuses a root key file, passphrase file or root token
// file that group or others may access: whoever can read one holds every
// secret. A file that does not exist yet is fine (it is made with mode
// 0600).
func checkRootFiles(cfg daemon.Config) error {
	for _, f := range []struct{ field, path string }{
		{"root_key.file", cfg.RootKey.File},
		{"root_key.passphrase_file", cfg.RootKey.PassphraseFile},
		{"root_token_file", cfg.RootTokenFile},
	} {
		if f.path == "" {
			continue
		}
		if err := checkPrivateFile(f.field, f.path); err != nil {
			return err
		}
	}
	return nil
}

// errFileTooOpen is returned, wrapped, for a secret file with group or
// other permissions.
var errFileTooOpen = errors.New("group or others may access it")

// checkPrivateFile refuses a file whose mode gives group or others any
// access, naming the file, its mode and the fix.
func checkPrivateFile(field, path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %s has mode %04o: %w; chmod 600 %s", field, path, perm, errFileTooOpen, path)
	}
	return nil
}
