package secrets

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"maps"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, wantErr string
	}{
		{"a", ""},
		{"app/db/primary", ""},
		{"A-z_0+9=.@/x", ""},
		{"a.b/.c/d..", ""},
		{"...", ""},
		{"/leading", `starts with "/"`},
		{"/", `starts with "/"`},
		{"trailing/", `segment 2 is empty`},
		{"a//b", `segment 2 is empty`},
		{".", `segment 1 is "."`},
		{"..", `segment 1 is ".."`},
		{"a/./b", `segment 2 is "."`},
		{"a/../../v1/tokens", `segment 2 is ".."`},
		{"app/..", `segment 2 is ".."`},
		{"x?y", `character '?' at position 2`},
		{strings.Repeat("n", 256), ""},
		{"", "invalid secret name: the name is empty"},
		{strings.Repeat("n", 257), "257 characters, the limit is 256"},
		{"a b", `invalid secret name "a b": character ' ' at position 2 is not allowed (use letters, digits and /_+=.@-)`},
		{"app:db", `character ':' at position 4`},
		{"é", `character 'é' at position 1`},
		{"ab\x00", `character '\x00' at position 3`},
		{"a\xffb", `byte 0xff at position 2`},
		{"a%2Fb", `character '%' at position 2`},
		{"a*", `character '*' at position 2`},
		{strings.Repeat("n", 300) + " ", `…: character ' ' at position 301`},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateName(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestValidateLookupName: names made before the segment rules are still
// looked up; characters and length are checked as before.
func TestValidateLookupName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"/lead", "a//b", "trail/", "..", "a/./b", "app/db"} {
		if err := ValidateLookupName(name); err != nil {
			t.Errorf("ValidateLookupName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "x?y", "a b", strings.Repeat("n", 257), "a\xff"} {
		if err := ValidateLookupName(name); err == nil {
			t.Errorf("ValidateLookupName(%q) = nil, want an error", name)
		}
	}
}

func TestValidType(t *testing.T) {
	t.Parallel()
	for _, typ := range KnownTypes() {
		if err := ValidType(typ); err != nil {
			t.Errorf("ValidType(%q) = %v, want nil", typ, err)
		}
	}
	if len(KnownTypes()) != 10 || KnownTypes()[0] != "generic" {
		t.Errorf("KnownTypes() = %v, want the 10 types, generic first", KnownTypes())
	}
	for typ, want := range map[string]string{
		"":         "secret type is empty (known types: generic, password, api-key",
		"Password": `unknown secret type "Password" (known types: generic, password`,
		"x509":     `unknown secret type "x509"`,
	} {
		if err := ValidType(typ); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidType(%q) = %v, want error containing %q", typ, err, want)
		}
	}
	if _, err := ValidateValue("nope", []byte("x")); err == nil || !strings.Contains(err.Error(), `unknown secret type "nope"`) {
		t.Errorf("ValidateValue(nope) = %v, want unknown type", err)
	}
}

// tvFixtures are keys and certificates made once for the tests.
type tvFixtures struct {
	pkcs8RSA, pkcs1RSA, pkcs8EC, secEC, ecWithParams, pkcs8Ed, pkcs8X25519, encrypted []byte
	cert, chain, certAndKey                                                           []byte
	notBefore, notAfter                                                               time.Time
}

var tvFix = sync.OnceValue(func() *tvFixtures {
	must := func(b []byte, err error) []byte {
		if err != nil {
			panic(err)
		}
		return b
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	f := &tvFixtures{}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	xKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	f.pkcs8RSA = pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rsaKey)))
	f.pkcs1RSA = pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	f.pkcs8EC = pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(ecKey)))
	f.secEC = pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ecKey)))
	f.ecWithParams = append(pemOf("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), f.secEC...)
	f.pkcs8Ed = pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(edKey)))
	f.pkcs8X25519 = pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(xKey)))
	f.encrypted = pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3})

	f.notBefore = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f.notAfter = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1001), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: f.notBefore, NotAfter: f.notAfter.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER := must(x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &ecKey.PublicKey, ecKey))
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		panic(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0xABCDEF), Subject: pkix.Name{CommonName: "db.example.com", Organization: []string{"Rotary"}},
		NotBefore: f.notBefore, NotAfter: f.notAfter, DNSNames: []string{"db.example.com"},
	}
	leafDER := must(x509.CreateCertificate(rand.Reader, leafTmpl, ca, &rsaKey.PublicKey, ecKey))
	f.cert = pemOf("CERTIFICATE", leafDER)
	f.chain = append(append([]byte{}, f.cert...), pemOf("CERTIFICATE", caDER)...)
	f.certAndKey = append(append([]byte{}, f.cert...), f.pkcs8EC...)
	return f
})

