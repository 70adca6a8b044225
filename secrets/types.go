package secrets

// Secret names, types and the validation of values by type.
//
// Validation errors name the type and what is wrong and never contain the
// value, not even part of it: JSON, PEM, base64 and X.509 errors from the
// standard library are never passed through, because several of them quote
// the input. Field names of JSON values are shown only when they look like
// ordinary field names (lowercase letters, digits and '_', up to 32
// characters); any other name might be a value pasted in the wrong place,
// so it is referred to by position.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxValueSize is the largest secret value, in bytes.
const MaxValueSize = 64 << 10

const (
	tvMaxNameLength = 256
	tvNameCharset   = "/_+=.@-"
)

// ValidateName checks a secret name: 1 to 256 characters, each an ASCII
// letter or digit or one of /_+=.@-, and as a path of segments separated
// by "/": no leading "/", no empty segment ("a//b", a trailing "/") and no
// "." or ".." segment, so that no name reads as a relative path in a URL,
// a file name or a log.
func ValidateName(name string) error {
	if err := tvNameChars(name); err != nil {
		return err
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("invalid secret name %s: it starts with \"/\" (write app/db, not /app/db)", tvQuoteName(name))
	}
	for i, seg := range strings.Split(name, "/") {
		switch seg {
		case "":
			return fmt.Errorf("invalid secret name %s: segment %d is empty (no \"//\" and no trailing \"/\")", tvQuoteName(name), i+1)
		case ".", "..":
			return fmt.Errorf("invalid secret name %s: segment %d is %q (no \".\" or \"..\" segments)", tvQuoteName(name), i+1, seg)
		}
	}
	return nil
}

// ValidateLookupName checks a name given to find an existing secret: the
// characters and length of ValidateName without its segment rules, so that
// a secret created before those rules (say "/app//db") can still be
// described, read, rotated and deleted. New names go through ValidateName.
func ValidateLookupName(name string) error { return tvNameChars(name) }

// tvNameChars checks a name's length and characters.
func tvNameChars(name string) error {
	if name == "" {
		return errors.New("invalid secret name: the name is empty")
	}
	pos := 0
	for i, c := range name {
		pos++
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune(tvNameCharset, c) {
			continue
		}
		what := fmt.Sprintf("character %q", c)
		if c == utf8.RuneError {
			what = fmt.Sprintf("byte 0x%02x", name[i])
		}
		return fmt.Errorf("invalid secret name %s: %s at position %d is not allowed (use letters, digits and %s)",
			tvQuoteName(name), what, pos, tvNameCharset)
	}
	if len(name) > tvMaxNameLength {
		return fmt.Errorf("invalid secret name %s: %d characters, the limit is %d", tvQuoteName(name), len(name), tvMaxNameLength)
	}
	return nil
}

// tvQuoteName quotes a name for an error, shortening a long one.
func tvQuoteName(name string) string {
	if utf8.RuneCountInString(name) > 64 {
		r := []rune(name)
		return strconv.Quote(string(r[:60])) + "…"
	}
	return strconv.Quote(name)
}

var tvTypes = []string{
	"generic", "password", "api-key", "basic-auth", "db-credentials",
	"key-value", "private-key", "symmetric-key", "certificate", "jwt",
}

// KnownTypes returns the secret types, "generic" (the default) first.
func KnownTypes() []string { return slices.Clone(tvTypes) }

// ValidType checks a secret type. The empty string is not a type; callers
// default it to "generic" first.
func ValidType(t string) error {
	if slices.Contains(tvTypes, t) {
		return nil
	}
	if t == "" {
		return fmt.Errorf("secret type is empty (known types: %s)", strings.Join(tvTypes, ", "))
	}
	return fmt.Errorf("unknown secret type %q (known types: %s)", t, strings.Join(tvTypes, ", "))
}

