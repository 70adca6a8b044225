package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok, id, hash, err := NewToken()
		if err != nil {
			t.Fatalf("NewToken() err = %v", err)
		}
		if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != TokenLength {
			t.Fatalf("NewToken() token has length %d, want %d with prefix %s", len(tok), TokenLength, TokenPrefix)
		}
		if err := ValidateTokenID(id); err != nil {
			t.Fatalf("ValidateTokenID(NewToken id %q) = %v", id, err)
		}
		want := sha256.Sum256([]byte(tok))
		if !bytes.Equal(hash, want[:]) {
			t.Fatal("NewToken() hash is not the SHA-256 of the token")
		}
		got, err := ParseToken(tok)
		if err != nil || !bytes.Equal(got, hash) {
			t.Fatalf("ParseToken(NewToken()) = %x, %v; want the hash", got, err)
		}
		if !TokenMatches(tok, hash) {
			t.Fatal("TokenMatches(token, its hash) = false")
		}
		if TokenMatches(tok+"x", hash) {
			t.Fatal("TokenMatches(other token, hash) = true")
		}
		if seen[tok] || seen[id] {
			t.Fatal("NewToken() repeated a token or id")
		}
		seen[tok], seen[id] = true, true
	}
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	good, _, _, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tok, wantErr string
	}{
		{"generated", good, ""},
		{"custom root token", "root", ""},
		{"empty", "", "token is empty"},
		{"short rot_", good[:20], "a rot_ token is 47 characters, this one is 20"},
		{"long rot_", good + "A", "this one is 48"},
		{"bad alphabet", good[:10] + "+" + good[11:], "position 11 is not base64url"},
		{"space", "Bearer " + good, "position 7 is a space"},
		{"newline", good + "\n", "position 48 is a space, a control character"},
		{"non-ASCII", "tökén", "position 2"},
		{"too long", strings.Repeat("a", 300), "300 bytes, the limit is 256"},
	}
	for _, tt := range tests {
		_, err := ParseToken(tt.tok)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: ParseToken = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrMalformedToken) {
			t.Errorf("%s: ParseToken err = %v, want ErrMalformedToken containing %q", tt.name, err, tt.wantErr)
		}
		if len(tt.tok) >= 8 && err != nil && strings.Contains(err.Error(), tt.tok) {
			t.Errorf("%s: ParseToken error repeats the token", tt.name)
		}
	}
}

func TestValidateCustomToken(t *testing.T) {
	t.Parallel()
	if err := ValidateCustomToken("root", 1); err != nil {
		t.Errorf("ValidateCustomToken(root, 1) = %v", err)
	}
	if err := ValidateCustomToken("root", 32); err == nil || !strings.Contains(err.Error(), "the minimum is 32") {
		t.Errorf("ValidateCustomToken(root, 32) = %v, want minimum error", err)
	}
}

func TestValidateTokenID(t *testing.T) {
	t.Parallel()
	good, _, _, _ := NewToken()
	for _, tt := range []struct{ id, wantErr string }{
		{"tok_0123456789ab", ""},
		{"tok_0123456789AB", "lowercase hex"},
		{"tok_0123", "lowercase hex"},
		{"tok_0123456789zz", "lowercase hex"},
		{"0123456789ab", "lowercase hex"},
		{good, "this is a token, not a token id"},
	} {
		err := ValidateTokenID(tt.id)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidateTokenID(%q) = %v, want %q", tt.id, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), good) {
			t.Errorf("ValidateTokenID error repeats a token")
		}
	}
}

func TestEqualHashes(t *testing.T) {
	t.Parallel()
	h := HashToken("a")
	if !EqualHashes(h, HashToken("a")) || EqualHashes(h, HashToken("b")) || EqualHashes(nil, nil) || EqualHashes(h[:4], h[:4]) {
		t.Fatal("EqualHashes is wrong")
	}
}