func tvB64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

type tvValueTest struct {
	typ, value string
	wantErr    string            // "" when valid
	wantMeta   map[string]string // checked when not nil
}

func tvValueTests() []tvValueTest {
	f := tvFix()
	jwt := func(header, payload string) string { return tvB64URL(header) + "." + tvB64URL(payload) + ".c2ln" }
	return []tvValueTest{
		// Size, for every type.
		{"generic", "", "generic: value is empty", nil},
		{"password", "", "password: value is empty", nil},
		{"generic", strings.Repeat("x", MaxValueSize), "", nil},
		{"generic", strings.Repeat("x", MaxValueSize+1), "generic: value is 65537 bytes, the limit is 65536 bytes", nil},
		{"key-value", strings.Repeat("x", MaxValueSize+1), "key-value: value is 65537 bytes, the limit is 65536 bytes", nil},

		{"generic", "\x00\xff\xfe binary", "", nil},
		{"generic", "anything\n", "", nil},

		{"password", "correct horse battery staple", "", nil},
		{"password", "пароль✓", "", nil},
		{"password", "x", "", nil},
		{"password", "ab\xffcd", "password: not valid UTF-8 (at byte 2)", nil},
		{"password", "abc\x00", "password: contains a NUL character (at byte 3)", nil},

		{"api-key", "sk_live_AbC123-._~!", "", nil},
		{"api-key", "abc def", "api-key: character at position 4 is whitespace", nil},
		{"api-key", "abc\x01", "api-key: character at position 4 is not printable ASCII", nil},
		{"api-key", "abcé", "api-key: character at position 4 is not printable ASCII", nil},
		{"api-key", "abcdef\n", "api-key: value ends with a newline", nil},

		{"basic-auth", `{"username":"u","password":"p"}`, "", nil},
		{"basic-auth", `{"username":"u"}`, `basic-auth: field "password" is missing`, nil},
		{"basic-auth", `{"username":"","password":"p"}`, `basic-auth: field "username": must not be empty`, nil},
		{"basic-auth", `{"username":"u","password":5}`, `basic-auth: field "password": must be a string, got a number`, nil},
		{"basic-auth", `{"username":"u","password":"p","realm":"x"}`, `basic-auth: unknown field "realm"`, nil},
		{"basic-auth", `{"username":"u","password":"p","Realm":"x"}`, `basic-auth: unknown field 3 (name not shown)`, nil},
		{"basic-auth", `{"username":"u","password":"p","password":"q"}`, `basic-auth: field "password" appears more than once`, nil},
		{"basic-auth", `["u","p"]`, `basic-auth: must be a JSON object, got a list`, nil},
		{"basic-auth", `u:p`, `basic-auth: not valid JSON (syntax error at byte 1)`, nil},
		{"basic-auth", `{"username":"u","password":"p"} {}`, `basic-auth: not valid JSON: data after the object`, nil},
		{"basic-auth", `{"username":"u","password":"p"`, `basic-auth: not valid JSON (unexpected end)`, nil},

		{"db-credentials", `{"engine":"postgres","host":"db","port":5432,"username":"app","password":"pw","dbname":"app"}`, "", map[string]string{"engine": "postgres"}},
		{"db-credentials", `{"engine":"mysql","host":"db","port":3306,"username":"app","password":"pw","dbname":"app","sslmode":"require","timeout":5,"tls":true}`, "", nil},
		{"db-credentials", `{"engine":"redis","host":"db","port":6379,"username":"default","password":"pw"}`, "", map[string]string{"engine": "redis"}},
		{"db-credentials", `{"engine":"redis","host":"db","port":6379,"username":"default","password":"pw","dbname":3}`, "", nil},
		{"db-credentials", `{"engine":"oracle","host":"db","port":1521,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "engine": must be one of postgres, mysql, redis`, nil},
		{"db-credentials", `{"host":"db","port":1521,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "engine" is missing (want one of postgres, mysql, redis)`, nil},
		{"db-credentials", `{"engine":"postgres","host":"","port":5432,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "host": must not be empty`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":"5432","username":"a","password":"p","dbname":"x"}`, `db-credentials: field "port": must be a number between 1 and 65535`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":0,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "port": must be a number between 1 and 65535`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":65536,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "port": must be a number between 1 and 65535`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":54.5,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "port": must be a number between 1 and 65535`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","username":"a","password":"p","dbname":"x"}`, `db-credentials: field "port" is missing`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":5432,"username":"a","password":"","dbname":"x"}`, `db-credentials: field "password": must not be empty`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":5432,"password":"p","dbname":"x"}`, `db-credentials: field "username" is missing`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":5432,"username":"a","password":"p"}`, `db-credentials: field "dbname" is missing (required for postgres)`, nil},
		{"db-credentials", `{"engine":"mysql","host":"db","port":5432,"username":"a","password":"p","dbname":1}`, `db-credentials: field "dbname": must be a string, got a number`, nil},
		{"db-credentials", `{"engine":"redis","host":"db","port":6379,"username":"a","password":"p","dbname":-1}`, `db-credentials: field "dbname": must be a string or a database number`, nil},
		{"db-credentials", `{"engine":"postgres","host":["db"],"port":5432,"username":"a","password":"p","dbname":"x"}`, `db-credentials: field "host": must be a string, got a list`, nil},
		{"db-credentials", `{"engine":"postgres","host":"db","port":5432,"username":"a","password":"p","dbname":"x","options":{"a":1}}`, `db-credentials: field "options": must be a string, number or boolean, got an object`, nil},

		{"key-value", `{"API_KEY":"k","url":"https://x"}`, "", nil},
		{"key-value", `{}`, "key-value: the object has no fields", nil},
		{"key-value", `{"a":"x","b":2}`, `key-value: field "b": must be a string, got a number`, nil},
		{"key-value", `{"a":"x","B":null}`, `key-value: field 2 (name not shown): must be a string, got null`, nil},
		{"key-value", `{"":"x"}`, `key-value: field 1: the name is empty`, nil},
		{"key-value", "{\"a\":\"\xff\"}", `key-value: not valid JSON: invalid UTF-8 at byte 6`, nil},
		{"key-value", `"str"`, `key-value: must be a JSON object, got a string`, nil},

		{"private-key", string(f.pkcs8RSA), "", map[string]string{"algorithm": "RSA", "bits": "2048"}},
		{"private-key", string(f.pkcs1RSA), "", map[string]string{"algorithm": "RSA", "bits": "2048"}},
		{"private-key", string(f.pkcs8EC), "", map[string]string{"algorithm": "ECDSA", "bits": "256"}},
		{"private-key", string(f.secEC), "", map[string]string{"algorithm": "ECDSA", "bits": "256"}},
		{"private-key", string(f.ecWithParams), "", nil},
		{"private-key", string(f.pkcs8Ed), "", map[string]string{"algorithm": "Ed25519", "bits": "256"}},
		{"private-key", string(f.pkcs8X25519), "", map[string]string{"algorithm": "X25519"}},
		{"private-key", "not a key", "private-key: no PEM block found (want -----BEGIN PRIVATE KEY-----)", nil},
		{"private-key", string(f.encrypted), "private-key: the key is encrypted", nil},
		{"private-key", strings.Replace(string(f.pkcs1RSA), "-----\n", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n", 1), "private-key: the key is encrypted", nil},
		{"private-key", string(f.cert), "private-key: PEM block 1 is a certificate", nil},
		{"private-key", strings.Replace(string(f.pkcs1RSA), "RSA PRIVATE KEY", "EC PRIVATE KEY", 2), `private-key: the "EC PRIVATE KEY" block does not parse as a SEC 1 (EC) private key`, nil},
		{"private-key", strings.Replace(string(f.pkcs8EC), "PRIVATE KEY", "FOO KEY", 2), "private-key: PEM block 1 is of an unsupported type", nil},
		{"private-key", string(f.pkcs8EC) + string(f.pkcs8Ed), "private-key: more than one private key", nil},
		{"private-key", "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n" + string(f.pkcs8EC), "private-key: malformed PEM: 2 blocks begin but only 1 decode", nil},
		{"private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "private-key: OpenSSH key format is not supported", nil},

		{"symmetric-key", base64.StdEncoding.EncodeToString(make([]byte, 32)), "", map[string]string{"bits": "256"}},
		{"symmetric-key", base64.StdEncoding.EncodeToString(make([]byte, 16)) + "\n", "", map[string]string{"bits": "128"}},
		{"symmetric-key", base64.StdEncoding.EncodeToString(make([]byte, 24)), "", map[string]string{"bits": "192"}},
		{"symmetric-key", base64.StdEncoding.EncodeToString(make([]byte, 64)), "", map[string]string{"bits": "512"}},
		{"symmetric-key", base64.StdEncoding.EncodeToString(make([]byte, 20)), "symmetric-key: decodes to 20 bytes, want 16, 24, 32 or 64", nil},
		{"symmetric-key", base64.RawStdEncoding.EncodeToString(make([]byte, 32)), "symmetric-key: not valid base64 (standard alphabet with padding)", nil},
		{"symmetric-key", base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xff", 32))), "symmetric-key: not valid base64", nil},
		{"symmetric-key", string(make([]byte, 32)), "symmetric-key: not valid base64", nil},

		{"certificate", string(f.cert), "", map[string]string{
			"not_before": "2025-01-02T03:04:05Z", "not_after": "2026-01-02T03:04:05Z",
			"subject": "CN=db.example.com,O=Rotary", "issuer": "CN=Test CA", "serial": "ABCDEF",
		}},
		{"certificate", string(f.chain), "", map[string]string{"not_after": "2026-01-02T03:04:05Z"}},
		{"certificate", "\n" + string(f.chain) + "\n\n", "", nil},
		{"certificate", string(f.certAndKey), `certificate: PEM block 2 is "PRIVATE KEY", not a CERTIFICATE`, nil},
		{"certificate", "hello", "certificate: no PEM block found (want -----BEGIN CERTIFICATE-----)", nil},
		{"certificate", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), "certificate: PEM block 1 does not parse as an X.509 certificate", nil},

		{"jwt", jwt(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"1","exp":1767225600}`), "", map[string]string{"algorithm": "HS256", "expires_at": "2026-01-01T00:00:00Z"}},
		{"jwt", jwt(`{"alg":"RS256"}`, `{"sub":"1"}`), "", map[string]string{"algorithm": "RS256"}},
		{"jwt", tvB64URL(`{"alg":"none"}`) + "." + tvB64URL(`{}`) + ".", "", nil},
		{"jwt", "abc.def", "jwt: has 2 dot-separated segments, want 3", nil},
		{"jwt", "a.b.c.d.e", "jwt: has 5 dot-separated segments, want 3", nil},
		{"jwt", jwt(`{"typ":"JWT"}`, `{}`), `jwt: the header: field "alg" is missing`, nil},
		{"jwt", jwt(`{"alg":""}`, `{}`), `jwt: the header: field "alg": must not be empty`, nil},
		{"jwt", jwt(`not json`, `{}`), `jwt: the header: not valid JSON (syntax error at byte 2)`, nil},
		{"jwt", jwt(`{"alg":"HS256"}`, `[1]`), `jwt: the payload: must be a JSON object, got a list`, nil},
		{"jwt", jwt(`{"alg":"HS256"}`, `{"exp":"tomorrow"}`), `jwt: the payload: claim "exp" must be a number of seconds since 1970`, nil},
		{"jwt", "e30=.e30.", "jwt: the header is not valid base64url (unpadded)", nil},
		{"jwt", "e30.e30.a+b", "jwt: the signature is not valid base64url", nil},
		{"jwt", jwt(`{"alg":"HS256"}`, `{}`) + "\n", "jwt: value ends with a newline", nil},
	}
}

