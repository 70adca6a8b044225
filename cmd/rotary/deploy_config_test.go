package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeployConfigValid: deploy/rotary.yaml, the example production
// configuration, passes the daemon's own parsing and validation as
// written (PostgreSQL, Redis over TLS, HTTPS on every address), with its
// $file{...} credentials served from memory; with one credential missing
// it is refused naming the field and the file (the negative control).
func TestDeployConfigValid(t *testing.T) {
	doc, err := os.ReadFile("../../deploy/rotary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The files the daemon reads itself at validation (the Redis CA) are
	// real: /etc/rotary/ becomes a folder of the test.
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, "redis-ca.crt"), selfSignedPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.ReplaceAll(string(doc), "/etc/rotary/", etc+"/"))
	const creds = "/run/credentials/rotary.service/"
	files := map[string]string{creds + "db-password": "db-pw-canary", creds + "redis-password": "redis-pw-canary"}
	env := func(files map[string]string) configEnv {
		return configEnv{
			lookupEnv: func(string) (string, bool) { return "", false },
			readFile: func(p string) ([]byte, error) {
				if v, ok := files[p]; ok {
					return []byte(v + "\n"), nil
				}
				return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
			},
		}
	}
	cfg, err := parseConfig(doc, env(files))
	if err != nil {
		t.Fatalf("parseConfig(deploy/rotary.yaml) = %v, want it valid", err)
	}
	switch {
	case cfg.Store.Postgres == "" || !strings.Contains(cfg.Store.Postgres, ":db-pw-canary@"):
		t.Errorf("store.postgres did not take the password from its credential")
	case cfg.TLS.CertFile == "" || cfg.TLS.KeyFile != creds+"tls-key":
		t.Errorf("tls = %+v, want the key from the tls-key credential", cfg.TLS)
	case cfg.RootKey.File != creds+"root-key":
		t.Errorf("root_key.file = %q, want the root-key credential", cfg.RootKey.File)
	case !cfg.Redis.Enabled() || cfg.Redis.Password != "redis-pw-canary" || cfg.Redis.CAFile == "":
		t.Errorf("redis: enabled %v, password from the credential %v, ca_file %q", cfg.Redis.Enabled(), cfg.Redis.Password == "redis-pw-canary", cfg.Redis.CAFile)
	case cfg.AllowInsecureHTTP:
		t.Errorf("allow_insecure_http is on in the production example")
	}

	delete(files, creds+"db-password")
	_, err = parseConfig(doc, env(files))
	if err == nil || !strings.Contains(err.Error(), "store.postgres") || !strings.Contains(err.Error(), creds+"db-password") {
		t.Fatalf("parseConfig without the db-password credential = %v, want an error naming store.postgres and the file", err)
	}
}

// selfSignedPEM returns a self-signed CA certificate in PEM.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "deploy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
