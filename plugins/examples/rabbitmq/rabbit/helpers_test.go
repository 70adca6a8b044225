package rabbit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// The test broker: the machine's RabbitMQ (scripts/services.sh), whose
// guest user administers the test users from loopback.
func mgmtURL() string {
	if v := os.Getenv("ROTARY_TEST_RABBITMQ_MGMT"); v != "" {
		return v
	}
	return "http://127.0.0.1:15672"
}

const amqpHost, amqpPort = "127.0.0.1", "5672"

// guest calls the management API as guest and fails the test on any
// answer but 2xx.
func guest(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if code := guestCode(t, method, path, in, out); code/100 != 2 {
		t.Fatalf("%s %s as guest: HTTP %d", method, path, code)
	}
}

func guestCode(t testing.TB, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, mgmtURL()+"/api"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

var waitOnce sync.Once

// waitRabbit waits up to 30 s for the management API and fails the test
// (never skips) when RabbitMQ is not there.
func waitRabbit(t testing.TB) {
	t.Helper()
	var err error
	waitOnce.Do(func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var resp *http.Response
			req, _ := http.NewRequest(http.MethodGet, mgmtURL()+"/api/overview", nil)
			req.SetBasicAuth("guest", "guest")
			if resp, err = http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatalf("RabbitMQ's management API at %s does not answer (run scripts/services.sh): %v", mgmtURL(), err)
	}
}

func esc(s string) string { return url.PathEscape(s) }

func newPassword(t testing.TB) sensitive.Bytes {
	t.Helper()
	pw, err := rotators.GeneratePassword(rotators.PasswordPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

func value(user string, pw sensitive.Bytes, extra map[string]string) rotators.Value {
	m := map[string]string{"username": user, "password": string(pw.Reveal()), "host": amqpHost, "port": amqpPort, "management_url": mgmtURL()}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return sensitive.Bytes(b)
}

func fields(v rotators.Value) map[string]string {
	var m map[string]string
	_ = json.Unmarshal(v.Reveal(), &m)
	return m
}

// appPerms are the permissions of the accounts the tests rotate on vhost
// "/": publish anywhere (the identity check publishes to the default
// exchange), read anything, configure only their own queues.
var appPerms = map[string]string{"configure": "^rt-app-.*", "write": ".*", "read": ".*"}

// createUser makes a user with a random password, the given tags and
// (when perms is not nil) permissions on "/", and deletes it and every
// name in alsoDrop when the test ends.
func createUser(t testing.TB, name string, tags string, perms map[string]string, alsoDrop ...string) rotators.Value {
	t.Helper()
	waitRabbit(t)
	pw := newPassword(t)
	guest(t, http.MethodPut, "/users/"+esc(name), map[string]string{"password": string(pw.Reveal()), "tags": tags}, nil)
	t.Cleanup(func() {
		for _, n := range append([]string{name}, alsoDrop...) {
			guestCode(t, http.MethodDelete, "/users/"+esc(n), nil, nil)
		}
	})
	if perms != nil {
		guest(t, http.MethodPut, "/permissions/%2F/"+esc(name), perms, nil)
	}
	return value(name, pw, nil)
}

func newAdmin(t testing.TB) rotators.Value {
	return createUser(t, testenv.Unique("rt-admin-"), "administrator", nil)
}

// dial opens an AMQP connection with v the plain way (amqp091-go's own
// DialConfig, not the rotator's code).
func dial(v rotators.Value) (*amqp.Connection, error) {
	f := fields(v)
	return amqp.DialConfig(fmt.Sprintf("amqp://%s:%s/", f["host"], f["port"]), amqp.Config{
		SASL:  []amqp.Authentication{&amqp.PlainAuth{Username: f["username"], Password: f["password"]}},
		Vhost: "/",
		Dial:  amqp.DefaultDial(5 * time.Second),
	})
}

// login opens an AMQP connection with v and asks the broker whose it is:
// a message published with user_id set to the value's user is confirmed
// only on a connection of that user (otherwise PRECONDITION_FAILED).
func login(ctx context.Context, v rotators.Value) (string, error) {
	ac, err := dial(v)
	if err != nil {
		return "", err
	}
	defer ac.Close()
	ch, err := ac.Channel()
	if err != nil {
		return "", err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return "", err
	}
	user := fields(v)["username"]
	c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "rt-nowhere", false, false, amqp.Publishing{UserId: user})
	if err != nil {
		return "", err
	}
	ok, err := c.WaitContext(ctx)
	if err != nil || !ok {
		return "", fmt.Errorf("user_id %q not confirmed: %v", user, err)
	}
	return user, nil
}

// openSession keeps an AMQP connection of v open; alive reports whether
// it still is (opening a channel is a round trip to the broker).
func openSession(t *testing.T, v rotators.Value) func() bool {
	t.Helper()
	ac, err := dial(v)
	if err != nil {
		t.Fatalf("open a session: %v", err)
	}
	t.Cleanup(func() { ac.Close() })
	return func() bool {
		if ac.IsClosed() {
			return false
		}
		ch, err := ac.Channel()
		if err != nil {
			return false
		}
		ch.Close()
		return !ac.IsClosed()
	}
}

func config(strategy, adminSecret string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"strategy": strategy, "admin_secret": adminSecret})
	return b
}