// ValidateValue checks a value for a secret of type typ: 1 byte to
// MaxValueSize, and the shape of the type. It returns metadata that may be
// shown to anyone allowed to describe the secret, never part of the value:
//
//	db-credentials  engine
//	private-key     algorithm, bits
//	symmetric-key   bits
//	certificate     not_before, not_after (RFC 3339, UTC), subject, issuer,
//	                serial (hex) of the first certificate
//	jwt             algorithm; expires_at (RFC 3339, UTC) when it has "exp"
//
// Errors name the type and the problem and never contain the value.
func ValidateValue(typ string, value []byte) (meta map[string]string, err error) {
	if err := ValidType(typ); err != nil {
		return nil, err
	}
	if len(value) == 0 {
		return nil, fmt.Errorf("%s: value is empty", typ)
	}
	if len(value) > MaxValueSize {
		return nil, fmt.Errorf("%s: value is %d bytes, the limit is %d bytes", typ, len(value), MaxValueSize)
	}
	switch typ {
	case "password":
		err = tvPassword(value)
	case "api-key":
		err = tvAPIKey(value)
	case "basic-auth":
		err = tvBasicAuth(value)
	case "db-credentials":
		meta, err = tvDBCredentials(value)
	case "key-value":
		err = tvKeyValue(value)
	case "private-key":
		meta, err = tvPrivateKey(value)
	case "symmetric-key":
		meta, err = tvSymmetricKey(value)
	case "certificate":
		meta, err = tvCertificate(value)
	case "jwt":
		meta, err = tvJWT(value)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", typ, err)
	}
	return meta, nil
}

func tvPassword(v []byte) error {
	if i := tvInvalidUTF8(v); i >= 0 {
		return fmt.Errorf("not valid UTF-8 (at byte %d)", i)
	}
	if i := bytes.IndexByte(v, 0); i >= 0 {
		return fmt.Errorf("contains a NUL character (at byte %d)", i)
	}
	return nil
}

// tvInvalidUTF8 returns the offset of the first invalid UTF-8 sequence, or
// -1.
func tvInvalidUTF8(v []byte) int {
	for i := 0; i < len(v); {
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

func tvAPIKey(v []byte) error {
	if err := tvTrailingNewline(v); err != nil {
		return err
	}
	for i, c := range v {
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			return fmt.Errorf("character at position %d is whitespace (an API key is printable ASCII without whitespace)", i+1)
		case c < 0x21 || c > 0x7e:
			return fmt.Errorf("character at position %d is not printable ASCII (an API key is printable ASCII without whitespace)", i+1)
		}
	}
	return nil
}

func tvTrailingNewline(v []byte) error {
	if len(v) > 0 && v[len(v)-1] == '\n' {
		return errors.New("value ends with a newline (was it read from a file saved with one?)")
	}
	return nil
}

// tvMember is one top-level field of a JSON object value.
type tvMember struct {
	key string
	raw json.RawMessage
}

// tvObject parses a JSON object, refusing invalid UTF-8, duplicate fields
// and trailing data. Its errors never quote the input.
func tvObject(v []byte) ([]tvMember, error) {
	if i := tvInvalidUTF8(v); i >= 0 {
		return nil, fmt.Errorf("not valid JSON: invalid UTF-8 at byte %d", i)
	}
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return nil, tvJSONError(err, d)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("must be a JSON object, got %s", tvKindOfToken(tok))
	}
	var ms []tvMember
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, tvJSONError(err, d)
		}
		key, _ := tok.(string) // the decoder guarantees a string here
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, tvJSONError(err, d)
		}
		if seen[key] {
			return nil, fmt.Errorf("%s appears more than once", tvFieldName(key, len(ms)))
		}
		seen[key] = true
		ms = append(ms, tvMember{key: key, raw: raw})
	}
	if _, err := d.Token(); err != nil { // the closing '}'
		return nil, tvJSONError(err, d)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("not valid JSON: data after the object at byte %d", d.InputOffset())
	}
	return ms, nil
}

// tvJSONError describes a decoding error by position only: the standard
// library's messages can quote the input.
func tvJSONError(err error, d *json.Decoder) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("not valid JSON (syntax error at byte %d)", syn.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not valid JSON (unexpected end)")
	default:
		return fmt.Errorf("not valid JSON (error at byte %d)", d.InputOffset())
	}
}

func tvKindOfToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "a list"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return "null"
	}
}

// tvKind names the JSON kind of a raw value.
func tvKind(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// tvFieldName names field i (from 0) of a JSON value for an error, quoting
// the name only when it looks like an ordinary field name.
func tvFieldName(key string, i int) string {
	ok := len(key) > 0 && len(key) <= 32 && 'a' <= key[0] && key[0] <= 'z'
	for j := 0; ok && j < len(key); j++ {
		c := key[j]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_'
	}
	if ok {
		return fmt.Sprintf("field %q", key)
	}
	return fmt.Sprintf("field %d (name not shown)", i+1)
}

// tvString returns a JSON string's contents, or false.
func tvString(raw json.RawMessage) (string, bool) {
	if tvKind(raw) != "a string" {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// tvFields indexes an object's members by name.
func tvFields(ms []tvMember) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(ms))
	for _, f := range ms {
		m[f.key] = f.raw
	}
	return m
}

// tvRequireString checks that a required field is a non-empty string.
func tvRequireString(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", fmt.Errorf("field %q is missing", name)
	}
	s, ok := tvString(raw)
	if !ok {
		return "", fmt.Errorf("field %q: must be a string, got %s", name, tvKind(raw))
	}
	if s == "" {
		return "", fmt.Errorf("field %q: must not be empty", name)
	}
	return s, nil
}

func tvBasicAuth(v []byte) error {
	ms, err := tvObject(v)
	if err != nil {
		return err
	}
	for i, f := range ms {
		if f.key != "username" && f.key != "password" {
			return fmt.Errorf(`unknown %s (a basic-auth value has only "username" and "password")`, tvFieldName(f.key, i))
		}
	}
	fields := tvFields(ms)
	for _, name := range []string{"username", "password"} {
		if _, err := tvRequireString(fields, name); err != nil {
			return err
		}
	}
	return nil
}

var tvEngines = []string{"postgres", "mysql", "redis"}

func tvDBCredentials(v []byte) (map[string]string, error) {
	ms, err := tvObject(v)
	if err != nil {
		return nil, err
	}
	fields := tvFields(ms)
	engine, err := tvRequireString(fields, "engine")
	if err != nil {
		return nil, fmt.Errorf("%w (want one of %s)", err, strings.Join(tvEngines, ", "))
	}
	if !slices.Contains(tvEngines, engine) {
		return nil, fmt.Errorf(`field "engine": must be one of %s`, strings.Join(tvEngines, ", "))
	}
	if _, err := tvRequireString(fields, "host"); err != nil {
		return nil, err
	}
	raw, ok := fields["port"]
	if !ok {
		return nil, errors.New(`field "port" is missing`)
	}
	if p, err := strconv.ParseInt(string(raw), 10, 64); tvKind(raw) != "a number" || err != nil || p < 1 || p > 65535 {
		return nil, errors.New(`field "port": must be a number between 1 and 65535`)
	}
	for _, name := range []string{"username", "password"} {
		if _, err := tvRequireString(fields, name); err != nil {
			return nil, err
		}
	}
	if raw, ok := fields["dbname"]; !ok && engine != "redis" {
		return nil, fmt.Errorf(`field "dbname" is missing (required for %s)`, engine)
	} else if ok {
		s, isString := tvString(raw)
		n, err := strconv.ParseInt(string(raw), 10, 64)
		isIndex := engine == "redis" && tvKind(raw) == "a number" && err == nil && n >= 0
		switch {
		case isString && s == "":
			return nil, errors.New(`field "dbname": must not be empty`)
		case !isString && !isIndex && engine == "redis":
			return nil, errors.New(`field "dbname": must be a string or a database number`)
		case !isString && !isIndex:
			return nil, fmt.Errorf(`field "dbname": must be a string, got %s`, tvKind(raw))
		}
	}
	known := []string{"engine", "host", "port", "username", "password", "dbname"}
	for i, f := range ms {
		if slices.Contains(known, f.key) {
			continue
		}
		switch tvKind(f.raw) {
		case "a string", "a number", "a boolean":
		default:
			return nil, fmt.Errorf("%s: must be a string, number or boolean, got %s", tvFieldName(f.key, i), tvKind(f.raw))
		}
	}
	return map[string]string{"engine": engine}, nil
}