func TestValidateValue(t *testing.T) {
	t.Parallel()
	for _, tt := range tvValueTests() {
		meta, err := ValidateValue(tt.typ, []byte(tt.value))
		short := tt.value
		if len(short) > 60 {
			short = short[:60] + "…"
		}
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateValue(%s, %q) = %v, want nil", tt.typ, short, err)
				continue
			}
			for k, v := range tt.wantMeta {
				if meta[k] != v {
					t.Errorf("ValidateValue(%s, %q) meta[%q] = %q, want %q (meta %v)", tt.typ, short, k, meta[k], v, meta)
				}
			}
			continue
		}
		if err == nil {
			t.Errorf("ValidateValue(%s, %q) = nil, want error containing %q", tt.typ, short, tt.wantErr)
		} else if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateValue(%s, %q) = %q, want it to contain %q", tt.typ, short, err, tt.wantErr)
		} else if meta != nil {
			t.Errorf("ValidateValue(%s, %q) returned meta %v with an error", tt.typ, short, meta)
		}
	}
}

// tvCanary returns a random canary of 27 uppercase letters and digits,
// which is never shown as a field name.
func tvCanary() string { return "Q" + rand.Text() }

// tvLeaks reports whether msg contains any 8 consecutive bytes of canary,
// or text of a standard-library error, several of which quote a character
// or more of their input.
func tvLeaks(msg, canary string) bool {
	for _, s := range []string{"invalid character", "looking for", "illegal base64", "x509:", "asn1:", "json:", "pem:"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	for i := 0; i+8 <= len(canary); i++ {
		if strings.Contains(msg, canary[i:i+8]) {
			return true
		}
	}
	return false
}

// TestValueErrorsNeverContainValue puts a canary in every position an
// invalid value can carry text and checks no error repeats any of it.
func TestValueErrorsNeverContainValue(t *testing.T) {
	t.Parallel()
	c := tvCanary()
	b64 := base64.StdEncoding.EncodeToString([]byte(c))
	templates := []string{
		`C`, `C C`, `C\n`, `"C"`, `{"C"}`, `{"C":1}`, `{"C":"x"}`, `{"password":C}`, `{"password":"C"`, `{"password":"C"} C`,
		`{"username":"u","password":"p","C":"x"}`, `{"username":"u","password":"C","password":"C"}`,
		`{"username":"u","password":{"C":1}}`, `{"username":["C"],"password":"x"}`,
		`{"engine":"C","host":"h","port":1,"username":"u","password":"p","dbname":"d"}`,
		`{"engine":"postgres","host":"h","port":C,"username":"u","password":"p","dbname":"d"}`,
		`{"engine":"postgres","host":"h","port":"C","username":"u","password":"p","dbname":"d"}`,
		`{"engine":"postgres","host":"h","port":1,"username":"u","password":"C","dbname":null}`,
		`{"engine":"redis","host":"h","port":1,"username":"u","password":"C","dbname":"C"}`,
		`{"engine":"postgres","host":"h","port":1,"username":"u","password":"p","dbname":"d","C":{}}`,
		`{"k":"v","C":5}`, `{"C":"v","C":"w"}`,
		"-----BEGIN C-----\nAAAA\n-----END C-----\n",
		"-----BEGIN PRIVATE KEY-----\n" + b64 + "\n-----END PRIVATE KEY-----\n",
		"-----BEGIN CERTIFICATE-----\n" + b64 + "\n-----END CERTIFICATE-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\n" + b64 + "\n-----END RSA PRIVATE KEY-----\n",
		b64, b64 + "C", "C.C.C", tvB64URL(`{"alg":"C"}`) + "." + tvB64URL(`{"exp":"C"}`) + ".C",
		tvB64URL(`{"alg":"HS256"}`) + "." + tvB64URL(`{"exp":"C"}`) + ".",
		tvB64URL(`{"alg":"HS256","C":C}`) + "." + tvB64URL(`{}`) + ".",
		"C\x00", "C\xff",
	}
	for _, tmpl := range templates {
		value := strings.ReplaceAll(tmpl, "C", c)
		for _, typ := range KnownTypes() {
			if _, err := ValidateValue(typ, []byte(value)); err != nil && tvLeaks(err.Error(), c) {
				t.Errorf("ValidateValue(%s, template %q) error leaks the value: %v", typ, tmpl, err)
			}
			if _, err := Field([]byte(value), "password"); err != nil && tvLeaks(err.Error(), c) {
				t.Errorf("Field(template %q) error leaks the value: %v", tmpl, err)
			}
		}
	}
}

func TestField(t *testing.T) {
	t.Parallel()
	value := []byte(`{"engine":"postgres","host":"db.local","port":5432,"ratio":1.50,"tls":true,"none":null,"opts":{"a": [1, 2]},"u":"\u00e9\n"}`)
	for key, want := range map[string]string{
		"engine": "postgres", "host": "db.local", "port": "5432", "ratio": "1.50", "tls": "true",
		"none": "", "opts": `{"a":[1,2]}`, "u": "é\n",
	} {
		got, err := Field(value, key)
		if err != nil || got != want {
			t.Errorf("Field(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, tt := range []struct{ value, key, wantErr string }{
		{`{"a":"b"}`, "missing", `field "missing" not found in the value`},
		{`plain text`, "a", `field "a": the value is not a usable JSON object: not valid JSON`},
		{`["a"]`, "a", `field "a": the value is not a usable JSON object: must be a JSON object, got a list`},
		{`{"a":"b","a":"c"}`, "a", `field "a" appears more than once`},
	} {
		if _, err := Field([]byte(tt.value), tt.key); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Field(%s, %q) = %v, want error containing %q", tt.value, tt.key, err, tt.wantErr)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "app/db", "a b", "", "é", strings.Repeat("n", 257), "a\xff", "x@y.z+=_-/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		ok := len(name) >= 1 && len(name) <= 256
		for i := 0; i < len(name); i++ {
			c := name[i]
			ok = ok && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/_+=.@-", c) >= 0)
		}
		for _, seg := range strings.Split(name, "/") {
			ok = ok && seg != "" && seg != "." && seg != ".."
		}
		if ok != (err == nil) {
			t.Fatalf("ValidateName(%q) = %v, but the name is valid: %v", name, err, ok)
		}
	})
}

// FuzzValidateValue checks ValidateValue never panics and that a random
// canary placed anywhere in the value (between the fuzzed prefix and
// suffix) never shows up in an error, in whole or in part.
func FuzzValidateValue(f *testing.F) {
	types := KnownTypes()
	for _, tt := range tvValueTests() {
		if len(tt.value) > 4096 {
			continue
		}
		i := 0
		for ; i < len(types) && types[i] != tt.typ; i++ {
		}
		// Seed both the whole value and the value split around a canary.
		f.Add(uint8(i), []byte(tt.value), []byte{})
		if half := len(tt.value) / 2; half > 0 {
			f.Add(uint8(i), []byte(tt.value[:half]), []byte(tt.value[half:]))
		}
	}
	f.Fuzz(func(t *testing.T, ti uint8, prefix, suffix []byte) {
		typ := types[int(ti)%len(types)]
		if _, err := ValidateValue(typ, append(append([]byte{}, prefix...), suffix...)); err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
		c := tvCanary()
		value := []byte(string(prefix) + c + string(suffix))
		meta, err := ValidateValue(typ, value)
		if err != nil {
			if tvLeaks(err.Error(), c) {
				t.Fatalf("ValidateValue(%s) error leaks the canary: %v", typ, err)
			}
			if meta != nil {
				t.Fatalf("ValidateValue(%s) returned meta with an error", typ)
			}
		}
		if _, err := Field(value, "password"); err != nil && tvLeaks(err.Error(), c) {
			t.Fatalf("Field error leaks the canary: %v", err)
		}
		_ = maps.Clone(meta)
	})
}
