package rotators

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Sentinel errors of the database rotators' safety checks. Callers match
// them with errors.Is; the rotators wrap them with the field or account
// at fault.
var (
	// ErrWrongIdentity: the session the target opened is not the
	// configured user's (current_user, CURRENT_USER(), ACL WHOAMI differ),
	// or the target lets the user in without checking its password, so a
	// password change would act on an account the rotation was not meant
	// to touch, or prove nothing.
	ErrWrongIdentity = errors.New("the target's session is not the configured user's")
	// ErrPlaintext: the value would send a password in plaintext to a host
	// that is not loopback.
	ErrPlaintext = errors.New("refusing to send a password in plaintext")
	// ErrTestQuery: the config's test_query is not a single read-only
	// statement.
	ErrTestQuery = errors.New("test_query must be a single read-only statement")
)

// TLS modes of a db-credentials value's sslmode field, with libpq's
// meanings, for every database rotator.
const (
	SSLDisable    = "disable"     // plaintext
	SSLAllow      = "allow"       // plaintext, TLS only if the server insists
	SSLPrefer     = "prefer"      // TLS if the server offers it, unverified; else plaintext
	SSLRequire    = "require"     // TLS, certificate not verified
	SSLVerifyCA   = "verify-ca"   // TLS, chain verified against sslrootcert (or the system roots)
	SSLVerifyFull = "verify-full" // verify-ca and the certificate names the host (or tls_server_name)
)

// SSLModes lists the accepted sslmode values, for error messages.
const SSLModes = "disable, allow, prefer, require, verify-ca or verify-full"

// maxHostLen is the longest DNS name.
const maxHostLen = 253

// CheckHost refuses a host that is not a DNS name or an IP address: a
// Unix socket path ("/run/postgresql", "@abstract"), several hosts
// ("a,b"), or anything with spaces, quotes, '=', '?', '&', '@' or '/' that
// a driver could read as more than one host. The rotators log in over TCP
// only, so that the server checks the password they send (a Unix socket
// is commonly trusted or peer-authenticated: any password would "work").
func CheckHost(host string) error {
	if host == "" {
		return errors.New(`field "host" is empty`)
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); ip != nil {
		return nil
	}
	if strings.HasPrefix(host, "/") || strings.HasPrefix(host, "@") {
		return fmt.Errorf(`field "host": %q is a Unix socket path: the rotators log in over TCP only, so that the server checks the password; use 127.0.0.1 or the server's name`, host)
	}
	if len(host) > maxHostLen {
		return fmt.Errorf(`field "host": longer than %d characters`, maxHostLen)
	}
	for i := 0; i < len(host); i++ {
		ch := host[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		case ch == '.' && i > 0:
		default:
			return fmt.Errorf(`field "host": %q is not a host name or an IP address (letters, digits, '.', '-' and '_' only)`, host)
		}
	}
	if host[0] == '-' {
		return fmt.Errorf(`field "host": %q is not a host name or an IP address`, host)
	}
	return nil
}

// IsLoopback reports whether host is "localhost" or a loopback IP address
// (127.0.0.0/8, ::1). Names are not resolved: a name other than localhost
// counts as remote.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}

// Mode returns the value's sslmode in canonical form: its sslmode field
// (aliases of go-sql-driver and MySQL's --ssl-mode accepted), or without
// one disable for a loopback host and verify-full elsewhere.
func (c DBCredentials) Mode() (string, error) {
	switch strings.ToLower(c.SSLMode) {
	case "":
		if IsLoopback(c.Host) {
			return SSLDisable, nil
		}
		return SSLVerifyFull, nil
	case "disable", "disabled", "false":
		return SSLDisable, nil
	case "allow":
		return SSLAllow, nil
	case "prefer", "preferred":
		return SSLPrefer, nil
	case "require", "required", "skip-verify":
		return SSLRequire, nil
	case "verify-ca", "verify_ca":
		return SSLVerifyCA, nil
	case "verify-full", "verify_identity", "verify-identity", "true":
		return SSLVerifyFull, nil
	}
	return "", fmt.Errorf(`field "sslmode": %q: use %s`, c.SSLMode, SSLModes)
}

