package mysql

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// tlsMariaDB starts a throwaway mariadbd with TLS (a certificate of a CA
// the test generates, for localhost and 127.0.0.1) and returns its port,
// the CA and a root connection over its Unix socket.
func tlsMariaDB(t *testing.T) (int, *rotatortest.CA, *sql.DB) {
	t.Helper()
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		mariadbd = "/usr/sbin/mariadbd"
	}
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		t.Skipf("no mariadb-install-db on this machine (%v): the TLS settings are covered by TestDriverConfigTLS", err)
	}
	dir, err := os.MkdirTemp("", "rt-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(install, "--no-defaults", "--user=root", "--datadir="+data, "--auth-root-authentication-method=normal",
		"--skip-test-db").CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	ca := rotatortest.NewCA(t)
	cert := ca.ServerCert(t, "localhost", "127.0.0.1")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyDER, err := x509MarshalKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sock := filepath.Join(dir, "mysqld.sock")
	cmd := exec.Command(mariadbd, "--no-defaults", "--user=root", "--datadir="+data, "--port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--socket="+sock, "--pid-file="+filepath.Join(dir, "pid"), "--skip-log-bin",
		"--ssl-cert="+certFile, "--ssl-key="+keyFile, "--innodb-buffer-pool-size=16M", "--log-error="+filepath.Join(dir, "err.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	mc := driver.NewConfig()
	mc.User, mc.Net, mc.Addr = "root", "unix", sock
	mc.InterpolateParams = true
	connector, err := driver.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	root := sql.OpenDB(connector)
	t.Cleanup(func() { root.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := root.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			t.Fatalf("mariadbd did not answer: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return port, ca, root
}

// TestTLSServer: a single-user rotation of an account that REQUIRE SSL on
// a MariaDB with TLS, verified against the test's CA; a wrong CA, a name
// the certificate lacks, and plaintext are refused.
func TestTLSServer(t *testing.T) {
	port, ca, root := tlsMariaDB(t)
	other := rotatortest.NewCA(t)
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Exec("CREATE USER 'app'@'%' IDENTIFIED BY PASSWORD ? REQUIRE SSL", nativeHash(pw.Reveal())); err != nil {
		t.Fatalf("create user: %v", err)
	}
	mk := func(password string, fields map[string]any) rotators.Value {
		m := map[string]any{"engine": "mysql", "host": "localhost", "port": port, "username": "app", "password": password,
			"sslmode": "verify-full", "sslrootcert": ca.File}
		for k, v := range fields {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return sensitive.Bytes(b)
	}
	current := mk(string(pw.Reveal()), nil)
	cfg := json.RawMessage(`{"strategy":"single-user"}`)
	pending, err := rotate(t, cfg, current, nil, nil, false)
	if err != nil {
		t.Fatalf("single-user rotation over verify-full: %v", err)
	}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"verify-full", nil, ""},
		{"verify-full by IP", map[string]any{"host": "127.0.0.1"}, ""},
		{"wrong CA", map[string]any{"sslrootcert": other.File}, "certificate"},
		{"wrong CA, verify-ca", map[string]any{"sslmode": "verify-ca", "sslrootcert": other.File}, "certificate"},
		{"name not in the certificate", map[string]any{"tls_server_name": "db.example.com"}, "certificate"},
		{"verify-ca ignores the name", map[string]any{"sslmode": "verify-ca", "tls_server_name": "db.example.com"}, ""},
		{"plaintext is refused by the account", map[string]any{"sslmode": "disable", "sslrootcert": nil}, "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			_ = json.Unmarshal(pending.Reveal(), &m)
			v := mk(fmt.Sprint(m["password"]), tc.fields)
			err := New().Test(ctx(t), rotators.TestRequest{Config: cfg, Value: v})
			if err != nil && strings.Contains(err.Error(), fmt.Sprint(m["password"])) {
				t.Fatalf("error leaks the password")
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Test = %v; want it to work", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Test = %v; want an error about %s", err, tc.want)
			}
		})
	}
}

func x509MarshalKey(k any) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k) }
