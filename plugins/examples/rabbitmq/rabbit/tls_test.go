package rabbit_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// TestTLS: with sslmode verify-full both the AMQP login and the
// management API go over TLS checked against sslrootcert (TLS proxies in
// front of the machine's broker); a rotation works end to end, nothing
// goes in plaintext, and a certificate of another CA is refused (the
// negative control).
func TestTLS(t *testing.T) {
	t.Parallel()
	b := setup(t, rotators.StrategyAdmin)
	target, _ := url.Parse(mgmtURL())
	amqpProxy := rotatortest.StartTLSProxy(t, amqpHost+":"+amqpPort, nil)
	mgmtProxy := rotatortest.StartTLSProxy(t, target.Host, nil)
	var pem []byte
	for _, f := range []string{amqpProxy.CA.File, mgmtProxy.CA.File} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	over := map[string]string{
		"host": "localhost", "port": strconv.Itoa(amqpProxy.Port), "sslmode": "verify-full", "sslrootcert": roots,
		"management_url": "https://localhost:" + strconv.Itoa(mgmtProxy.Port),
	}
	b.current, b.admin = withFields(t, b.current, over), withFields(t, b.admin, over)
	old := b.current
	b.rotate(t, true, false)
	works(t, "new (plain AMQP, by the test)", withFields(t, b.current, map[string]string{"host": amqpHost, "port": amqpPort}))
	refused(t, "old", withFields(t, old, map[string]string{"host": amqpHost, "port": amqpPort}))
	if amqpProxy.Handshakes.Load() == 0 || mgmtProxy.Handshakes.Load() == 0 {
		t.Errorf("TLS handshakes: AMQP %d, management %d; want both used", amqpProxy.Handshakes.Load(), mgmtProxy.Handshakes.Load())
	}
	if n := amqpProxy.Plaintext.Load() + mgmtProxy.Plaintext.Load(); n != 0 {
		t.Errorf("%d plaintext connections to the TLS endpoints", n)
	}

	other := rotatortest.NewCA(t)
	wrongCA := map[string]string{"sslrootcert": other.File}
	if err := b.r.Test(ctx(t), rotators.TestRequest{Config: b.cfg, Value: withFields(t, b.current, wrongCA)}); err == nil {
		t.Errorf("Test with another CA's sslrootcert succeeded; want the certificate refused")
	}
	resp, err := b.r.Create(ctx(t), rotators.CreateRequest{Config: b.cfg, Current: b.current})
	if err != nil {
		t.Fatal(err)
	}
	err = b.r.Set(ctx(t), rotators.SetRequest{Config: b.cfg, Current: withFields(t, b.current, wrongCA), Pending: withFields(t, resp.Value, wrongCA),
		Admin: withFields(t, b.admin, wrongCA)})
	if err == nil {
		t.Errorf("Set through a management API with another CA's certificate succeeded")
	}
	works(t, "current after the refused Set", withFields(t, b.current, map[string]string{"host": amqpHost, "port": amqpPort}))
}
