// Package sensitive holds the one primitive every rotary package may import:
// a byte slice for secret material that refuses to print itself, and a
// sanitizer that scrubs known secret values out of error text.
//
// A Bytes value formats as "[redacted]" under every fmt verb, in JSON and in
// slog, so a secret that slips into a log line or an error message shows up
// as that marker and never as its contents. Reading the contents is explicit:
// call Reveal.
package sensitive

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Redacted is what a Bytes value prints as.
const Redacted = "[redacted]"

// Bytes is secret material. Its zero value is empty.
type Bytes []byte

// Reveal returns the secret contents. Every call site that needs the
// plaintext says so by calling it.
func (b Bytes) Reveal() []byte { return []byte(b) }

// String implements fmt.Stringer.
func (Bytes) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Bytes) GoString() string { return Redacted }

// Format implements fmt.Formatter so that %x, %q, %v and %s all redact.
func (Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// MarshalJSON implements json.Marshaler.
func (Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Bytes) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer.
func (Bytes) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Len reports the length of the secret without revealing it.
func (b Bytes) Len() int { return len(b) }

// Equal reports whether two secrets are equal. It is not constant time;
// use crypto/subtle where timing matters.
func (b Bytes) Equal(o Bytes) bool { return bytes.Equal(b, o) }

// Wipe overwrites the contents with zeros. Go may have copied the bytes
// elsewhere; this is hygiene, not a guarantee.
func (b Bytes) Wipe() { clear(b) }

// Sanitize returns err with every occurrence of each non-empty value
// replaced by "[redacted]". The returned error keeps err's chain for
// errors.Is and errors.As, but its message never contains a value.
// Values shorter than 4 bytes are left alone: scrubbing them would mangle
// ordinary words without protecting anything.
func Sanitize(err error, values ...Bytes) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := SanitizeString(msg, values...)
	if clean == msg {
		return err
	}
	return &sanitized{msg: clean, err: err}
}

// SanitizeString replaces every occurrence of each value in s.
func SanitizeString(s string, values ...Bytes) string {
	for _, v := range values {
		if len(v) < 4 {
			continue
		}
		s = strings.ReplaceAll(s, string(v), Redacted)
	}
	return s
}

type sanitized struct {
	msg string
	err error
}

func (e *sanitized) Error() string { return e.msg }

// Is lets errors.Is match anything in the original chain. There is
// deliberately no Unwrap: the wrapped errors' own messages may still hold
// the values, and nothing should be able to walk down to them and print
// them.
func (e *sanitized) Is(target error) bool { return errors.Is(e.err, target) }