func tvKeyValue(v []byte) error {
	ms, err := tvObject(v)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return errors.New("the object has no fields")
	}
	for i, f := range ms {
		if f.key == "" {
			return fmt.Errorf("field %d: the name is empty", i+1)
		}
		if _, ok := tvString(f.raw); !ok {
			return fmt.Errorf("%s: must be a string, got %s", tvFieldName(f.key, i), tvKind(f.raw))
		}
	}
	return nil
}

// tvPEMTypes are block types that may be named in errors; any other type
// came from the value and is not shown.
var tvPEMTypes = []string{
	"CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
	"OPENSSH PRIVATE KEY", "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST",
	"EC PARAMETERS", "X509 CRL", "TRUSTED CERTIFICATE", "DSA PRIVATE KEY",
}

func tvPEMType(t string) string {
	if slices.Contains(tvPEMTypes, t) {
		return strconv.Quote(t)
	}
	return "of an unsupported type"
}

// tvPEMBlocks decodes every PEM block and refuses a value with none or with
// a malformed one (pem.Decode silently skips those).
func tvPEMBlocks(v []byte, want string) ([]*pem.Block, error) {
	var blocks []*pem.Block
	for rest := v; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no PEM block found (want -----BEGIN %s-----)", want)
	}
	if n := bytes.Count(v, []byte("-----BEGIN ")); n != len(blocks) {
		return nil, fmt.Errorf("malformed PEM: %d blocks begin but only %d decode", n, len(blocks))
	}
	return blocks, nil
}

