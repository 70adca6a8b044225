package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
)

type certKey struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCert(t *testing.T, cn string, parent *certKey, isCA bool, usage x509.ExtKeyUsage) *certKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if !isCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &certKey{cert: c, key: key, der: der}
}

func writePEM(t *testing.T, path, typ string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *certKey) tlsCert(t *testing.T) tls.Certificate {
	kb, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestTLSWithClientCertificates: the API speaks TLS from cert/key files
// and, with client_ca_file, refuses clients without a certificate from
// that CA (the bearer token is still required on top).
func TestTLSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, "rotary test CA", nil, true, 0)
	srv := newCert(t, "127.0.0.1", ca, false, x509.ExtKeyUsageServerAuth)
	good := newCert(t, "client", ca, false, x509.ExtKeyUsageClientAuth)
	otherCA := newCert(t, "other CA", nil, true, 0)
	bad := newCert(t, "intruder", otherCA, false, x509.ExtKeyUsageClientAuth)

	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.der)
	writePEM(t, filepath.Join(dir, "srv.pem"), "CERTIFICATE", srv.der)
	kb, _ := x509.MarshalECPrivateKey(srv.key)
	writePEM(t, filepath.Join(dir, "srv.key"), "EC PRIVATE KEY", kb)

	token := "tls-root-token-0123456789"
	d, err := daemon.New(context.Background(), daemon.Config{
		Listen:    "127.0.0.1:0",
		TLS:       daemon.TLSConfig{CertFile: filepath.Join(dir, "srv.pem"), KeyFile: filepath.Join(dir, "srv.key"), ClientCAFile: filepath.Join(dir, "ca.pem")},
		Store:     daemon.StoreConfig{SQLite: filepath.Join(dir, "r.db")},
		RootKey:   daemon.RootKeyConfig{File: filepath.Join(dir, "root.key"), Generate: true},
		RootToken: token, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	mk := func(certs ...tls.Certificate) *client.Client {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		c, err := client.New("https://"+d.Addr(), client.WithToken(token), client.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	if _, err := mk(good.tlsCert(t)).ListSecrets(ctx, ""); err != nil {
		t.Fatalf("client with a certificate from the CA: %v", err)
	}
	if _, err := mk().ListSecrets(ctx, ""); err == nil {
		t.Fatalf("client without a certificate was served")
	}
	if _, err := mk(bad.tlsCert(t)).ListSecrets(ctx, ""); err == nil {
		t.Fatalf("client with a certificate from another CA was served")
	}
	// Plain HTTP to the TLS port gets nowhere.
	if resp, err := http.Get("http://" + d.Addr() + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatalf("plain HTTP was served on the TLS port")
	}
}
