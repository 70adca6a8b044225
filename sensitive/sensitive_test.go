package sensitive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
)

const canary = "CANARY-s3cr3t-value"

func TestBytesNeverPrints(t *testing.T) {
	b := Bytes(canary)
	type wrapper struct {
		Secret Bytes
		Name   string
	}
	w := wrapper{Secret: b, Name: "x"}
	js, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("msg", "value", b, "w", w)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("msg", "value", b)
	outs := []string{
		fmt.Sprint(b), fmt.Sprintf("%s %v %q %x %X %+v %#v %d", b, b, b, b, b, b, b, b),
		fmt.Sprintf("%v %+v %#v", w, w, w), b.String(), b.GoString(), string(js), logs.String(),
	}
	for _, o := range outs {
		if strings.Contains(o, canary) || strings.Contains(o, fmt.Sprintf("%x", canary)) {
			t.Errorf("printed the secret: %s", o)
		}
		if !strings.Contains(o, Redacted) {
			t.Errorf("output %q does not say %s", o, Redacted)
		}
	}
	if string(b.Reveal()) != canary {
		t.Errorf("Reveal = %q", b.Reveal())
	}
}

func TestSanitize(t *testing.T) {
	base := fs.ErrNotExist
	err := fmt.Errorf("login as bob with %s failed: %w", canary, base)
	clean := Sanitize(err, Bytes(canary), Bytes("ab"))
	if strings.Contains(clean.Error(), canary) {
		t.Fatalf("Sanitize left the value: %v", clean)
	}
	if !strings.Contains(clean.Error(), "login as bob with "+Redacted) {
		t.Errorf("Sanitize mangled the message: %v", clean)
	}
	if !errors.Is(clean, base) {
		t.Errorf("Sanitize broke errors.Is")
	}
	// The chain below cannot be walked to an error whose text holds it.
	inner := fmt.Errorf("driver said: password %s rejected", canary)
	outer := Sanitize(fmt.Errorf("set: %w", inner), Bytes(canary))
	for e := outer; e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), canary) {
			t.Fatalf("errors.Unwrap reaches the value: %q", e.Error())
		}
	}
	if !errors.Is(outer, inner) {
		t.Errorf("errors.Is lost the inner error")
	}
	if Sanitize(nil, Bytes(canary)) != nil {
		t.Errorf("Sanitize(nil) != nil")
	}
	plain := errors.New("nothing secret")
	if Sanitize(plain, Bytes(canary)) != plain {
		t.Errorf("Sanitize wrapped an error with nothing to remove")
	}
	// Short values are left alone rather than mangling words.
	if got := SanitizeString("a bad day", Bytes("a")); got != "a bad day" {
		t.Errorf("short value scrubbed: %q", got)
	}
}
