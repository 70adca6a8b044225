package kms

import (
	"strings"
	"testing"
)

func TestFingerprint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.m.EnsureRegion(b.ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	fp := func(region, typ, value string) string {
		t.Helper()
		s, err := b.m.Fingerprint(b.ctx, region, typ, []byte(value))
		if err != nil {
			t.Fatalf("Fingerprint err = %v", err)
		}
		return s
	}
	base := fp(testRegion, "password", "hunter2")
	if !strings.HasPrefix(base, FingerprintPrefix) || len(base) != len(FingerprintPrefix)+64 {
		t.Fatalf("Fingerprint = %q, want %s and 64 hex digits", base, FingerprintPrefix)
	}
	if strings.Contains(base, "hunter2") {
		t.Fatal("fingerprint contains the value")
	}
	if got := fp(testRegion, "password", "hunter2"); got != base {
		t.Fatalf("same value, same fingerprint: got %q, want %q", got, base)
	}
	if got, _ := b.newManager(t).Fingerprint(b.ctx, testRegion, "password", []byte("hunter2")); got != base {
		t.Fatalf("another daemon's fingerprint = %q, want %q", got, base)
	}
	differ := []struct{ name, region, typ, value string }{
		{"another value", testRegion, "password", "hunter3"},
		{"another region", "us-east-1", "password", "hunter2"},
		{"another type", testRegion, "api-key", "hunter2"},
		{"type/value boundary moved", testRegion, "passwordh", "unter2"},
		{"empty value", testRegion, "password", ""},
	}
	for _, tt := range differ {
		if got := fp(tt.region, tt.typ, tt.value); got == base {
			t.Errorf("%s: fingerprint equals the base one", tt.name)
		}
	}
	_, err := b.m.Fingerprint(b.ctx, "nowhere", "password", []byte("x"))
	wantErr(t, "Fingerprint(unknown region)", err, ErrNotFound)
}
