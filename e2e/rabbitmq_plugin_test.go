package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The machine's RabbitMQ (scripts/services.sh): guest administers the
// test users from loopback.
func rabbitMgmt() string {
	if v := os.Getenv("ROTARY_TEST_RABBITMQ_MGMT"); v != "" {
		return v
	}
	return "http://127.0.0.1:15672"
}

// rabbitGuest calls the management API as guest and returns the status.
func rabbitGuest(t testing.TB, method, path string, body any) int {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, rabbitMgmt()+"/api"+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("RabbitMQ management API at %s: %v (run scripts/services.sh)", rabbitMgmt(), err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rabbitUser makes a user with tags (and permissions on "/" when perms),
// deleted when the test ends; it returns its key-value secret value.
func rabbitUser(t testing.TB, name, tags string, perms bool) string {
	t.Helper()
	waitFor(t, 30*time.Second, "RabbitMQ's management API", func() bool {
		return rabbitGuest(t, http.MethodGet, "/overview", nil) == http.StatusOK
	})
	pw := "rb-" + randHex(16)
	if code := rabbitGuest(t, http.MethodPut, "/users/"+url.PathEscape(name), map[string]string{"password": pw, "tags": tags}); code/100 != 2 {
		t.Fatalf("create RabbitMQ user %s: HTTP %d", name, code)
	}
	t.Cleanup(func() { rabbitGuest(t, http.MethodDelete, "/users/"+url.PathEscape(name), nil) })
	if perms {
		p := map[string]string{"configure": "", "write": ".*", "read": ".*"}
		if code := rabbitGuest(t, http.MethodPut, "/permissions/%2F/"+url.PathEscape(name), p); code/100 != 2 {
			t.Fatalf("permissions of %s: HTTP %d", name, code)
		}
	}
	v, _ := json.Marshal(map[string]string{"username": name, "password": pw, "host": "127.0.0.1", "port": "5672", "management_url": rabbitMgmt()})
	return string(v)
}

// amqpLogin opens an AMQP connection with user and password.
func amqpLogin(user, password string) error {
	conn, err := amqp.DialConfig("amqp://127.0.0.1:5672/", amqp.Config{
		SASL:  []amqp.Authentication{&amqp.PlainAuth{Username: user, Password: password}},
		Vhost: "/", Dial: amqp.DefaultDial(5 * time.Second),
	})
	if err != nil {
		return err
	}
	return conn.Close()
}

// TestPluginRabbitMQ: the RabbitMQ example plugin, registered in the
// catalog, rotates a real RabbitMQ user's password through the daemon
// with the admin strategy: the new password opens an AMQP connection,
// the old one is refused (the negative control). single-user is refused
// when the settings are saved, with the contract's unsupported error and
// RabbitMQ's reason.
func TestPluginRabbitMQ(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	bin := pluginBinary(t, "rabbitmq")
	c.ok("plugin", "register", "rabbitmq", "--path", bin)
	if p := pluginInfo(t, c, "rabbitmq"); !strings.Contains(strings.Join(p.SecretTypes, ","), "key-value") || len(p.IdentityFields) == 0 {
		t.Fatalf("plugin show rabbitmq = %+v; want key-value and its identity fields", p)
	}

	id := randHex(4)
	admin := rabbitUser(t, "e2e-admin-"+id, "administrator", false)
	app := rabbitUser(t, "e2e-app-"+id, "", true)
	var appV map[string]string
	_ = json.Unmarshal([]byte(app), &appV)
	oldPW := appV["password"]
	if err := amqpLogin(appV["username"], oldPW); err != nil {
		t.Fatalf("the app user cannot log in before the rotation: %v", err)
	}
	c.withStdin([]byte(admin)).ok("secret", "create", "rabbit/admin-"+id, "--type", "key-value", "--value-stdin")
	c.withStdin([]byte(app)).ok("secret", "create", "rabbit/app-"+id, "--type", "key-value", "--value-stdin")

	c.fail(exitUsage, []string{"single-user", "not supported by this rotator", "administrator"},
		"rotation", "set", "rabbit/app-"+id, "--rotator", "plugin:rabbitmq", "--config-json", `{"strategy":"single-user"}`)

	out := c.ok("rotation", "set", "rabbit/app-"+id, "--rotator", "plugin:rabbitmq", "--schedule", "rate(1 hours)",
		"--config-json", fmt.Sprintf(`{"strategy":"admin","admin_secret":"rabbit/admin-%s"}`, id))
	if !strings.Contains(out, "e2e-app-"+id) {
		t.Fatalf("rotation set: not bound to the user:\n%s", out)
	}
	c.ok("rotate", "rabbit/app-"+id, "--wait")
	if v := currentVersion(t, c, "rabbit/app-"+id); v != 2 {
		t.Fatalf("current version %d, want 2", v)
	}
	newPW := currentPassword(t, c, "rabbit/app-"+id)
	if newPW == oldPW || newPW == "" {
		t.Fatal("the password did not change")
	}
	if err := amqpLogin(appV["username"], newPW); err != nil {
		t.Fatalf("the new password does not open an AMQP connection: %v", err)
	}
	err := amqpLogin(appV["username"], oldPW)
	if err == nil {
		t.Fatal("the old password still opens an AMQP connection")
	}
	if !errors.Is(err, amqp.ErrCredentials) && !strings.Contains(err.Error(), "403") {
		t.Fatalf("old password: %v; want the broker to refuse the credential", err)
	}
	runs := history(t, c, "rabbit/app-"+id)
	if len(runs) == 0 || runs[0].State != "succeeded" {
		t.Fatalf("history: %+v; want a succeeded run", runs)
	}
	if strings.Contains(s.logs.String(), newPW) || strings.Contains(s.logs.String(), oldPW) {
		t.Fatal("the daemon log shows a RabbitMQ password")
	}
}
