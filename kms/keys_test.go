package kms

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestCreateKeyValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "alias/taken"}); err != nil {
		t.Fatalf("CreateKey err = %v", err)
	}
	tests := []struct {
		name string
		p    CreateKeyParams
		want error
	}{
		{"bad region", CreateKeyParams{Region: "EU", Alias: "a"}, ErrInvalidArgument},
		{"bad alias char", CreateKeyParams{Region: testRegion, Alias: "a b"}, ErrInvalidArgument},
		{"empty alias after prefix", CreateKeyParams{Region: testRegion, Alias: "alias/"}, ErrInvalidArgument},
		{"alias too long", CreateKeyParams{Region: testRegion, Alias: strings.Repeat("a", 129)}, ErrInvalidArgument},
		{"description too long", CreateKeyParams{Region: testRegion, Description: strings.Repeat("d", 8193)}, ErrInvalidArgument},
		{"rotation too often", CreateKeyParams{Region: testRegion, RotationPeriod: time.Hour}, ErrInvalidArgument},
		{"negative rotation", CreateKeyParams{Region: testRegion, RotationPeriod: -day}, ErrInvalidArgument},
		{"alias taken", CreateKeyParams{Region: testRegion, Alias: "taken"}, ErrConflict},
		{"alias taken with prefix", CreateKeyParams{Region: testRegion, Alias: "alias/taken"}, ErrConflict},
		{"unknown region", CreateKeyParams{Region: "mars-1", Alias: "a"}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.m.CreateKey(b.ctx, tt.p)
			wantErr(t, "CreateKey", err, tt.want)
		})
	}
}

func TestCreateAndDescribeKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k, err := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "alias/app/db_1", Description: "db", RotationPeriod: 90 * day})
	if err != nil {
		t.Fatalf("CreateKey err = %v", err)
	}
	if !isKeyID(k.ID) || k.Alias != "app/db_1" || k.State != KeyEnabled || k.PrimaryVersion != 1 ||
		k.NextRotationAt == nil || !k.NextRotationAt.Equal(b.clock.Now().Add(90*day)) {
		t.Fatalf("CreateKey = %+v", k)
	}
	// A key without alias is fine too.
	if _, err := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion}); err != nil {
		t.Fatalf("CreateKey(no alias) err = %v", err)
	}
	if err := b.m.EnsureRegion(b.ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, region, ref string
		want              error
	}{
		{"by id", testRegion, k.ID, nil},
		{"by alias", testRegion, "alias/app/db_1", nil},
		{"bare alias is not a ref", testRegion, "app/db_1", ErrInvalidArgument},
		{"bad alias", testRegion, "alias/a b", ErrInvalidArgument},
		{"unknown alias", testRegion, "alias/nope", ErrNotFound},
		{"unknown id", testRegion, "mk-0000000000000000", ErrNotFound},
		{"id in another region", "us-east-1", k.ID, ErrNotFound},
		{"alias in another region", "us-east-1", "alias/app/db_1", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.m.DescribeKey(b.ctx, tt.region, tt.ref)
			if tt.want == nil {
				if err != nil || got.ID != k.ID {
					t.Fatalf("DescribeKey(%s) = %s, %v; want %s", tt.ref, got.ID, err, k.ID)
				}
				return
			}
			wantErr(t, "DescribeKey("+tt.ref+")", err, tt.want)
		})
	}
	ks, err := b.m.ListKeys(b.ctx, testRegion)
	if err != nil || len(ks) != 2 {
		t.Fatalf("ListKeys = %d keys, %v; want 2", len(ks), err)
	}
	if ks, _ := b.m.ListKeys(b.ctx, "us-east-1"); len(ks) != 0 {
		t.Fatalf("ListKeys(us-east-1) = %d keys, want 0", len(ks))
	}
}

// Two daemons racing to create a region's default key end with one key.
func TestDefaultKeyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ms := []*Manager{b.m, b.newManager(t)}
	if err := b.m.EnsureRegion(b.ctx, "race-1"); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	ids := make([]string, 32)
	for i := range ids {
		wg.Go(func() {
			<-start
			s, err := ms[i%2].Seal(b.ctx, SealParams{Region: "race-1", Secret: "s", Version: 1, Plaintext: []byte("v")})
			if err != nil {
				t.Errorf("Seal err = %v", err)
				return
			}
			ids[i] = s.KeyID
		})
	}
	close(start)
	wg.Wait()
	ks, err := b.m.ListKeys(b.ctx, "race-1")
	if err != nil || len(ks) != 1 {
		t.Fatalf("ListKeys after race = %d keys, %v; want exactly 1", len(ks), err)
	}
	for _, id := range ids {
		if id != ks[0].ID {
			t.Fatalf("a Seal used key %s, want the one default key %s", id, ks[0].ID)
		}
	}
	if ks[0].Alias != DefaultAlias {
		t.Fatalf("default key alias = %q", ks[0].Alias)
	}
}