func tvPrivateKey(v []byte) (map[string]string, error) {
	blocks, err := tvPEMBlocks(v, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	var key *pem.Block
	for i, b := range blocks {
		switch b.Type {
		case "EC PARAMETERS":
			continue // openssl ecparam -genkey writes these beside the key
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if key != nil {
				return nil, errors.New("more than one private key (store one key per secret)")
			}
			if _, ok := b.Headers["Proc-Type"]; ok {
				return nil, errors.New("the key is encrypted (store it unencrypted; rotary encrypts it)")
			}
			key = b
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted (store it unencrypted; rotary encrypts it)")
		case "OPENSSH PRIVATE KEY":
			return nil, errors.New("OpenSSH key format is not supported (convert it with ssh-keygen -p -m PKCS8)")
		case "CERTIFICATE":
			return nil, fmt.Errorf("PEM block %d is a certificate (store certificates as type certificate)", i+1)
		default:
			return nil, fmt.Errorf("PEM block %d is %s (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", i+1, tvPEMType(b.Type))
		}
	}
	if key == nil {
		return nil, errors.New("no private key block found")
	}
	var k any
	switch key.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(key.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(key.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(key.Bytes)
	}
	if err != nil {
		format := map[string]string{"PRIVATE KEY": "PKCS#8", "RSA PRIVATE KEY": "PKCS#1", "EC PRIVATE KEY": "SEC 1 (EC)"}[key.Type]
		return nil, fmt.Errorf("the %q block does not parse as a %s private key", key.Type, format)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return map[string]string{"algorithm": "RSA", "bits": strconv.Itoa(k.N.BitLen())}, nil
	case *ecdsa.PrivateKey:
		return map[string]string{"algorithm": "ECDSA", "bits": strconv.Itoa(k.Curve.Params().BitSize)}, nil
	case ed25519.PrivateKey:
		return map[string]string{"algorithm": "Ed25519", "bits": "256"}, nil
	case *ecdh.PrivateKey:
		return map[string]string{"algorithm": fmt.Sprint(k.Curve())}, nil
	default:
		return map[string]string{"algorithm": "unknown"}, nil
	}
}

func tvSymmetricKey(v []byte) (map[string]string, error) {
	// The standard decoder ignores \r and \n, so a trailing newline is fine.
	key, err := base64.StdEncoding.Strict().DecodeString(string(v))
	if err != nil {
		return nil, errors.New("not valid base64 (standard alphabet with padding)")
	}
	defer clear(key)
	switch len(key) {
	case 16, 24, 32, 64:
		return map[string]string{"bits": strconv.Itoa(8 * len(key))}, nil
	}
	return nil, fmt.Errorf("decodes to %d bytes, want 16, 24, 32 or 64", len(key))
}

func tvCertificate(v []byte) (map[string]string, error) {
	blocks, err := tvPEMBlocks(v, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	var leaf *x509.Certificate
	for i, b := range blocks {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %s, not a CERTIFICATE (store keys as type private-key)", i+1, tvPEMType(b.Type))
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d does not parse as an X.509 certificate", i+1)
		}
		if leaf == nil {
			leaf = c
		}
	}
	return map[string]string{
		"not_before": leaf.NotBefore.UTC().Format(time.RFC3339),
		"not_after":  leaf.NotAfter.UTC().Format(time.RFC3339),
		"subject":    leaf.Subject.String(),
		"issuer":     leaf.Issuer.String(),
		"serial":     fmt.Sprintf("%X", leaf.SerialNumber),
	}, nil
}

func tvJWT(v []byte) (map[string]string, error) {
	if err := tvTrailingNewline(v); err != nil {
		return nil, err
	}
	parts := bytes.Split(v, []byte("."))
	if len(parts) != 3 {
		return nil, fmt.Errorf("has %d dot-separated segments, want 3 (header.payload.signature)", len(parts))
	}
	names := []string{"header", "payload", "signature"}
	dec := make([][]byte, 3)
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(string(p))
		if err != nil {
			return nil, fmt.Errorf("the %s is not valid base64url (unpadded)", names[i])
		}
		dec[i] = b
	}
	header, err := tvObject(dec[0])
	if err != nil {
		return nil, fmt.Errorf("the header: %w", err)
	}
	alg, err := tvRequireString(tvFields(header), "alg")
	if err != nil {
		return nil, fmt.Errorf("the header: %w", err)
	}
	claims, err := tvObject(dec[1])
	if err != nil {
		return nil, fmt.Errorf("the payload: %w", err)
	}
	meta := map[string]string{}
	if slices.Contains(tvAlgs, alg) {
		meta["algorithm"] = alg
	}
	if raw, ok := tvFields(claims)["exp"]; ok {
		exp, err := strconv.ParseFloat(string(raw), 64)
		if tvKind(raw) != "a number" || err != nil || math.IsInf(exp, 0) || exp < 0 || exp > 253402300799 {
			return nil, errors.New(`the payload: claim "exp" must be a number of seconds since 1970`)
		}
		meta["expires_at"] = time.Unix(int64(exp), 0).UTC().Format(time.RFC3339)
	}
	return meta, nil
}

// tvAlgs are the JWS algorithms worth recording in metadata; anything else
// is not shown, as it came from the value.
var tvAlgs = []string{
	"none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
	"PS256", "PS384", "PS512", "EdDSA", "ES256K",
}

// Field returns one top-level field of a JSON object value as text, for
// `get --field` and `NAME#field` references: a string as its contents, a
// number or boolean as written, null as "", an object or list as compact
// JSON. The error says whether the value is not a JSON object or the field
// is missing, and never contains the value.
func Field(value []byte, key string) (string, error) {
	ms, err := tvObject(value)
	if err != nil {
		return "", fmt.Errorf("field %q: the value is not a usable JSON object: %w", key, err)
	}
	for _, f := range ms {
		if f.key != key {
			continue
		}
		switch tvKind(f.raw) {
		case "a string":
			s, _ := tvString(f.raw)
			return s, nil
		case "null":
			return "", nil
		case "an object", "a list":
			var b bytes.Buffer
			if err := json.Compact(&b, f.raw); err != nil {
				return "", fmt.Errorf("field %q: not valid JSON", key)
			}
			return b.String(), nil
		default:
			return string(f.raw), nil
		}
	}
	return "", fmt.Errorf("field %q not found in the value", key)
}
