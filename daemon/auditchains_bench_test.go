package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/daemon"
)

// BenchmarkSecretReadHTTPDaemons is BenchmarkSecretReadHTTP with the
// clients spread over two daemons sharing one PostgreSQL store (and root
// key): every read is audited before it is answered, so it measures how
// the two daemons' audit commits get along (issue 12).
func BenchmarkSecretReadHTTPDaemons(b *testing.B) {
	for _, conc := range []int{8, 32} {
		b.Run(fmt.Sprintf("store=postgres/daemons=2/clients=%d", conc), func(b *testing.B) {
			var dsn, keyFile string
			d1, token := startDaemonWith(b, "postgres", func(c *daemon.Config) { dsn, keyFile = c.Store.Postgres, c.RootKey.File })
			d2, _ := startDaemonWith(b, "postgres", func(c *daemon.Config) {
				c.Store.Postgres = dsn
				c.RootKey = daemon.RootKeyConfig{File: keyFile}
				c.RootToken = ""
			})
			addrs := []string{"http://" + d1.Addr(), "http://" + d2.Addr()}
			c, _ := client.New(addrs[0], client.WithToken(token))
			value := bytes.Repeat([]byte("k"), 1024)
			if _, err := c.CreateSecret(context.Background(), client.CreateSecretRequest{Name: "bench/secret", Value: client.NewValue(value)}); err != nil {
				b.Fatal(err)
			}
			readLoad(b, []string{addrs[0] + "/v1/secrets/bench%2Fsecret/value", addrs[1] + "/v1/secrets/bench%2Fsecret/value"}, token, conc)
		})
	}
}
