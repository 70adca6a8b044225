package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	rsink "github.com/rotary-secrets/rotary/events/redis"
)

// sinkConfig turns the configuration into the Redis sink's, reading the
// TLS files.
func (r RedisConfig) sinkConfig() (rsink.Config, error) {
	c := rsink.Config{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Username: r.Username, Password: r.Password,
		DB: r.DB, Prefix: r.Prefix, MaxLen: r.MaxLen,
	}
	if r.CAFile != "" || r.CertFile != "" || r.ServerName != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.ServerName}
		if r.CAFile != "" {
			pem, err := os.ReadFile(r.CAFile)
			if err != nil {
				return c, fmt.Errorf("redis.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return c, fmt.Errorf("redis.tls.ca_file: %s holds no PEM certificate", r.CAFile)
			}
		}
		if r.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
			if err != nil {
				return c, fmt.Errorf("redis.tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c.TLS = tc
	}
	if _, err := c.Options(); err != nil {
		return c, errors.New(err.Error())
	}
	return c, nil
}
