package rotators_test

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// TestTLSClientCertificate: sslcert and sslkey are presented to a server
// that requires a client certificate of its CA; without them, or with a
// certificate and a key that do not match, the connection fails.
func TestTLSClientCertificate(t *testing.T) {
	ca := rotatortest.NewCA(t)
	serverCert := ca.ServerCert(t, "localhost")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	dial := func(c rotators.DBCredentials) error {
		tc, err := c.TLSConfig()
		if err != nil {
			return err
		}
		conn, err := tls.Dial("tcp", ln.Addr().String(), tc)
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 2)
		_, err = conn.Read(buf) // TLS 1.3: a refused client certificate shows on the first read
		return err
	}
	certFile, keyFile := rotatortest.WriteKeyPair(t, ca.ClientCert(t, "rotary"))
	c := rotators.DBCredentials{Host: "localhost", Port: 1, SSLMode: "verify-full", SSLRootCert: ca.File, SSLCert: certFile, SSLKey: keyFile}
	if err := dial(c); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	c.SSLCert, c.SSLKey = "", ""
	if err := dial(c); err == nil {
		t.Fatalf("without a client certificate the server let the connection in; the test proves nothing")
	}
	_, otherKey := rotatortest.WriteKeyPair(t, ca.ClientCert(t, "other"))
	c.SSLCert, c.SSLKey = certFile, otherKey
	if err := dial(c); err == nil || !strings.Contains(err.Error(), `"sslcert"`) {
		t.Fatalf("certificate and key that do not match: %v; want an error naming the fields", err)
	}
}
