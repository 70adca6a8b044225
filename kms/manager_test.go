package kms

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rotary-secrets/rotary/sensitive"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{Root: testRoot}, "Config.Store"},
		{"no root", Config{Store: NewMemKeyStore()}, "Config.Root"},
		{"short root", Config{Store: NewMemKeyStore(), Root: testRoot[:16]}, "Config.Root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ctx, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestNewWrongRootKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemKeyStore()
	if _, err := New(ctx, Config{Store: store, Root: testRoot}); err != nil {
		t.Fatalf("New(first) err = %v", err)
	}
	if _, err := store.GetMeta(ctx, MetaRootCheck); err != nil {
		t.Fatalf("GetMeta(%s) err = %v, want the check value recorded", MetaRootCheck, err)
	}
	other := sensitive.Bytes(bytes.Repeat([]byte{0x43}, RootKeySize))
	_, err := New(ctx, Config{Store: store, Root: other})
	wantErr(t, "New(other root)", err, ErrWrongRootKey)
	if _, err := New(ctx, Config{Store: store, Root: testRoot}); err != nil {
		t.Fatalf("New(same root again) err = %v", err)
	}
}

func TestNewMalformedCheckValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemKeyStore()
	_ = store.PutMetaIfAbsent(ctx, MetaRootCheck, []byte("junk"))
	_, err := New(ctx, Config{Store: store, Root: testRoot})
	if err == nil || errors.Is(err, ErrWrongRootKey) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("New err = %v, want a malformed check value error", err)
	}
}

// Daemons starting at once on an empty store: those with the same root key
// all start; with different root keys exactly one kind wins.
func TestNewConcurrentFirstStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemKeyStore()
	roots := []sensitive.Bytes{testRoot, bytes.Repeat([]byte{7}, RootKeySize)}
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = New(ctx, Config{Store: store, Root: roots[i%2]})
		})
	}
	wg.Wait()
	ok := map[int]int{}
	for i, err := range errs {
		switch {
		case err == nil:
			ok[i%2]++
		case !errors.Is(err, ErrWrongRootKey):
			t.Fatalf("New err = %v, want nil or ErrWrongRootKey", err)
		}
	}
	if len(ok) != 1 || (ok[0] != 10 && ok[1] != 10) {
		t.Fatalf("successful starts by root = %v, want all 10 of exactly one root", ok)
	}
}

func TestEnsureRegion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Idempotent, and a second daemon sees the same fingerprint key.
	if err := b.m.EnsureRegion(b.ctx, testRegion); err != nil {
		t.Fatalf("EnsureRegion again err = %v", err)
	}
	m2 := b.newManager(t)
	fp1, _ := b.m.Fingerprint(b.ctx, testRegion, "password", []byte("x"))
	fp2, err := m2.Fingerprint(b.ctx, testRegion, "password", []byte("x"))
	if err != nil || fp1 != fp2 {
		t.Fatalf("Fingerprint on second daemon = %q, %v; want %q", fp2, err, fp1)
	}

	for _, name := range []string{"", "EU", "eu_west", "eu west", "é", strings.Repeat("a", 65)} {
		wantErr(t, "EnsureRegion("+name+")", b.m.EnsureRegion(b.ctx, name), ErrInvalidArgument)
	}
	for _, name := range []string{"a", "default", "us-east-2", strings.Repeat("z", 64)} {
		if err := b.m.EnsureRegion(b.ctx, name); err != nil {
			t.Fatalf("EnsureRegion(%q) err = %v", name, err)
		}
	}
	rs, err := b.m.ListRegions(b.ctx)
	if err != nil || len(rs) != 5 || rs[0].Name != "a" || rs[0].FingerprintKey != nil {
		t.Fatalf("ListRegions = %v, %v; want 5 sorted regions without keys", rs, err)
	}
}

func TestEnsureRegionConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ms := []*Manager{b.m, b.newManager(t), b.newManager(t)}
	var wg sync.WaitGroup
	fps := make([]string, 30)
	for i := range fps {
		wg.Go(func() {
			m := ms[i%len(ms)]
			if err := m.EnsureRegion(b.ctx, "ap-south-1"); err != nil {
				t.Errorf("EnsureRegion err = %v", err)
				return
			}
			fps[i], _ = m.Fingerprint(b.ctx, "ap-south-1", "t", []byte("v"))
		})
	}
	wg.Wait()
	for _, fp := range fps {
		if fp != fps[0] {
			t.Fatalf("daemons disagree on the region's fingerprint key: %q vs %q", fp, fps[0])
		}
	}
}

func TestUnknownRegion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.m.Seal(b.ctx, SealParams{Region: "nowhere", Secret: "s", Version: 1})
	wantErr(t, "Seal(unknown region)", err, ErrNotFound)
	_, err = b.m.Fingerprint(b.ctx, "nowhere", "t", nil)
	wantErr(t, "Fingerprint(unknown region)", err, ErrNotFound)
	_, err = b.m.CreateKey(b.ctx, CreateKeyParams{Region: "nowhere", Alias: "x"})
	wantErr(t, "CreateKey(unknown region)", err, ErrNotFound)
}
