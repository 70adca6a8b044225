package rabbit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Dial opens an AMQP 0-9-1 connection as c (PLAIN authentication, c's
// vhost, TLS as c's sslmode says) within timeout and ctx. A refused
// credential is an error that says so; no error holds the password.
func Dial(ctx context.Context, c Creds, timeout time.Duration) (*amqp.Connection, error) {
	tc, err := c.transport.TLSConfig()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr())
	if err != nil {
		return nil, sensitive.Sanitize(fmt.Errorf("connect to %s: %w", c.addr(), err), c.pw)
	}
	// The handshake is bounded by the deadline and by ctx; amqp091-go
	// clears the deadline once the connection is open.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if tc != nil {
		if tc.ServerName == "" && !tc.InsecureSkipVerify {
			tc.ServerName = c.Host
		}
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS to %s: %w", c.addr(), err)
		}
		conn = tconn
	}
	ac, err := amqp.Open(conn, amqp.Config{
		SASL:       []amqp.Authentication{&amqp.PlainAuth{Username: c.Username, Password: string(c.pw.Reveal())}},
		Vhost:      c.Vhost,
		Locale:     "en_US",
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "rotary rabbitmq rotator"},
	})
	if err != nil {
		conn.Close()
		var ae *amqp.Error
		switch {
		case errors.Is(err, amqp.ErrCredentials) || errors.As(err, &ae) && ae.Code == amqp.AccessRefused && !errors.Is(err, amqp.ErrVhost):
			return nil, fmt.Errorf("log in to %s as %q: the server refused the credential", c.addr(), c.Username)
		case errors.Is(err, amqp.ErrVhost):
			return nil, fmt.Errorf("log in to %s as %q: the user may not open vhost %q", c.addr(), c.Username, c.Vhost)
		}
		return nil, sensitive.Sanitize(fmt.Errorf("log in to %s as %q: %w", c.addr(), c.Username, err), c.pw)
	}
	return ac, nil
}

// checkIdentity asks the broker whose connection ac is, the AMQP way:
// it publishes, on a channel in confirm mode, an empty message with the
// user_id property set to want to the default exchange under a routing
// key no queue can have (the message is dropped, nothing is stored).
// RabbitMQ closes the channel with PRECONDITION_FAILED when user_id is
// not the connection's authenticated user: rotators.ErrWrongIdentity.
// ok is false when the user may not publish to the default exchange
// (ACCESS_REFUSED): the check could not be made.
func checkIdentity(ctx context.Context, ac *amqp.Connection, want string) (ok bool, err error) {
	ch, err := ac.Channel()
	if err != nil {
		return false, fmt.Errorf("open a channel: %w", err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		return false, fmt.Errorf("confirm mode: %w", err)
	}
	key := "rotary.identity-check." + randomKey()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", key, false, false, amqp.Publishing{UserId: want})
	if err != nil {
		return false, fmt.Errorf("publish the identity check: %w", err)
	}
	select {
	case e := <-closed:
		if e == nil {
			return false, errors.New("identity check: the channel closed")
		}
		switch e.Code {
		case amqp.PreconditionFailed:
			return false, fmt.Errorf("%w: the broker refused user_id %q on this connection (%s); refusing the credential",
				rotators.ErrWrongIdentity, want, e.Reason)
		case amqp.AccessRefused:
			return false, nil
		}
		return false, fmt.Errorf("identity check: channel closed: %s", e.Reason)
	case <-conf.Done():
		if !conf.Acked() {
			return false, errors.New("identity check: the broker did not confirm the message")
		}
		// A channel error arrives before the confirm would; check once more.
		select {
		case e := <-closed:
			if e != nil && e.Code == amqp.PreconditionFailed {
				return false, fmt.Errorf("%w: the broker refused user_id %q on this connection", rotators.ErrWrongIdentity, want)
			}
		default:
		}
		return true, nil
	case <-ctx.Done():
		return false, fmt.Errorf("identity check: %w", ctx.Err())
	}
}
