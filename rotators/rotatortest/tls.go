package rotatortest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority a test generates, with its certificate in
// a PEM file (what a value's sslrootcert names).
type CA struct {
	File string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA generates a CA and writes its certificate to a file in a
// temporary directory.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "rotatortest CA " + unique()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &CA{File: file, cert: cert, key: key}
}

// ServerCert issues a server certificate for names (DNS names or IP
// addresses).
func (ca *CA) ServerCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	return ca.issue(t, x509.ExtKeyUsageServerAuth, names...)
}

// ClientCert issues a client certificate with common name cn.
func (ca *CA) ClientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return ca.issue(t, x509.ExtKeyUsageClientAuth, cn)
}

// WriteKeyPair writes cert and its key as PEM files (what a value's
// sslcert and sslkey name) and returns their paths.
func WriteKeyPair(t testing.TB, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Pool is a cert pool holding the CA, for a server verifying clients.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func (ca *CA) issue(t testing.TB, usage x509.ExtKeyUsage, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TLSProxy is a TLS endpoint on 127.0.0.1 in front of a plaintext server:
// it does the TLS handshake with a certificate of its CA and forwards the
// decrypted stream, so that a rotator's TLS settings can be tested against
// the machine's real server.
type TLSProxy struct {
	Host string // 127.0.0.1
	Port int
	CA   *CA
	// Handshakes counts completed TLS handshakes.
	Handshakes atomic.Int64
	// Plaintext counts connections that sent something other than a TLS
	// handshake (or the startTLS preamble) first.
	Plaintext atomic.Int64
}

// StartTLSProxy starts a TLSProxy forwarding to target, with a server
// certificate for names (default "localhost" and "127.0.0.1").
// startTLS, when not nil, runs on each raw connection before the
// handshake (PostgreSQL: read the SSLRequest, answer 'S').
func StartTLSProxy(t testing.TB, target string, startTLS func(net.Conn) error, names ...string) *TLSProxy {
	t.Helper()
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1"}
	}
	ca := NewCA(t)
	cert := ca.ServerCert(t, names...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TLSProxy{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, CA: ca}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, target, startTLS, cert)
			}()
		}
	}()
	return p
}

func (p *TLSProxy) serve(c net.Conn, target string, startTLS func(net.Conn) error, cert tls.Certificate) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if startTLS != nil {
		if err := startTLS(c); err != nil {
			p.Plaintext.Add(1)
			return
		}
	}
	tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		var rec tls.RecordHeaderError
		if errors.As(err, &rec) {
			p.Plaintext.Add(1)
		}
		return
	}
	p.Handshakes.Add(1)
	up, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(30 * time.Second))
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, tc); done <- struct{}{} }()
	go func() { _, _ = io.Copy(tc, up); done <- struct{}{} }()
	<-done
}

// PostgresStartTLS answers PostgreSQL's SSLRequest with 'S', as a server
// with ssl=on does, so that the client starts the TLS handshake.
func PostgresStartTLS(c net.Conn) error {
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return err
	}
	// length 8, code 80877103 (1234 5679)
	if req != [8]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} {
		return errors.New("not an SSLRequest")
	}
	_, err := c.Write([]byte{'S'})
	return err
}
