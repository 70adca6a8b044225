package rabbit_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/plugins/examples/rabbitmq/rabbit"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/sensitive"
)

// TestHashPassword: the hash RabbitMQ stored for guest/guest (a vector
// read from the broker) matches, a wrong password does not, and a hash
// made by HashPassword is one RabbitMQ accepts (a real login).
func TestHashPassword(t *testing.T) {
	t.Parallel()
	const guestHash = "HmR2Znp8kXwses4LbK8aTndSsK3ZN33awszk89UeATaBH+uw"
	if !rabbit.HashMatches(guestHash, "rabbit_password_hashing_sha256", []byte("guest")) {
		t.Errorf("hashMatches(guest's stored hash, guest) = false")
	}
	for _, c := range []struct{ hash, alg, pw string }{
		{guestHash, "rabbit_password_hashing_sha256", "guesT"},
		{guestHash, "rabbit_password_hashing_sha512", "guest"},
		{guestHash, "rabbit_password_hashing_md5", "guest"},
		{"not base64!", "rabbit_password_hashing_sha256", "guest"},
		{"", "", ""},
	} {
		if rabbit.HashMatches(c.hash, c.alg, []byte(c.pw)) {
			t.Errorf("hashMatches(%q, %s, %q) = true", c.hash, c.alg, c.pw)
		}
	}
	h1, _ := rabbit.HashPassword([]byte("same"))
	h2, _ := rabbit.HashPassword([]byte("same"))
	if h1 == h2 || !rabbit.HashMatches(h1, "", []byte("same")) || !rabbit.HashMatches(h2, "", []byte("same")) {
		t.Errorf("HashPassword: want a fresh salt per call and both hashes matching")
	}

	name := testenv.Unique("rt-hash-")
	createUser(t, name, "", appPerms)
	pw := newPassword(t)
	h, err := rabbit.HashPassword(pw.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	guest(t, http.MethodPut, "/users/"+esc(name), map[string]string{"password_hash": h, "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}, nil)
	works(t, "pre-hashed", value(name, pw, nil))
	refused(t, "wrong", value(name, sensitive.Bytes("x"+string(pw.Reveal())), nil))
}

// TestCheckIdentity: the user_id check confirms the connection's own
// user and refuses any other name with ErrWrongIdentity; a user that may
// not publish cannot be checked (ok false, no error).
func TestCheckIdentity(t *testing.T) {
	t.Parallel()
	name := testenv.Unique("rt-who-")
	v := createUser(t, name, "", appPerms)
	c, err := rabbit.ParseValue(v, "test")
	if err != nil {
		t.Fatal(err)
	}
	ac, err := rabbit.Dial(ctx(t), c, rabbit.DefaultTimeout)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer ac.Close()
	if ok, err := rabbit.CheckIdentity(ctx(t), ac, name); !ok || err != nil {
		t.Errorf("checkIdentity(own name) = %v, %v; want true, nil", ok, err)
	}
	if _, err := rabbit.CheckIdentity(ctx(t), ac, "guest"); !errors.Is(err, rotators.ErrWrongIdentity) {
		t.Errorf("checkIdentity(another name) = %v; want ErrWrongIdentity", err)
	}

	ro := testenv.Unique("rt-ro-")
	rov := createUser(t, ro, "", map[string]string{"configure": "", "write": "", "read": ".*"})
	rc, _ := rabbit.ParseValue(rov, "test")
	rac, err := rabbit.Dial(ctx(t), rc, rabbit.DefaultTimeout)
	if err != nil {
		t.Fatalf("Dial(read-only user): %v", err)
	}
	defer rac.Close()
	if ok, err := rabbit.CheckIdentity(ctx(t), rac, ro); ok || err != nil {
		t.Errorf("checkIdentity(read-only user) = %v, %v; want false, nil", ok, err)
	}
	// Test accepts the read-only user's credential all the same.
	if err := rabbit.New().Test(ctx(t), rotators.TestRequest{Config: config("admin", "a"), Value: rov}); err != nil {
		t.Errorf("Test(read-only user) = %v", err)
	}
}

// TestParseConfig: strict, errors name the field.
func TestParseConfig(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{`{"strategy":"admin","admin_secret":"a"}`, ""},
		{`{"strategy":"alternating","admin_secret":"a","alternate_username":"x2","password":{"length":40},"connect_timeout":"3s"}`, ""},
		{`{"strategy":"admin"}`, `"admin_secret"`},
		{`{"strategy":"rotate-all","admin_secret":"a"}`, `"strategy"`},
		{`{"strategy":"admin","admin_secret":"a","test_query":"x"}`, `unknown field "test_query"`},
		{`{"strategy":"admin","admin_secret":"a","alternate_username":"b"}`, `"alternate_username"`},
		{`{"strategy":"admin","admin_secret":"a","connect_timeout":"1h"}`, `"connect_timeout"`},
		{`{"strategy":"admin","admin_secret":"a","password":{"length":3}}`, `password.length`},
		{`{"strategy":"admin","admin_secret":7}`, `"admin_secret"`},
		{`{"strategy":"admin","admin_secret":"a"} {}`, `more than one`},
		{`[`, `not a valid JSON object`},
	} {
		_, err := rabbit.ParseConfig(json.RawMessage(c.raw))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ParseConfig(%s) = %v; want nil", c.raw, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ParseConfig(%s) = %v; want an error with %s", c.raw, err, c.want)
		}
	}
}