func TestDisableEnable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := SealParams{Region: testRegion, Secret: "db/password", Version: 1, Plaintext: []byte("hunter2")}
	s := b.seal(t, b.m, p)
	op := openParams(p, s.Envelope)

	k, err := b.m.DisableKey(b.ctx, testRegion, "alias/default")
	if err != nil || k.State != KeyDisabled {
		t.Fatalf("DisableKey = %v, %v", k.State, err)
	}
	b.openFails(t, b.m, op)
	_, err = b.m.Seal(b.ctx, p)
	wantErr(t, "Seal(disabled)", err, ErrKeyDisabled)
	_, err = b.m.RotateKey(b.ctx, testRegion, s.KeyID)
	wantErr(t, "RotateKey(disabled)", err, ErrKeyDisabled)
	if _, err := b.m.DisableKey(b.ctx, testRegion, s.KeyID); err != nil {
		t.Fatalf("DisableKey(again) err = %v, want nil", err)
	}

	if k, err = b.m.EnableKey(b.ctx, testRegion, s.KeyID); err != nil || k.State != KeyEnabled {
		t.Fatalf("EnableKey = %v, %v", k.State, err)
	}
	b.mustOpen(t, b.m, op, p.Plaintext)
	b.seal(t, b.m, p)
}

// A change made by another daemon takes effect within the cache TTL.
func TestOtherDaemonDisable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := b.newManager(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("v")}
	s := b.seal(t, b.m, p)
	op := openParams(p, s.Envelope)
	b.mustOpen(t, b.m, op, p.Plaintext) // warm the cache

	if _, err := other.DisableKey(b.ctx, testRegion, s.KeyID); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(DefaultCacheTTL + time.Millisecond)
	b.openFails(t, b.m, op)
	if _, err := other.EnableKey(b.ctx, testRegion, s.KeyID); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(DefaultCacheTTL + time.Millisecond)
	b.mustOpen(t, b.m, op, p.Plaintext)
}

func TestScheduleDeletionWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		window time.Duration
		ok     bool
	}{
		{0, false},
		{-7 * day, false},
		{6 * day, false},
		{7*day - time.Second, false},
		{7 * day, true},
		{30 * day, true},
		{30*day + time.Second, false},
		{31 * day, false},
	}
	for _, tt := range tests {
		t.Run(tt.window.String(), func(t *testing.T) {
			k, err := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion})
			if err != nil {
				t.Fatal(err)
			}
			got, err := b.m.ScheduleKeyDeletion(b.ctx, testRegion, k.ID, tt.window)
			if !tt.ok {
				wantErr(t, "ScheduleKeyDeletion", err, ErrInvalidArgument)
				if !strings.Contains(err.Error(), "between 7 and 30 days") {
					t.Fatalf("error %q does not say the allowed window", err)
				}
				return
			}
			if err != nil || got.State != KeyPendingDeletion || !got.DeletionDate.Equal(b.clock.Now().Add(tt.window)) {
				t.Fatalf("ScheduleKeyDeletion = %+v, %v", got, err)
			}
		})
	}
}

func TestPendingDeletionAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 3, Plaintext: []byte("value")}
	s := b.seal(t, b.m, p)
	op := openParams(p, s.Envelope)

	_, err := b.m.CancelKeyDeletion(b.ctx, testRegion, s.KeyID)
	wantErr(t, "CancelKeyDeletion(enabled)", err, ErrInvalidState)
	if _, err := b.m.ScheduleKeyDeletion(b.ctx, testRegion, s.KeyID, 7*day); err != nil {
		t.Fatal(err)
	}
	b.openFails(t, b.m, op)
	_, err = b.m.Seal(b.ctx, p)
	wantErr(t, "Seal(pending)", err, ErrKeyPendingDeletion)
	_, err = b.m.EnableKey(b.ctx, testRegion, s.KeyID)
	wantErr(t, "EnableKey(pending)", err, ErrKeyPendingDeletion)
	_, err = b.m.DisableKey(b.ctx, testRegion, s.KeyID)
	wantErr(t, "DisableKey(pending)", err, ErrKeyPendingDeletion)
	_, err = b.m.ScheduleKeyDeletion(b.ctx, testRegion, s.KeyID, 8*day)
	wantErr(t, "ScheduleKeyDeletion(pending)", err, ErrKeyPendingDeletion)
	_, err = b.m.RotateKey(b.ctx, testRegion, s.KeyID)
	wantErr(t, "RotateKey(pending)", err, ErrKeyPendingDeletion)
	_, err = b.m.Encrypt(b.ctx, EncryptParams{Region: testRegion, KeyRef: s.KeyID})
	wantErr(t, "Encrypt(pending)", err, ErrKeyPendingDeletion)

	k, err := b.m.CancelKeyDeletion(b.ctx, testRegion, s.KeyID)
	if err != nil || k.State != KeyDisabled || k.DeletionDate != nil {
		t.Fatalf("CancelKeyDeletion = %+v, %v; want disabled without a date", k, err)
	}
	b.openFails(t, b.m, op)
	if _, err := b.m.EnableKey(b.ctx, testRegion, s.KeyID); err != nil {
		t.Fatal(err)
	}
	b.mustOpen(t, b.m, op, p.Plaintext)
	// Cancelled long ago: the purge must leave it alone.
	b.clock.Advance(40 * day)
	if n, err := b.m.PurgeDueKeys(b.ctx); err != nil || n != 0 {
		t.Fatalf("PurgeDueKeys = %d, %v; want 0", n, err)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := b.newManager(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("value")}
	s := b.seal(t, b.m, p)
	op := openParams(p, s.Envelope)
	keep, _ := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "keep"})
	if _, err := b.m.ScheduleKeyDeletion(b.ctx, testRegion, s.KeyID, 7*day); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(7*day - time.Second)
	if n, err := b.m.PurgeDueKeys(b.ctx); err != nil || n != 0 {
		t.Fatalf("PurgeDueKeys before the date = %d, %v; want 0", n, err)
	}
	b.clock.Advance(time.Second)
	if n, err := b.m.PurgeDueKeys(b.ctx); err != nil || n != 1 {
		t.Fatalf("PurgeDueKeys at the date = %d, %v; want 1", n, err)
	}
	_, err := b.m.DescribeKey(b.ctx, testRegion, s.KeyID)
	wantErr(t, "DescribeKey(purged)", err, ErrNotFound)
	if vs, _ := b.store.GetKeyVersions(b.ctx, s.KeyID); len(vs) != 0 {
		t.Fatalf("store still holds %d versions of the purged key", len(vs))
	}
	if _, err := b.m.DescribeKey(b.ctx, testRegion, keep.ID); err != nil {
		t.Fatalf("the other key went too: %v", err)
	}
	b.openFails(t, b.m, op)
	b.openFails(t, other, op)
	// The default alias is free again: a new seal makes a new default key.
	s2 := b.seal(t, b.m, p)
	if s2.KeyID == s.KeyID {
		t.Fatalf("Seal after purge used the purged key")
	}
	b.openFails(t, b.m, op)
}

func TestRotateKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p1 := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("one")}
	s1 := b.seal(t, b.m, p1)
	other := b.newManager(t)
	b.mustOpen(t, other, openParams(p1, s1.Envelope), p1.Plaintext)

	k, err := b.m.RotateKey(b.ctx, testRegion, "alias/default")
	if err != nil || k.PrimaryVersion != 2 {
		t.Fatalf("RotateKey = v%d, %v; want v2", k.PrimaryVersion, err)
	}
	p2 := SealParams{Region: testRegion, Secret: "s", Version: 2, Plaintext: []byte("two")}
	s2 := b.seal(t, b.m, p2)
	if s2.KeyVersion != 2 || s1.KeyVersion != 1 || s2.KeyID != s1.KeyID {
		t.Fatalf("seal key versions = %d then %d, want 1 then 2", s1.KeyVersion, s2.KeyVersion)
	}
	if h, _ := ParseEnvelope(s2.Envelope); h.KeyVersion != 2 {
		t.Fatalf("envelope header key version = %d, want 2", h.KeyVersion)
	}
	b.mustOpen(t, b.m, openParams(p1, s1.Envelope), p1.Plaintext)
	b.mustOpen(t, b.m, openParams(p2, s2.Envelope), p2.Plaintext)
	// Another daemon with a warm cache opens the new version too.
	b.mustOpen(t, other, openParams(p2, s2.Envelope), p2.Plaintext)
}

func TestRotateDueKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k, _ := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "auto", RotationPeriod: 30 * day})
	off, _ := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "off", RotationPeriod: 30 * day})
	manual, _ := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "manual"})
	if _, err := b.m.DisableKey(b.ctx, testRegion, off.ID); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(30*day - time.Second)
	if n, err := b.m.RotateDueKeys(b.ctx); err != nil || n != 0 {
		t.Fatalf("RotateDueKeys early = %d, %v; want 0", n, err)
	}
	b.clock.Advance(time.Second)
	if n, err := b.m.RotateDueKeys(b.ctx); err != nil || n != 1 {
		t.Fatalf("RotateDueKeys = %d, %v; want 1", n, err)
	}
	if n, _ := b.m.RotateDueKeys(b.ctx); n != 0 {
		t.Fatalf("RotateDueKeys again = %d, want 0", n)
	}
	got, _ := b.m.DescribeKey(b.ctx, testRegion, k.ID)
	if got.PrimaryVersion != 2 || !got.NextRotationAt.Equal(b.clock.Now().Add(30*day)) {
		t.Fatalf("after auto rotation: v%d next %v", got.PrimaryVersion, got.NextRotationAt)
	}
	for _, id := range []string{off.ID, manual.ID} {
		if got, _ := b.m.DescribeKey(b.ctx, testRegion, id); got.PrimaryVersion != 1 {
			t.Fatalf("key %s rotated, want it left alone", got.Alias)
		}
	}
}

// Once warm, Seal and Open touch no store.
func TestCacheSparesStore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := SealParams{Region: testRegion, Secret: "s", Version: 1, Plaintext: []byte("v")}
	s := b.seal(t, b.m, p)
	b.mustOpen(t, b.m, openParams(p, s.Envelope), p.Plaintext)
	before := b.store.Calls()
	for range 100 {
		s := b.seal(t, b.m, p)
		b.mustOpen(t, b.m, openParams(p, s.Envelope), p.Plaintext)
	}
	if got := b.store.Calls() - before; got != 0 {
		t.Fatalf("100 warm Seal+Open made %d store calls, want 0", got)
	}
	b.clock.Advance(DefaultCacheTTL)
	b.seal(t, b.m, p)
	if got := b.store.Calls() - before; got == 0 {
		t.Fatalf("Seal after the TTL made no store call, want a refresh")
	}
}

// racingStore lets another writer change a key just before this
// Manager's first UpdateKey lands, as a second daemon would.
type racingStore struct {
	*MemKeyStore
	once   sync.Once
	before func()
}

func (s *racingStore) UpdateKey(ctx context.Context, k Key, ifUpdatedAt time.Time) error {
	s.once.Do(s.before)
	return s.MemKeyStore.UpdateKey(ctx, k, ifUpdatedAt)
}

// Two daemons change one key at once: daemon A disables it while daemon B
// schedules its deletion in between A's read and A's write. A's write must
// not undo B's (which would silently cancel the deletion): it is refused
// as stale, A reads again, and its change is decided on what is there now.
func TestKeyTransitionsNeverUndoAnotherDaemons(t *testing.T) {
	b := setup(t)
	k, err := b.m.CreateKey(b.ctx, CreateKeyParams{Region: testRegion, Alias: "race"})
	if err != nil {
		t.Fatal(err)
	}
	other := b.newManager(t)
	rs := &racingStore{MemKeyStore: b.store, before: func() {
		if _, err := other.ScheduleKeyDeletion(b.ctx, testRegion, k.ID, 7*24*time.Hour); err != nil {
			t.Errorf("daemon B: ScheduleKeyDeletion: %v", err)
		}
	}}
	a, err := New(b.ctx, Config{Store: rs, Root: testRoot, Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.DisableKey(b.ctx, testRegion, k.ID); !errors.Is(err, ErrKeyPendingDeletion) {
		t.Fatalf("daemon A's DisableKey after B scheduled the deletion = %v, want ErrKeyPendingDeletion", err)
	}
	got, err := b.store.GetKey(b.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != KeyPendingDeletion || got.DeletionDate == nil {
		t.Fatalf("after the race the key is %s (deletion date %v): daemon B's deletion was undone", got.State, got.DeletionDate)
	}
}