// Plaintext reports whether mode may send the password unencrypted.
func Plaintext(mode string) bool {
	return mode == SSLDisable || mode == SSLAllow || mode == SSLPrefer
}

// CheckTransport refuses a value that would send its password in
// plaintext (sslmode disable, allow or prefer) to a host that is not
// loopback, unless the value says "allow_plaintext": true. It also checks
// the sslmode and the TLS fields: sslrootcert, sslcert and sslkey only
// with a TLS mode, sslcert and sslkey together.
func (c DBCredentials) CheckTransport() error {
	mode, err := c.Mode()
	if err != nil {
		return err
	}
	if Plaintext(mode) {
		for f, v := range map[string]string{"sslrootcert": c.SSLRootCert, "sslcert": c.SSLCert, "sslkey": c.SSLKey, "tls_server_name": c.TLSServerName} {
			if v != "" {
				return fmt.Errorf(`field %q is set but sslmode %q does not verify TLS: use sslmode "verify-full"`, f, mode)
			}
		}
		if !IsLoopback(c.Host) && !c.AllowPlaintext {
			return fmt.Errorf(`%w to %q (sslmode %q): set "sslmode": "verify-full" and "sslrootcert": the path of the server's CA certificate (PEM), `+
				`or "allow_plaintext": true to accept the risk`, ErrPlaintext, c.Host, mode)
		}
		return nil
	}
	if (c.SSLCert == "") != (c.SSLKey == "") {
		return errors.New(`fields "sslcert" and "sslkey": a client certificate needs both`)
	}
	if c.TLSServerName != "" {
		if err := CheckHost(c.TLSServerName); err != nil {
			return fmt.Errorf(`field "tls_server_name": %q is not a host name`, c.TLSServerName)
		}
	}
	return nil
}

// TLSConfig returns the TLS client config for a TLS mode (require,
// verify-ca, verify-full) and nil for the others. It reads sslrootcert
// (PEM; the system roots without it), and sslcert and sslkey (a client
// certificate, optional). verify-full checks the certificate names
// tls_server_name, or the host. The minimum version is TLS 1.2.
func (c DBCredentials) TLSConfig() (*tls.Config, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	if Plaintext(mode) {
		return nil, nil
	}
	if err := c.CheckTransport(); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.SSLRootCert != "" {
		pem, err := os.ReadFile(c.SSLRootCert)
		if err != nil {
			return nil, fmt.Errorf(`field "sslrootcert": read the CA file %q: %w`, c.SSLRootCert, errors.Unwrap(err))
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf(`field "sslrootcert": %q holds no PEM certificate`, c.SSLRootCert)
		}
	}
	if c.SSLCert != "" {
		cert, err := tls.LoadX509KeyPair(c.SSLCert, c.SSLKey)
		if err != nil {
			return nil, fmt.Errorf(`fields "sslcert" and "sslkey": load the client certificate %q: %w`, c.SSLCert, err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	switch mode {
	case SSLRequire:
		tc.InsecureSkipVerify = true //nolint:gosec // sslmode=require: encrypted, unverified, the value's explicit choice
	case SSLVerifyCA:
		// Go verifies chain and name together; verify the chain alone.
		tc.InsecureSkipVerify = true //nolint:gosec // the chain is verified in VerifyConnection
		roots := tc.RootCAs
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	case SSLVerifyFull:
		tc.ServerName = c.TLSServerName
		if tc.ServerName == "" {
			tc.ServerName = strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]")
		}
	}
	return tc, nil
}

// TLSKey is a short name for c's TLS settings and the contents of its
// files, for drivers that keep TLS configs in a registry by name: equal
// settings share one entry, and a CA file that changes gets a new one.
func (c DBCredentials) TLSKey() string {
	h := sha256.New()
	mode, _ := c.Mode()
	for _, s := range []string{mode, c.Host, c.TLSServerName, c.SSLRootCert, c.SSLCert, c.SSLKey} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, f := range []string{c.SSLRootCert, c.SSLCert, c.SSLKey} {
		if f != "" {
			b, _ := os.ReadFile(f)
			sum := sha256.Sum256(b)
			h.Write(sum[:])
		}
	}
	return "rotary" + hex.EncodeToString(h.Sum(nil)[:12])
}
