package random

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

func create(t *testing.T, typ, cfg string) string {
	t.Helper()
	resp, err := Rotator{}.Create(context.Background(), rotators.CreateRequest{
		Secret: rotators.Secret{Name: "x", Type: typ}, Config: json.RawMessage(cfg),
	})
	if err != nil {
		t.Fatalf("Create(%s, %s): %v", typ, cfg, err)
	}
	return string(resp.Value.Reveal())
}

func TestCreate(t *testing.T) {
	if p := create(t, "password", `{"password":{"length":40}}`); len(p) != 40 {
		t.Errorf("password length = %d, want 40", len(p))
	}
	k := create(t, "api-key", `{"prefix":"sk_","bytes":24}`)
	if !strings.HasPrefix(k, "sk_") || len(k) != 3+32 {
		t.Errorf("api-key = %d chars with prefix %q", len(k), k[:3])
	}
	s := create(t, "symmetric-key", `{"bytes":16}`)
	if b, err := base64.StdEncoding.DecodeString(s); err != nil || len(b) != 16 {
		t.Errorf("symmetric-key decodes to %d bytes, %v", len(b), err)
	}
	// Two values differ.
	if a, b := create(t, "password", ``), create(t, "password", ``); a == b {
		t.Errorf("two generated passwords are equal")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ typ, cfg, want string }{
		{"password", `{"lenght":3}`, `unknown field "lenght"`},
		{"password", `{"password":{"length":4}}`, "password.length"},
		{"symmetric-key", `{"bytes":20}`, "bytes 20"},
		{"api-key", `{"prefix":"a b"}`, "prefix"},
		{"db-credentials", ``, "not db-credentials"},
	} {
		err := Rotator{}.ValidateConfig(context.Background(), tc.typ, json.RawMessage(tc.cfg))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateConfig(%s, %s) = %v, want %q", tc.typ, tc.cfg, err, tc.want)
		}
	}
}