// TestParseValue: the value's fields are checked and named; no error
// quotes the password.
func TestParseValue(t *testing.T) {
	base := map[string]any{"username": "app", "password": "CANARY-pw-1234", "host": "127.0.0.1", "port": "5672", "management_url": "http://127.0.0.1:15672"}
	for _, c := range []struct {
		change map[string]any
		want   string
	}{
		{nil, ""},
		{map[string]any{"port": 5672}, ""},
		{map[string]any{"management_url": "https://rabbit.example.com/mgmt/", "host": "rabbit.example.com"}, ""},
		{map[string]any{"username": nil}, `"username" is missing`},
		{map[string]any{"password": ""}, `"password" is empty`},
		{map[string]any{"port": "x"}, `"port"`},
		{map[string]any{"port": "70000"}, `"port"`},
		{map[string]any{"host": "/tmp/sock"}, `"host"`},
		{map[string]any{"host": "127.0.0.1 port=1"}, `"host"`},
		{map[string]any{"username": "a\nb"}, `"username"`},
		{map[string]any{"management_url": "ftp://127.0.0.1"}, `"management_url"`},
		{map[string]any{"management_url": "http://u:p@127.0.0.1:15672"}, `must not hold credentials`},
		{map[string]any{"management_url": "http://127.0.0.1:15672/?x=1"}, `no query`},
		{map[string]any{"management_url": "http://evil host:1"}, `"management_url"`},
		{map[string]any{"management_url": "http://10.1.2.3:15672"}, `refusing to send a password in plaintext`},
		{map[string]any{"sslmode": "prefer"}, `"sslmode"`},
		{map[string]any{"allow_plaintext": "yes"}, `"allow_plaintext"`},
		{map[string]any{"vhost": 3}, `"vhost"`},
	} {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range c.change {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		b, _ := json.Marshal(m)
		_, err := rabbit.ParseValue(sensitive.Bytes(b), "current")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ParseValue(%v) = %v; want nil", c.change, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ParseValue(%v) = %v; want an error with %s", c.change, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "CANARY") {
			t.Errorf("ParseValue(%v) error holds the password", c.change)
		}
	}
	for _, host := range rotatortest.HostileHosts {
		b, _ := json.Marshal(map[string]any{"username": "app", "password": "CANARY-pw", "host": host, "port": "5672", "management_url": "http://127.0.0.1:15672"})
		if _, err := rabbit.ParseValue(sensitive.Bytes(b), "current"); err == nil || !strings.Contains(err.Error(), `field "host"`) {
			t.Errorf("ParseValue(host %q) = %v; want it refused naming the host field", host, err)
		}
	}
}

// FuzzParseValue: never panics, never quotes the password.
func FuzzParseValue(f *testing.F) {
	f.Add(`{"username":"app","password":"CANARY","host":"127.0.0.1","port":"5672","management_url":"http://127.0.0.1:15672"}`)
	f.Add(`{"username":"a","password":"CANARY","host":"h","port":5672,"management_url":"https://h/x","sslmode":"verify-full"}`)
	f.Add(`{"password":"CANARY","port":"x"}`)
	f.Fuzz(func(t *testing.T, s string) {
		_, err := rabbit.ParseValue(sensitive.Bytes(s), "fuzz")
		var m map[string]any
		if err != nil && json.Unmarshal([]byte(s), &m) == nil {
			if pw, ok := m["password"].(string); ok && len(pw) >= 6 && strings.Contains(err.Error(), pw) {
				t.Errorf("error quotes the password: %v", err)
			}
		}
	})
}

// TestInfoMatchesTarget: the identity fields Info declares are the ones
// Target returns, and the examples parse.
func TestInfoMatchesTarget(t *testing.T) {
	if err := rabbit.New().ValidateConfig(t.Context(), rabbit.SecretTypes[0], json.RawMessage(rabbit.ConfigExample)); err != nil {
		t.Errorf("ConfigExample: %v", err)
	}
	v := strings.Replace(rabbit.ValueExample, "…", "an-example-password", 1)
	tg, err := rabbit.New().Target(t.Context(), rotators.TargetRequest{SecretType: rabbit.SecretType, Config: json.RawMessage(rabbit.ConfigExample), Value: sensitive.Bytes(v)})
	if err != nil {
		t.Fatalf("Target(ValueExample): %v", err)
	}
	var names []string
	for _, f := range tg {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, rabbit.IdentityFields) {
		t.Errorf("Target fields %q, IdentityFields %q: want the same, in order", names, rabbit.IdentityFields)
	}
}
