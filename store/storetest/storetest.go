package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// base is the suite's clock. It has nanoseconds on purpose: backends keep
// microseconds, and the comparisons truncate to Precision.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

// Run runs the conformance suite in every mode (Modes: on the store, and
// each call inside InTx). newStore returns a fresh, empty store and
// arranges for it to be closed when the test ends.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, m := range Modes {
		t.Run(m.Name, func(t *testing.T) { RunMode(t, m, newStore) })
	}
}

// RunMode runs the conformance suite in one mode.
func RunMode(t *testing.T, m Mode, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Meta", testMeta},
		{"Regions", testRegions},
		{"Keys", testKeys},
		{"Secrets", testSecrets},
		{"ListSecrets", testListSecrets},
		{"DeleteSecret", testDeleteSecret},
		{"SecretsDueForPurge", testSecretsDueForPurge},
		{"Versions", testVersions},
		{"Stages", testStages},
		{"SwapEnvelope", testSwapEnvelope},
		{"VersionsNotOnKeyVersion", testVersionsNotOnKeyVersion},
		{"Rotations", testRotations},
		{"ClaimDueRotations", testClaimDueRotations},
		{"ClaimDueRotationsConcurrent", func(t *testing.T, s store.Store) { testClaimConcurrent(t, s, s) }},
		{"ClaimRotationAndLeases", testClaimRotation},
		{"RotationLeaseWrites", testRotationLeaseWrites},
		{"Runs", testRuns},
		{"Outbox", testOutbox},
		{"OutboxClaimConcurrent", func(t *testing.T, s store.Store) { testOutboxConcurrent(t, s, s) }},
		{"Tokens", testTokens},
		{"Policies", testPolicies},
		{"PluginsAndHooks", testPluginsAndHooks},
		{"OutboxSecretOrder", testOutboxSecretOrder},
		{"OutboxClaimPastALeasedHead", testOutboxClaimPastALeasedHead},
		{"OutboxSecretOrderConcurrent", func(t *testing.T, s store.Store) { testOutboxSecretOrderConcurrent(t, s, s) }},
		{"HookDeliveries", testHookDeliveries},
		{"HookDeliveriesConcurrent", func(t *testing.T, s store.Store) { testHookDeliveriesConcurrent(t, s, s) }},
		{"PluginCatalog", testPluginCatalog},
		{"Audit", testAudit},
		{"AuditConcurrentAppends", func(t *testing.T, s store.Store) { testAuditConcurrent(t, s, s) }},
		{"AuditChains", testAuditChains},
		{"AuditChainsConcurrentAppends", func(t *testing.T, s store.Store) { testAuditChainsConcurrent(t, s, s) }},
		{"InTx", testInTx},
		{"Locks", testLocks},
		{"TimePrecision", testTimePrecision},
		{"ErrorsHideBlobs", testErrorsHideBlobs},
		{"Dialect", testDialect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, m.Wrap(newStore(t)))
		})
	}
}

// RunConcurrentStores runs the claim and append races across two stores
// opened independently on the same database (two daemons), in every mode.
// newPair returns both, on one fresh empty database, and arranges for them
// to be closed.
func RunConcurrentStores(t *testing.T, newPair func(t *testing.T) (store.Store, store.Store)) {
	for _, m := range Modes {
		t.Run(m.Name, func(t *testing.T) {
			runConcurrentStores(t, func(t *testing.T) (store.Store, store.Store) {
				a, b := newPair(t)
				return m.Wrap(a), m.Wrap(b)
			})
		})
	}
}

func runConcurrentStores(t *testing.T, newPair func(t *testing.T) (store.Store, store.Store)) {
	t.Run("ClaimDueRotations", func(t *testing.T) {
		a, b := newPair(t)
		testClaimConcurrent(t, a, b)
	})
	t.Run("ClaimOutbox", func(t *testing.T) {
		a, b := newPair(t)
		testOutboxConcurrent(t, a, b)
	})
	t.Run("ClaimOutboxSecretOrder", func(t *testing.T) {
		a, b := newPair(t)
		testOutboxSecretOrderConcurrent(t, a, b)
	})
	t.Run("ClaimHookDeliveries", func(t *testing.T) {
		a, b := newPair(t)
		testHookDeliveriesConcurrent(t, a, b)
	})
	t.Run("AuditAppends", func(t *testing.T) {
		a, b := newPair(t)
		testAuditConcurrent(t, a, b)
	})
	t.Run("AuditChainAppends", func(t *testing.T) {
		a, b := newPair(t)
		testAuditChainsConcurrent(t, a, b)
	})
	t.Run("AuditChainsDoNotWait", func(t *testing.T) {
		a, b := newPair(t)
		testAuditChainsDoNotWait(t, a, b)
	})
	t.Run("RotationLeaseWrites", func(t *testing.T) {
		a, b := newPair(t)
		testRotationLeaseAcrossStores(t, a, b)
	})
	t.Run("TryLock", func(t *testing.T) {
		a, b := newPair(t)
		ctx := t.Context()
		ok, err := a.TryLock(ctx, "job", "A", at(0), at(time.Minute))
		if err != nil || !ok {
			t.Fatalf("a.TryLock(job, A) = %v, %v, want true, nil", ok, err)
		}
		ok, err = b.TryLock(ctx, "job", "B", at(time.Second), at(time.Minute))
		if err != nil || ok {
			t.Fatalf("b.TryLock(job, B) while A holds = %v, %v, want false, nil", ok, err)
		}
	})
}

// --- fixtures ---

func mkSecret(t *testing.T, ops store.Ops, name string) store.Secret {
	t.Helper()
	s := store.Secret{
		Name: name, Type: "password", Region: "default", KeyID: "key-1",
		NextVersion: 1, CreatedAt: base, UpdatedAt: base,
	}
	if err := ops.CreateSecret(t.Context(), s); err != nil {
		t.Fatalf("CreateSecret(%q) err = %v", name, err)
	}
	return s
}

func mkVersion(t *testing.T, ops store.Ops, secret string, n int64) store.SecretVersion {
	t.Helper()
	v := store.SecretVersion{
		Secret: secret, Version: n, Envelope: fmt.Appendf(nil, "env-%s-%d", secret, n),
		KeyID: "key-1", KeyVersion: 1, Fingerprint: fmt.Sprintf("fp-%d", n),
		CreatedAt: at(time.Duration(n) * time.Minute), CreatedBy: "tok-1", Reason: "put",
	}
	if err := ops.InsertVersion(t.Context(), v); err != nil {
		t.Fatalf("InsertVersion(%q, %d) err = %v", secret, n, err)
	}
	return v
}

func wantErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s err = %v, want %v", call, err, want)
	}
}

func noErr(t *testing.T, call string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s err = %v, want nil", call, err)
	}
}

// --- meta, regions, keys ---

func testMeta(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetMeta(ctx, "salt")
	wantErr(t, "GetMeta(salt) on empty store", err, store.ErrNotFound)
	noErr(t, "PutMetaIfAbsent(salt)", s.PutMetaIfAbsent(ctx, "salt", []byte{0, 1, 2, 0xff}))
	got, err := s.GetMeta(ctx, "salt")
	noErr(t, "GetMeta(salt)", err)
	check(t, "GetMeta(salt)", got, []byte{0, 1, 2, 0xff})
	wantErr(t, "PutMetaIfAbsent(salt) again", s.PutMetaIfAbsent(ctx, "salt", []byte("other")), store.ErrConflict)
	got, _ = s.GetMeta(ctx, "salt")
	check(t, "GetMeta(salt) after refused put", got, []byte{0, 1, 2, 0xff})
}

func testRegions(t *testing.T, s store.Store) {
	ctx := t.Context()
	rs := []store.Region{
		{Name: "eu-west-1", FingerprintKey: []byte("fk-eu"), CreatedAt: at(time.Second)},
		{Name: "default", FingerprintKey: []byte("fk-default"), CreatedAt: base},
	}
	for _, r := range rs {
		noErr(t, "CreateRegion("+r.Name+")", s.CreateRegion(ctx, r))
	}
	wantErr(t, "CreateRegion(default) again", s.CreateRegion(ctx, rs[1]), store.ErrConflict)
	got, err := s.GetRegion(ctx, "eu-west-1")
	noErr(t, "GetRegion(eu-west-1)", err)
	check(t, "GetRegion(eu-west-1)", got, rs[0])
	_, err = s.GetRegion(ctx, "nowhere")
	wantErr(t, "GetRegion(nowhere)", err, store.ErrNotFound)
	list, err := s.ListRegions(ctx)
	noErr(t, "ListRegions", err)
	check(t, "ListRegions", list, []store.Region{rs[1], rs[0]})
}

func testKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	k1 := store.MasterKey{
		ID: "k1", Region: "default", Alias: "app", Description: "app key", State: store.KeyEnabled,
		PrimaryVersion: 1, RotationPeriod: 90 * 24 * time.Hour, NextRotationAt: ptr(at(90 * 24 * time.Hour)),
		CreatedAt: base, UpdatedAt: base,
	}
	v1 := store.KeyVersion{KeyID: "k1", Version: 1, Material: []byte("wrapped-1"), CreatedAt: base}
	noErr(t, "CreateKey(k1)", s.CreateKey(ctx, k1, v1))

	k2 := store.MasterKey{ID: "k2", Region: "default", State: store.KeyEnabled, PrimaryVersion: 1, CreatedAt: base, UpdatedAt: base}
	k3 := store.MasterKey{ID: "k3", Region: "default", State: store.KeyDisabled, PrimaryVersion: 1, CreatedAt: base, UpdatedAt: base}
	k4 := store.MasterKey{ID: "k4", Region: "eu", Alias: "app", State: store.KeyEnabled, PrimaryVersion: 1, CreatedAt: base, UpdatedAt: base}
	for _, k := range []store.MasterKey{k2, k3, k4} {
		noErr(t, "CreateKey("+k.ID+")", s.CreateKey(ctx, k, store.KeyVersion{KeyID: k.ID, Version: 1, Material: []byte("m"), CreatedAt: base}))
	}

	for _, tc := range []struct {
		name string
		k    store.MasterKey
	}{
		{"same id", store.MasterKey{ID: "k1", Region: "other", State: store.KeyEnabled, PrimaryVersion: 1}},
		{"alias taken in region", store.MasterKey{ID: "k9", Region: "default", Alias: "app", State: store.KeyEnabled, PrimaryVersion: 1}},
	} {
		err := s.CreateKey(ctx, tc.k, store.KeyVersion{KeyID: tc.k.ID, Version: 1, Material: []byte("x")})
		wantErr(t, "CreateKey("+tc.name+")", err, store.ErrConflict)
	}
	if _, err := s.GetKey(ctx, "k9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetKey(k9) after refused create err = %v, want ErrNotFound (no partial insert)", err)
	}

	got, err := s.GetKey(ctx, "k1")
	noErr(t, "GetKey(k1)", err)
	check(t, "GetKey(k1)", got, k1)
	got, err = s.GetKeyByAlias(ctx, "eu", "app")
	noErr(t, "GetKeyByAlias(eu, app)", err)
	check(t, "GetKeyByAlias(eu, app)", got, k4)
	_, err = s.GetKeyByAlias(ctx, "eu", "nope")
	wantErr(t, "GetKeyByAlias(eu, nope)", err, store.ErrNotFound)
	_, err = s.GetKey(ctx, "missing")
	wantErr(t, "GetKey(missing)", err, store.ErrNotFound)

	for _, tc := range []struct {
		region string
		want   []store.MasterKey
	}{
		{"", []store.MasterKey{k1, k2, k3, k4}},
		{"default", []store.MasterKey{k1, k2, k3}},
		{"eu", []store.MasterKey{k4}},
		{"none", nil},
	} {
		list, err := s.ListKeys(ctx, tc.region)
		noErr(t, "ListKeys", err)
		check(t, fmt.Sprintf("ListKeys(%q)", tc.region), list, tc.want)
	}
	n, err := s.CountKeys(ctx)
	noErr(t, "CountKeys", err)
	if n != 4 {
		t.Errorf("CountKeys = %d, want 4", n)
	}

	// UpdateKey.
	read := k2.UpdatedAt
	k2.Alias, k2.State, k2.DeletionDate, k2.UpdatedAt = "db", store.KeyPendingDeletion, ptr(at(7*24*time.Hour)), at(time.Hour)
	noErr(t, "UpdateKey(k2)", s.UpdateKey(ctx, k2, read))
	got, _ = s.GetKey(ctx, "k2")
	check(t, "GetKey(k2) after UpdateKey", got, k2)
	// Compare-and-swap: a writer that read k2 before that update loses,
	// and what the first writer stored stays.
	stale := k2
	stale.State, stale.DeletionDate, stale.UpdatedAt = store.KeyDisabled, nil, at(2*time.Hour)
	wantErr(t, "UpdateKey(k2) with the UpdatedAt read before another update", s.UpdateKey(ctx, stale, read), store.ErrStale)
	got, _ = s.GetKey(ctx, "k2")
	check(t, "GetKey(k2) after a stale UpdateKey", got, k2)
	// PrimaryVersion belongs to AddKeyVersion: UpdateKey leaves it.
	moved := k2
	moved.PrimaryVersion, moved.UpdatedAt = k2.PrimaryVersion+5, at(3*time.Hour)
	noErr(t, "UpdateKey(k2, PrimaryVersion changed)", s.UpdateKey(ctx, moved, k2.UpdatedAt))
	got, _ = s.GetKey(ctx, "k2")
	if got.PrimaryVersion != k2.PrimaryVersion {
		t.Errorf("UpdateKey moved PrimaryVersion to %d (want %d: AddKeyVersion owns it)", got.PrimaryVersion, k2.PrimaryVersion)
	}
	k2.UpdatedAt = moved.UpdatedAt
	k3.Alias = "db"
	wantErr(t, "UpdateKey(k3 alias taken)", s.UpdateKey(ctx, k3, time.Time{}), store.ErrConflict)
	wantErr(t, "UpdateKey(missing)", s.UpdateKey(ctx, store.MasterKey{ID: "missing", Region: "x", State: "enabled"}, time.Time{}), store.ErrNotFound)

	// Versions.
	v2 := store.KeyVersion{KeyID: "k1", Version: 2, Material: []byte("wrapped-2"), CreatedAt: at(time.Hour)}
	noErr(t, "AddKeyVersion(k1, 2)", s.AddKeyVersion(ctx, v2))
	got, _ = s.GetKey(ctx, "k1")
	if got.PrimaryVersion != 2 {
		t.Errorf("GetKey(k1).PrimaryVersion after AddKeyVersion = %d, want 2", got.PrimaryVersion)
	}
	wantErr(t, "AddKeyVersion(k1, 2) again", s.AddKeyVersion(ctx, v2), store.ErrConflict)
	wantErr(t, "AddKeyVersion(missing key)", s.AddKeyVersion(ctx, store.KeyVersion{KeyID: "missing", Version: 1, Material: []byte("m")}), store.ErrNotFound)
	vs, err := s.GetKeyVersions(ctx, "k1")
	noErr(t, "GetKeyVersions(k1)", err)
	check(t, "GetKeyVersions(k1)", vs, []store.KeyVersion{v1, v2})

	// DeleteKey.
	noErr(t, "DeleteKey(k1)", s.DeleteKey(ctx, "k1"))
	_, err = s.GetKey(ctx, "k1")
	wantErr(t, "GetKey(k1) after delete", err, store.ErrNotFound)
	vs, err = s.GetKeyVersions(ctx, "k1")
	noErr(t, "GetKeyVersions(k1) after delete", err)
	check(t, "GetKeyVersions(k1) after delete", vs, nil)
	wantErr(t, "DeleteKey(k1) again", s.DeleteKey(ctx, "k1"), store.ErrNotFound)
	// The alias is free again.
	noErr(t, "CreateKey(new k1 with alias app)", s.CreateKey(ctx, k1, v1))
}

// --- secrets ---

func testSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	sec := store.Secret{
		Name: "app/db", Type: "postgres", Region: "default", KeyID: "k1", Description: "the db",
		Tags: map[string]string{"team": "core", "env": "prod"}, Metadata: map[string]string{"expires": "2030"},
		NextVersion: 1, CreatedAt: base, UpdatedAt: base,
	}
	noErr(t, "CreateSecret(app/db)", s.CreateSecret(ctx, sec))
	wantErr(t, "CreateSecret(app/db) again", s.CreateSecret(ctx, sec), store.ErrConflict)
	got, err := s.GetSecret(ctx, "app/db")
	noErr(t, "GetSecret(app/db)", err)
	check(t, "GetSecret(app/db)", got, sec)
	_, err = s.GetSecret(ctx, "missing")
	wantErr(t, "GetSecret(missing)", err, store.ErrNotFound)
	if err != nil && !strings.Contains(err.Error(), "missing") {
		t.Errorf("GetSecret(missing) err = %q, want it to name the secret", err)
	}

	sec.Description, sec.Tags, sec.Metadata = "changed", map[string]string{"team": "x"}, nil
	sec.NextVersion, sec.UpdatedAt = 5, at(time.Hour)
	sec.DeletedAt, sec.PurgeAt = ptr(at(time.Hour)), ptr(at(8*24*time.Hour))
	noErr(t, "UpdateSecret(app/db)", s.UpdateSecret(ctx, sec))
	got, _ = s.GetSecret(ctx, "app/db")
	check(t, "GetSecret(app/db) after UpdateSecret", got, sec)
	sec.DeletedAt, sec.PurgeAt = nil, nil
	noErr(t, "UpdateSecret(app/db) restore", s.UpdateSecret(ctx, sec))
	got, _ = s.GetSecret(ctx, "app/db")
	check(t, "GetSecret(app/db) after restore", got, sec)
	wantErr(t, "UpdateSecret(missing)", s.UpdateSecret(ctx, store.Secret{Name: "missing", Type: "x", Region: "x", KeyID: "x"}), store.ErrNotFound)

	mkSecret(t, s, "other")
	n, err := s.CountSecrets(ctx)
	noErr(t, "CountSecrets", err)
	if n != 2 {
		t.Errorf("CountSecrets = %d, want 2", n)
	}
}

func testListSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	names := []string{"a_b", "axb", "a%c", "abc", "a\\d", "a", "b", "app/db/x", "app/dbx", "app/db/y", "é1", "éa", "f", "a_", "a__z"}
	for _, n := range names {
		mkSecret(t, s, n)
	}
	del, _ := s.GetSecret(ctx, "app/db/y")
	del.DeletedAt = ptr(at(time.Hour))
	noErr(t, "UpdateSecret(app/db/y deleted)", s.UpdateSecret(ctx, del))

	for _, tc := range []struct {
		p    store.ListSecretsParams
		want []string
	}{
		{store.ListSecretsParams{Prefix: "a_"}, []string{"a_", "a__z", "a_b"}},
		{store.ListSecretsParams{Prefix: "a__"}, []string{"a__z"}},
		{store.ListSecretsParams{Prefix: "a%"}, []string{"a%c"}},
		{store.ListSecretsParams{Prefix: "a\\"}, []string{"a\\d"}},
		{store.ListSecretsParams{Prefix: "app/db/"}, []string{"app/db/x"}},
		{store.ListSecretsParams{Prefix: "app/db/", IncludeDeleted: true}, []string{"app/db/x", "app/db/y"}},
		{store.ListSecretsParams{Prefix: "app/db"}, []string{"app/db/x", "app/dbx"}},
		{store.ListSecretsParams{Prefix: "é"}, []string{"é1", "éa"}},
		{store.ListSecretsParams{Prefix: "zz"}, nil},
		{store.ListSecretsParams{Prefix: "A"}, nil},
		{store.ListSecretsParams{}, []string{"a", "a%c", "a\\d", "a_", "a__z", "a_b", "abc", "app/db/x", "app/dbx", "axb", "b", "f", "é1", "éa"}},
		{store.ListSecretsParams{Limit: 3}, []string{"a", "a%c", "a\\d"}},
		{store.ListSecretsParams{After: "a\\d", Limit: 3}, []string{"a_", "a__z", "a_b"}},
		{store.ListSecretsParams{Prefix: "a", After: "a_b"}, []string{"abc", "app/db/x", "app/dbx", "axb"}},
		{store.ListSecretsParams{After: "f"}, []string{"é1", "éa"}},
		// Globs filter in the query: '*' any run, '?' one character,
		// '%', '_' and '\' literal, case-sensitive, OR of several.
		{store.ListSecretsParams{Globs: []string{"app/*"}}, []string{"app/db/x", "app/dbx"}},
		{store.ListSecretsParams{Globs: []string{"app/*", "a_?"}}, []string{"a_b", "app/db/x", "app/dbx"}},
		{store.ListSecretsParams{Globs: []string{"a_*"}}, []string{"a_", "a__z", "a_b"}},
		{store.ListSecretsParams{Globs: []string{"a%*"}}, []string{"a%c"}},
		{store.ListSecretsParams{Globs: []string{"a\\?"}}, []string{"a\\d"}},
		{store.ListSecretsParams{Globs: []string{"a?b"}}, []string{"a_b", "axb"}},
		{store.ListSecretsParams{Globs: []string{"A*", "*X"}}, nil},
		{store.ListSecretsParams{Globs: []string{"*b*"}, After: "a_b", Limit: 2}, []string{"abc", "app/db/x"}},
		{store.ListSecretsParams{Globs: []string{"app/db/*"}, IncludeDeleted: true}, []string{"app/db/x", "app/db/y"}},
		{store.ListSecretsParams{Globs: []string{"[a]*"}}, nil},
	} {
		list, err := s.ListSecrets(ctx, tc.p)
		noErr(t, "ListSecrets", err)
		var got []string
		for _, x := range list {
			got = append(got, x.Name)
		}
		check(t, fmt.Sprintf("ListSecrets(%+v) names", tc.p), got, tc.want)
	}
	list, _ := s.ListSecrets(ctx, store.ListSecretsParams{Prefix: "app/db/x"})
	if len(list) == 1 {
		check(t, "ListSecrets(app/db/x)[0]", list[0], store.Secret{
			Name: "app/db/x", Type: "password", Region: "default", KeyID: "key-1",
			NextVersion: 1, CreatedAt: base, UpdatedAt: base,
		})
	}
}

func testDeleteSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, name := range []string{"doomed", "kept"} {
		mkSecret(t, s, name)
		mkVersion(t, s, name, 1)
		mkVersion(t, s, name, 2)
		noErr(t, "SetStage", s.SetStage(ctx, name, store.StageCurrent, 2))
		noErr(t, "SetStage", s.SetStage(ctx, name, store.StagePrevious, 1))
		noErr(t, "PutRotation", s.PutRotation(ctx, store.Rotation{Secret: name, Rotator: "random", Enabled: true, NextDueAt: ptr(base), UpdatedAt: base}))
		noErr(t, "CreateRun", s.CreateRun(ctx, store.RotationRun{ID: "run-" + name, Secret: name, State: store.RunRunning, StartedAt: base, UpdatedAt: base}))
		noErr(t, "AddRunStep", s.AddRunStep(ctx, store.RunStep{RunID: "run-" + name, Step: "create", StartedAt: base}))
	}
	noErr(t, "DeleteSecret(doomed)", s.DeleteSecret(ctx, "doomed"))

	_, err := s.GetSecret(ctx, "doomed")
	wantErr(t, "GetSecret(doomed)", err, store.ErrNotFound)
	_, err = s.GetVersion(ctx, "doomed", 1)
	wantErr(t, "GetVersion(doomed, 1)", err, store.ErrNotFound)
	vs, err := s.ListVersions(ctx, "doomed", true)
	if err != nil || len(vs) != 0 {
		t.Errorf("ListVersions(doomed) = %d versions, %v; want none", len(vs), err)
	}
	st, err := s.GetStages(ctx, "doomed")
	if err != nil || len(st) != 0 {
		t.Errorf("GetStages(doomed) = %v, %v; want empty", st, err)
	}
	_, err = s.GetRotation(ctx, "doomed")
	wantErr(t, "GetRotation(doomed)", err, store.ErrNotFound)
	_, err = s.GetRun(ctx, "run-doomed")
	wantErr(t, "GetRun(run-doomed)", err, store.ErrNotFound)
	steps, err := s.ListRunSteps(ctx, "run-doomed")
	if err != nil || len(steps) != 0 {
		t.Errorf("ListRunSteps(run-doomed) = %v, %v; want none", steps, err)
	}
	wantErr(t, "DeleteSecret(doomed) again", s.DeleteSecret(ctx, "doomed"), store.ErrNotFound)

	// The other secret is untouched and the name is free again.
	if vs, _ := s.ListVersions(ctx, "kept", false); len(vs) != 2 {
		t.Errorf("ListVersions(kept) = %d versions, want 2", len(vs))
	}
	if _, err := s.GetRun(ctx, "run-kept"); err != nil {
		t.Errorf("GetRun(run-kept) err = %v", err)
	}
	mkSecret(t, s, "doomed")
}

func testSecretsDueForPurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		deleted bool
		purgeAt *time.Time
	}{
		{"live", false, nil},
		{"due-1", true, ptr(at(-2 * time.Hour))},
		{"due-2", true, ptr(at(-time.Hour))},
		{"due-now", true, ptr(base)},
		{"later", true, ptr(at(time.Hour))},
		{"deleted-no-purge", true, nil},
	} {
		sec := mkSecret(t, s, tc.name)
		if tc.deleted {
			sec.DeletedAt, sec.PurgeAt = ptr(at(-24*time.Hour)), tc.purgeAt
			noErr(t, "UpdateSecret", s.UpdateSecret(ctx, sec))
		}
	}
	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{0, []string{"due-1", "due-2", "due-now"}},
		{2, []string{"due-1", "due-2"}},
	} {
		got, err := s.SecretsDueForPurge(ctx, base, tc.limit)
		noErr(t, "SecretsDueForPurge", err)
		check(t, fmt.Sprintf("SecretsDueForPurge(base, %d)", tc.limit), got, tc.want)
	}
}

// --- versions and stages ---

func testVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	mkSecret(t, s, "s")
	v1 := mkVersion(t, s, "s", 1)
	v2 := mkVersion(t, s, "s", 2)
	v2.Envelope = bytes.Repeat([]byte{0, 0xff, 7}, 400)
	// Version 3 carries a large binary envelope.
	v3 := v2
	v3.Version = 3
	noErr(t, "InsertVersion(s, 3)", s.InsertVersion(ctx, v3))

	wantErr(t, "InsertVersion(s, 1) again", s.InsertVersion(ctx, v1), store.ErrConflict)
	wantErr(t, "InsertVersion(missing, 1)", s.InsertVersion(ctx, store.SecretVersion{Secret: "missing", Version: 1, Envelope: []byte("e"), KeyID: "k", KeyVersion: 1}), store.ErrNotFound)

	got, err := s.GetVersion(ctx, "s", 3)
	noErr(t, "GetVersion(s, 3)", err)
	check(t, "GetVersion(s, 3)", got, v3)
	_, err = s.GetVersion(ctx, "s", 9)
	wantErr(t, "GetVersion(s, 9)", err, store.ErrNotFound)
	_, err = s.GetVersion(ctx, "nope", 1)
	wantErr(t, "GetVersion(nope, 1)", err, store.ErrNotFound)

	noErr(t, "SetStage(current, 3)", s.SetStage(ctx, "s", store.StageCurrent, 3))
	noErr(t, "SetStage(previous, 1)", s.SetStage(ctx, "s", store.StagePrevious, 1))
	v1.Stages = []string{store.StagePrevious}
	v3.Stages = []string{store.StageCurrent}
	v2.Envelope = mkVersionEnvelope("s", 2)

	list, err := s.ListVersions(ctx, "s", true)
	noErr(t, "ListVersions(s, true)", err)
	check(t, "ListVersions(s, true)", list, []store.SecretVersion{v1, v2, v3})

	list, err = s.ListVersions(ctx, "s", false)
	noErr(t, "ListVersions(s, false)", err)
	for _, v := range []*store.SecretVersion{&v1, &v2, &v3} {
		v.Envelope = nil
	}
	check(t, "ListVersions(s, false)", list, []store.SecretVersion{v1, v2, v3})

	list, err = s.ListVersions(ctx, "nope", true)
	if err != nil || len(list) != 0 {
		t.Errorf("ListVersions(nope) = %v, %v; want none", list, err)
	}
}

func mkVersionEnvelope(secret string, n int64) []byte {
	return fmt.Appendf(nil, "env-%s-%d", secret, n)
}

func testStages(t *testing.T, s store.Store) {
	ctx := t.Context()
	mkSecret(t, s, "s")
	for n := int64(1); n <= 3; n++ {
		mkVersion(t, s, "s", n)
	}
	stagesOf := func(n int64) []string {
		t.Helper()
		v, err := s.GetVersion(ctx, "s", n)
		noErr(t, "GetVersion", err)
		return v.Stages
	}

	steps := []struct {
		name   string
		do     func() error
		stages map[string]int64
		byVer  map[int64][]string
	}{
		{"current -> 1", func() error { return s.SetStage(ctx, "s", store.StageCurrent, 1) },
			map[string]int64{"current": 1}, map[int64][]string{1: {"current"}}},
		{"pending -> 2", func() error { return s.SetStage(ctx, "s", store.StagePending, 2) },
			map[string]int64{"current": 1, "pending": 2}, map[int64][]string{1: {"current"}, 2: {"pending"}}},
		{"finish: previous -> 1, current -> 2, clear pending", func() error {
			return s.InTx(ctx, func(tx store.Ops) error {
				if err := tx.SetStage(ctx, "s", store.StagePrevious, 1); err != nil {
					return err
				}
				if err := tx.SetStage(ctx, "s", store.StageCurrent, 2); err != nil {
					return err
				}
				return tx.ClearStage(ctx, "s", store.StagePending)
			})
		}, map[string]int64{"current": 2, "previous": 1}, map[int64][]string{1: {"previous"}, 2: {"current"}, 3: nil}},
		{"pending -> 2 as well (two stages on one version)", func() error { return s.SetStage(ctx, "s", store.StagePending, 2) },
			map[string]int64{"current": 2, "previous": 1, "pending": 2}, map[int64][]string{1: {"previous"}, 2: {"current", "pending"}}},
		{"clear pending", func() error { return s.ClearStage(ctx, "s", store.StagePending) },
			map[string]int64{"current": 2, "previous": 1}, map[int64][]string{2: {"current"}}},
		{"clear absent stage", func() error { return s.ClearStage(ctx, "s", store.StagePending) },
			map[string]int64{"current": 2, "previous": 1}, nil},
	}
	for _, st := range steps {
		noErr(t, st.name, st.do())
		got, err := s.GetStages(ctx, "s")
		noErr(t, "GetStages", err)
		check(t, "GetStages(s) after "+st.name, got, st.stages)
		for n, want := range st.byVer {
			check(t, fmt.Sprintf("GetVersion(s, %d).Stages after %s", n, st.name), stagesOf(n), want)
		}
	}

	wantErr(t, "SetStage(s, current, 9)", s.SetStage(ctx, "s", store.StageCurrent, 9), store.ErrNotFound)
	wantErr(t, "SetStage(nope, current, 1)", s.SetStage(ctx, "nope", store.StageCurrent, 1), store.ErrNotFound)
	if got, _ := s.GetStages(ctx, "s"); got["current"] != 2 {
		t.Errorf("GetStages(s)[current] after refused SetStage = %d, want 2", got["current"])
	}

	for _, tc := range []struct {
		version int64
		want    error
	}{
		{2, store.ErrConflict}, // current
		{1, store.ErrConflict}, // previous
		{9, store.ErrNotFound},
		{3, nil},
		{3, store.ErrNotFound},
	} {
		err := s.DeleteVersion(ctx, "s", tc.version)
		if tc.want == nil {
			noErr(t, fmt.Sprintf("DeleteVersion(s, %d)", tc.version), err)
		} else {
			wantErr(t, fmt.Sprintf("DeleteVersion(s, %d)", tc.version), err, tc.want)
		}
	}
	noErr(t, "ClearStage(previous)", s.ClearStage(ctx, "s", store.StagePrevious))
	noErr(t, "DeleteVersion(s, 1) once unstaged", s.DeleteVersion(ctx, "s", 1))
	if vs, _ := s.ListVersions(ctx, "s", false); len(vs) != 1 || vs[0].Version != 2 {
		t.Errorf("ListVersions(s) after deletes = %+v, want only version 2", vs)
	}
	got, err := s.GetStages(ctx, "nope")
	if err != nil || len(got) != 0 {
		t.Errorf("GetStages(nope) = %v, %v; want empty", got, err)
	}
}

func testSwapEnvelope(t *testing.T, s store.Store) {
	ctx := t.Context()
	mkSecret(t, s, "s")
	v := mkVersion(t, s, "s", 1)
	p := store.SwapEnvelopeParams{Secret: "s", Version: 1, Old: v.Envelope, New: []byte("rewrapped"), NewKeyVersion: 2}
	noErr(t, "SwapEnvelope(old -> rewrapped)", s.SwapEnvelope(ctx, p))
	got, _ := s.GetVersion(ctx, "s", 1)
	if !bytes.Equal(got.Envelope, []byte("rewrapped")) || got.KeyVersion != 2 {
		t.Errorf("GetVersion after SwapEnvelope = envelope %q key version %d, want rewrapped, 2", got.Envelope, got.KeyVersion)
	}
	wantErr(t, "SwapEnvelope(stale old)", s.SwapEnvelope(ctx, p), store.ErrConflict)
	got, _ = s.GetVersion(ctx, "s", 1)
	if !bytes.Equal(got.Envelope, []byte("rewrapped")) {
		t.Errorf("envelope after refused swap = %q, want rewrapped", got.Envelope)
	}
	p.Version = 7
	wantErr(t, "SwapEnvelope(missing version)", s.SwapEnvelope(ctx, p), store.ErrNotFound)
}

func testVersionsNotOnKeyVersion(t *testing.T, s store.Store) {
	ctx := t.Context()
	var want []string
	noErr(t, "seed", s.InTx(ctx, func(tx store.Ops) error {
		for _, name := range []string{"b", "a", "c_1", "c%2"} {
			mkSecret(t, tx, name)
			for n := int64(1); n <= 5; n++ {
				v := store.SecretVersion{Secret: name, Version: n, Envelope: []byte("e"), KeyID: "k1", KeyVersion: int(n % 3), CreatedAt: base}
				if name == "c%2" {
					v.KeyID = "k2"
				}
				if err := tx.InsertVersion(ctx, v); err != nil {
					return err
				}
				if v.KeyID == "k1" && v.KeyVersion != 2 {
					want = append(want, fmt.Sprintf("%s/%d", name, n))
				}
			}
		}
		return nil
	}))
	slices.Sort(want) // names are ASCII and versions one digit

	var got []string
	p := store.StaleVersionsParams{KeyID: "k1", KeyVersion: 2, Limit: 4}
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("VersionsNotOnKeyVersion does not advance")
		}
		vs, err := s.VersionsNotOnKeyVersion(ctx, p)
		noErr(t, "VersionsNotOnKeyVersion", err)
		if len(vs) > p.Limit {
			t.Fatalf("VersionsNotOnKeyVersion(limit %d) returned %d", p.Limit, len(vs))
		}
		if len(vs) == 0 {
			break
		}
		for _, v := range vs {
			if v.KeyID != "k1" || v.KeyVersion == 2 || len(v.Envelope) == 0 {
				t.Errorf("VersionsNotOnKeyVersion returned %s/%d on key %s version %d (envelope %d bytes)", v.Secret, v.Version, v.KeyID, v.KeyVersion, len(v.Envelope))
			}
			got = append(got, fmt.Sprintf("%s/%d", v.Secret, v.Version))
		}
		last := vs[len(vs)-1]
		p.AfterSecret, p.AfterVersion = last.Secret, last.Version
	}
	check(t, "VersionsNotOnKeyVersion pages", got, want)
}

// --- rotations and leases ---

func testRotations(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.EarliestDue(ctx)
	wantErr(t, "EarliestDue on empty store", err, store.ErrNotFound)
	for _, n := range []string{"a", "b", "c"} {
		mkSecret(t, s, n)
	}
	ra := store.Rotation{
		Secret: "a", Rotator: "postgres", Config: []byte(`{"host":"db"}`), Schedule: "rate(30 days)",
		Window: 2 * time.Hour, Enabled: true, NextDueAt: ptr(at(time.Hour)), LastRotatedAt: ptr(at(-time.Hour)),
		LastError: "boom", ConsecutiveFailures: 2, UpdatedAt: base,
		Target: []byte(`[{"name":"host","value":"db"}]`),
	}
	rb := store.Rotation{Secret: "b", Rotator: "random", Enabled: false, NextDueAt: ptr(at(-time.Hour)), UpdatedAt: base}
	rc := store.Rotation{Secret: "c", Rotator: "plugin:x", Enabled: true, UpdatedAt: base} // manual only
	for _, r := range []store.Rotation{ra, rb, rc} {
		noErr(t, "PutRotation("+r.Secret+")", s.PutRotation(ctx, r))
	}
	wantErr(t, "PutRotation(missing secret)", s.PutRotation(ctx, store.Rotation{Secret: "missing", Rotator: "random", UpdatedAt: base}), store.ErrNotFound)
	got, err := s.GetRotation(ctx, "a")
	noErr(t, "GetRotation(a)", err)
	check(t, "GetRotation(a)", got, ra)
	_, err = s.GetRotation(ctx, "missing")
	wantErr(t, "GetRotation(missing)", err, store.ErrNotFound)

	due, err := s.EarliestDue(ctx)
	noErr(t, "EarliestDue", err)
	check(t, "EarliestDue (b is disabled)", due, at(time.Hour))

	ra.Schedule, ra.NextDueAt, ra.LastError, ra.ConsecutiveFailures = "rate(1 day)", ptr(at(30*time.Minute)), "", 0
	ra.Target = []byte(`[{"name":"host","value":"db2"}]`)
	// PutRotation never writes the lease: the one it is given is ignored.
	withLease := ra
	withLease.LeaseOwner, withLease.LeaseExpiresAt = "d1", ptr(at(time.Minute))
	noErr(t, "PutRotation(a) replace", s.PutRotation(ctx, withLease))
	got, _ = s.GetRotation(ctx, "a")
	check(t, "GetRotation(a) after replace (lease not written)", got, ra)
	// The binding comes back from a claim too (the engine checks it).
	claimed, err := s.ClaimRotation(ctx, "a", store.ClaimParams{Owner: "d1", Now: at(0), LeaseFor: time.Minute})
	noErr(t, "ClaimRotation(a)", err)
	check(t, "ClaimRotation(a) target", string(claimed.Target), string(ra.Target))
	// A replace keeps the lease it does not name.
	noErr(t, "PutRotation(a) after claim", s.PutRotation(ctx, ra))
	ra.LeaseOwner, ra.LeaseExpiresAt = "d1", claimed.LeaseExpiresAt
	got, _ = s.GetRotation(ctx, "a")
	check(t, "GetRotation(a) after a replace of the claimed row", got, ra)

	list, err := s.ListRotations(ctx, store.ListRotationsParams{})
	noErr(t, "ListRotations", err)
	check(t, "ListRotations", list, []store.Rotation{ra, rb, rc})
	list, err = s.ListRotations(ctx, store.ListRotationsParams{After: "a", Limit: 1})
	noErr(t, "ListRotations(after a, limit 1)", err)
	check(t, "ListRotations(after a, limit 1)", list, []store.Rotation{rb})
	list, err = s.ListRotations(ctx, store.ListRotationsParams{Globs: []string{"c", "x*"}})
	noErr(t, "ListRotations(globs)", err)
	check(t, "ListRotations(globs)", list, []store.Rotation{rc})
	due, _ = s.EarliestDue(ctx)
	check(t, "EarliestDue after replace", due, at(30*time.Minute))

	// A rotation leased by someone counts as due when its lease ends (it
	// cannot be claimed before), so waiting runners do not spin on it.
	_, err = s.ClaimRotation(ctx, "a", store.ClaimParams{Owner: "daemon-x", Now: at(2 * time.Minute), LeaseFor: 43 * time.Minute})
	noErr(t, "ClaimRotation(a, daemon-x) until +45m", err)
	due, _ = s.EarliestDue(ctx)
	check(t, "EarliestDue with a live lease", due, at(45*time.Minute))
	// The lease ends before the due time (its owner claims it again, shorter).
	_, err = s.ClaimRotation(ctx, "a", store.ClaimParams{Owner: "daemon-x", Now: at(0), LeaseFor: 10 * time.Minute})
	noErr(t, "ClaimRotation(a, daemon-x) until +10m", err)
	due, _ = s.EarliestDue(ctx)
	check(t, "EarliestDue with a lease ending first", due, at(30*time.Minute))
}

func testClaimDueRotations(t *testing.T, s store.Store) {
	ctx := t.Context()
	type row struct {
		name      string
		enabled   bool
		due       *time.Time
		owner     string
		expires   *time.Time
		wantClaim bool
	}
	rows := []row{
		{"due-late", true, ptr(at(-time.Minute)), "", nil, true},
		{"due-early", true, ptr(at(-time.Hour)), "", nil, true},
		{"due-now", true, ptr(base), "", nil, true},
		{"not-due", true, ptr(at(time.Hour)), "", nil, false},
		{"disabled", false, ptr(at(-time.Hour)), "", nil, false},
		{"manual", true, nil, "", nil, false},
		{"leased", true, ptr(at(-time.Hour)), "other", ptr(at(time.Minute)), false},
		{"lease-expired", true, ptr(at(-30 * time.Minute)), "crashed", ptr(at(-time.Second)), true},
		{"lease-expires-now", true, ptr(at(-20 * time.Minute)), "crashed", ptr(base), true},
	}
	for _, r := range rows {
		mkSecret(t, s, r.name)
		noErr(t, "PutRotation("+r.name+")", s.PutRotation(ctx, store.Rotation{
			Secret: r.name, Rotator: "random", Enabled: r.enabled, NextDueAt: r.due, UpdatedAt: base,
		}))
		if r.owner != "" {
			_, err := s.ClaimRotation(ctx, r.name, store.ClaimParams{Owner: r.owner, Now: r.expires.Add(-time.Hour), LeaseFor: time.Hour})
			noErr(t, "ClaimRotation("+r.name+", "+r.owner+")", err)
		}
	}
	p := store.ClaimParams{Owner: "me", Now: base, LeaseFor: 5 * time.Minute, Limit: 3}
	first, err := s.ClaimDueRotations(ctx, p)
	noErr(t, "ClaimDueRotations(limit 3)", err)
	second, err := s.ClaimDueRotations(ctx, p)
	noErr(t, "ClaimDueRotations(limit 3) again", err)
	third, err := s.ClaimDueRotations(ctx, p)
	noErr(t, "ClaimDueRotations(limit 3) third", err)

	names := func(rs []store.Rotation) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Secret)
			if r.LeaseOwner != "me" || r.LeaseExpiresAt == nil || !r.LeaseExpiresAt.Equal(at(5*time.Minute).Truncate(Precision)) {
				t.Errorf("claimed %s lease = %q until %v, want me until %v", r.Secret, r.LeaseOwner, r.LeaseExpiresAt, at(5*time.Minute))
			}
		}
		return out
	}
	// Ordered by due time.
	check(t, "ClaimDueRotations first batch", names(first), []string{"due-early", "lease-expired", "lease-expires-now"})
	check(t, "ClaimDueRotations second batch", names(second), []string{"due-late", "due-now"})
	check(t, "ClaimDueRotations third batch", names(third), nil)

	got, _ := s.GetRotation(ctx, "leased")
	if got.LeaseOwner != "other" {
		t.Errorf("GetRotation(leased).LeaseOwner = %q, want other (untouched)", got.LeaseOwner)
	}
	// Another daemon cannot take them while the leases live...
	other := store.ClaimParams{Owner: "you", Now: at(4 * time.Minute), LeaseFor: 10 * time.Minute, Limit: 100}
	rs, err := s.ClaimDueRotations(ctx, other)
	noErr(t, "ClaimDueRotations(you, +4m)", err)
	check(t, "ClaimDueRotations(you, +4m)", names2(rs), []string{"leased"})
	// ...and takes them all once they expire (me crashed).
	other.Now = at(5 * time.Minute)
	rs, err = s.ClaimDueRotations(ctx, other)
	noErr(t, "ClaimDueRotations(you, +5m)", err)
	check(t, "ClaimDueRotations(you, +5m)", names2(rs), []string{"due-early", "lease-expired", "lease-expires-now", "due-late", "due-now"})
	wantErr(t, "RenewRotationLease(due-early, me) after reclaim", s.RenewRotationLease(ctx, "due-early", "me", at(time.Hour)), store.ErrLeaseLost)
	wantErr(t, "ReleaseRotation(due-early, me) after reclaim", s.ReleaseRotation(ctx, "due-early", "me"), store.ErrLeaseLost)
}

func names2(rs []store.Rotation) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Secret)
	}
	return out
}

// testClaimConcurrent: 200 due rotations, 8 goroutines (split over a and
// b) claiming in batches of 7 until nothing is left. Every rotation must be
// claimed exactly once.
func testClaimConcurrent(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const total, workers, batch = 200, 8, 7
	noErr(t, "seed", a.InTx(ctx, func(tx store.Ops) error {
		for i := range total {
			name := fmt.Sprintf("s%03d", i)
			mkSecret(t, tx, name)
			if err := tx.PutRotation(ctx, store.Rotation{Secret: name, Rotator: "random", Enabled: true,
				NextDueAt: ptr(at(-time.Duration(i) * time.Second)), UpdatedAt: base}); err != nil {
				return err
			}
		}
		return nil
	}))
	var (
		mu    sync.Mutex
		seen  = map[string]string{}
		dups  []string
		wg    sync.WaitGroup
		errCh = make(chan error, workers)
	)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		owner := fmt.Sprintf("worker-%d", w)
		wg.Go(func() {
			for {
				rs, err := s.ClaimDueRotations(ctx, store.ClaimParams{Owner: owner, Now: base, LeaseFor: time.Hour, Limit: batch})
				if err != nil {
					errCh <- fmt.Errorf("%s: ClaimDueRotations: %w", owner, err)
					return
				}
				if len(rs) > batch {
					errCh <- fmt.Errorf("%s: ClaimDueRotations(limit %d) returned %d", owner, batch, len(rs))
					return
				}
				if len(rs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rs {
					if prev, ok := seen[r.Secret]; ok {
						dups = append(dups, fmt.Sprintf("%s by %s and %s", r.Secret, prev, owner))
					}
					seen[r.Secret] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Error(err)
	}
	if len(dups) > 0 {
		t.Errorf("rotations claimed twice: %v", dups)
	}
	if len(seen) != total {
		t.Errorf("claimed %d distinct rotations, want %d", len(seen), total)
	}
	for name, owner := range seen {
		r, err := b.GetRotation(ctx, name)
		if err != nil || r.LeaseOwner != owner {
			t.Errorf("GetRotation(%s).LeaseOwner = %q, %v; want %q", name, r.LeaseOwner, err, owner)
			break
		}
	}
}

func testClaimRotation(t *testing.T, s store.Store) {
	ctx := t.Context()
	mkSecret(t, s, "s")
	noErr(t, "PutRotation", s.PutRotation(ctx, store.Rotation{Secret: "s", Rotator: "random", Enabled: false, NextDueAt: ptr(at(24 * time.Hour)), UpdatedAt: base}))
	claim := func(owner string, now time.Time) (store.Rotation, error) {
		return s.ClaimRotation(ctx, "s", store.ClaimParams{Owner: owner, Now: now, LeaseFor: time.Minute})
	}

	r, err := claim("A", base)
	noErr(t, "ClaimRotation(s, A) not due and disabled", err)
	if r.LeaseOwner != "A" || r.LeaseExpiresAt == nil || !r.LeaseExpiresAt.Equal(at(time.Minute).Truncate(Precision)) {
		t.Errorf("ClaimRotation(s, A) lease = %q until %v, want A until %v", r.LeaseOwner, r.LeaseExpiresAt, at(time.Minute))
	}
	_, err = claim("B", at(30*time.Second))
	wantErr(t, "ClaimRotation(s, B) while A holds", err, store.ErrConflict)
	_, err = s.ClaimRotation(ctx, "missing", store.ClaimParams{Owner: "A", Now: base, LeaseFor: time.Minute})
	wantErr(t, "ClaimRotation(missing)", err, store.ErrNotFound)

	for _, tc := range []struct {
		call string
		err  error
		want error
	}{
		{"RenewRotationLease(s, B)", s.RenewRotationLease(ctx, "s", "B", at(time.Hour)), store.ErrLeaseLost},
		{"RenewRotationLease(s, \"\")", s.RenewRotationLease(ctx, "s", "", at(time.Hour)), store.ErrLeaseLost},
		{"RenewRotationLease(missing, A)", s.RenewRotationLease(ctx, "missing", "A", at(time.Hour)), store.ErrLeaseLost},
		{"ReleaseRotation(s, B)", s.ReleaseRotation(ctx, "s", "B"), store.ErrLeaseLost},
		{"RenewRotationLease(s, A)", s.RenewRotationLease(ctx, "s", "A", at(10*time.Minute)), nil},
	} {
		if tc.want == nil {
			noErr(t, tc.call, tc.err)
		} else {
			wantErr(t, tc.call, tc.err, tc.want)
		}
	}
	_, err = claim("B", at(5*time.Minute))
	wantErr(t, "ClaimRotation(s, B) after A renewed to +10m", err, store.ErrConflict)
	_, err = claim("A", at(5*time.Minute))
	noErr(t, "ClaimRotation(s, A) by the holder", err)

	noErr(t, "ReleaseRotation(s, A)", s.ReleaseRotation(ctx, "s", "A"))
	wantErr(t, "ReleaseRotation(s, A) again", s.ReleaseRotation(ctx, "s", "A"), store.ErrLeaseLost)
	got, _ := s.GetRotation(ctx, "s")
	if got.LeaseOwner != "" || got.LeaseExpiresAt != nil {
		t.Errorf("GetRotation(s) after release lease = %q until %v, want none", got.LeaseOwner, got.LeaseExpiresAt)
	}
	_, err = claim("B", at(5*time.Minute))
	noErr(t, "ClaimRotation(s, B) after release", err)
	// Expired leases can be taken over.
	_, err = claim("C", at(6*time.Minute))
	noErr(t, "ClaimRotation(s, C) after B's lease expired", err)
	wantErr(t, "RenewRotationLease(s, B) after takeover", s.RenewRotationLease(ctx, "s", "B", at(time.Hour)), store.ErrLeaseLost)
}

// --- runs ---

func testRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	mkSecret(t, s, "s")
	mkSecret(t, s, "t")
	r1 := store.RotationRun{ID: "r1", Secret: "s", Trigger: "scheduled", Step: "create", State: store.RunRunning,
		PendingVersion: 2, Attempt: 1, Options: []byte(`{"x":1}`), StartedAt: base, UpdatedAt: base}
	r2 := store.RotationRun{ID: "r2", Secret: "s", Trigger: "manual", State: store.RunFailed,
		StartedAt: at(time.Hour), UpdatedAt: at(time.Hour), EndedAt: ptr(at(2 * time.Hour)), Error: "set: refused"}
	r3 := store.RotationRun{ID: "r3", Secret: "s", Trigger: "emergency", State: store.RunRunning, StartedAt: at(2 * time.Hour), UpdatedAt: at(2 * time.Hour)}
	r4 := store.RotationRun{ID: "r4", Secret: "t", Trigger: "manual", State: store.RunSucceeded, StartedAt: base, UpdatedAt: base}
	for _, r := range []store.RotationRun{r1, r2, r3, r4} {
		noErr(t, "CreateRun("+r.ID+")", s.CreateRun(ctx, r))
	}
	wantErr(t, "CreateRun(r1) again", s.CreateRun(ctx, r1), store.ErrConflict)
	wantErr(t, "CreateRun(missing secret)", s.CreateRun(ctx, store.RotationRun{ID: "r9", Secret: "missing", State: store.RunRunning, StartedAt: base, UpdatedAt: base}), store.ErrNotFound)

	got, err := s.GetRun(ctx, "r1")
	noErr(t, "GetRun(r1)", err)
	check(t, "GetRun(r1)", got, r1)
	_, err = s.GetRun(ctx, "r9")
	wantErr(t, "GetRun(r9)", err, store.ErrNotFound)

	r1.Step, r1.State, r1.Attempt, r1.UpdatedAt, r1.EndedAt, r1.Error = "finish", store.RunSucceeded, 2, at(time.Minute), ptr(at(time.Minute)), ""
	noErr(t, "UpdateRun(r1)", s.UpdateRun(ctx, r1))
	got, _ = s.GetRun(ctx, "r1")
	check(t, "GetRun(r1) after UpdateRun", got, r1)
	wantErr(t, "UpdateRun(r9)", s.UpdateRun(ctx, store.RotationRun{ID: "r9", State: store.RunRunning}), store.ErrNotFound)

	for _, tc := range []struct {
		secret string
		limit  int
		want   []store.RotationRun
	}{
		{"s", 0, []store.RotationRun{r3, r2, r1}},
		{"s", 2, []store.RotationRun{r3, r2}},
		{"t", 0, []store.RotationRun{r4}},
		{"missing", 0, nil},
	} {
		list, err := s.ListRuns(ctx, tc.secret, tc.limit)
		noErr(t, "ListRuns", err)
		check(t, fmt.Sprintf("ListRuns(%s, %d)", tc.secret, tc.limit), list, tc.want)
	}
	un, err := s.UnfinishedRuns(ctx)
	noErr(t, "UnfinishedRuns", err)
	check(t, "UnfinishedRuns", un, []store.RotationRun{r3})

	steps := []store.RunStep{
		{RunID: "r1", Step: "create", StartedAt: base, EndedAt: ptr(at(time.Second)), Result: "ok"},
		{RunID: "r1", Step: "set", StartedAt: at(time.Second), EndedAt: ptr(at(2 * time.Second)), Result: "failed", Error: "timeout"},
		{RunID: "r1", Step: "set", StartedAt: at(3 * time.Second)},
	}
	for _, st := range steps {
		noErr(t, "AddRunStep("+st.Step+")", s.AddRunStep(ctx, st))
	}
	wantErr(t, "AddRunStep(missing run)", s.AddRunStep(ctx, store.RunStep{RunID: "r9", Step: "create", StartedAt: base}), store.ErrNotFound)
	gotSteps, err := s.ListRunSteps(ctx, "r1")
	noErr(t, "ListRunSteps(r1)", err)
	check(t, "ListRunSteps(r1)", gotSteps, steps)
	gotSteps, err = s.ListRunSteps(ctx, "r2")
	if err != nil || len(gotSteps) != 0 {
		t.Errorf("ListRunSteps(r2) = %v, %v; want none", gotSteps, err)
	}
}

// --- outbox ---

func testOutbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	var evs []store.OutboxEvent
	var last int64
	for i := range 6 {
		e := store.OutboxEvent{Type: "version.current", Secret: fmt.Sprintf("s%d", i), Version: int64(i + 1),
			Payload: fmt.Appendf(nil, `{"i":%d}`, i), CreatedAt: at(time.Duration(i) * time.Minute)}
		id, err := s.AppendOutbox(ctx, e)
		noErr(t, "AppendOutbox", err)
		if id <= last {
			t.Errorf("AppendOutbox id = %d after %d, want increasing", id, last)
		}
		last, e.ID = id, id
		evs = append(evs, e)
	}
	ids := func(es []store.OutboxEvent) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}

	all, err := s.ListOutboxAfter(ctx, 0, 0)
	noErr(t, "ListOutboxAfter(0, 0)", err)
	check(t, "ListOutboxAfter(0, 0)", all, evs)
	page, err := s.ListOutboxAfter(ctx, evs[1].ID, 2)
	noErr(t, "ListOutboxAfter", err)
	check(t, "ListOutboxAfter(evs[1], 2)", page, evs[2:4])

	a, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: "A", Now: base, LeaseFor: time.Minute, Limit: 2})
	noErr(t, "ClaimOutbox(A, 2)", err)
	check(t, "ClaimOutbox(A, 2) ids", ids(a), ids(evs[:2]))
	for _, e := range a {
		if e.LeaseOwner != "A" || e.LeaseExpiresAt == nil || !e.LeaseExpiresAt.Equal(at(time.Minute).Truncate(Precision)) {
			t.Errorf("ClaimOutbox(A) event %d lease = %q until %v, want A until %v", e.ID, e.LeaseOwner, e.LeaseExpiresAt, at(time.Minute))
		}
		check(t, fmt.Sprintf("ClaimOutbox(A) event %d payload", e.ID), e.Payload, evs[e.ID-evs[0].ID].Payload)
	}
	b, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: "B", Now: base, LeaseFor: time.Minute, Limit: 3})
	noErr(t, "ClaimOutbox(B, 3)", err)
	check(t, "ClaimOutbox(B, 3) ids", ids(b), ids(evs[2:5]))

	noErr(t, "MarkDelivered(A's)", s.MarkDelivered(ctx, ids(a), at(30*time.Second)))
	noErr(t, "MarkDelivered(none)", s.MarkDelivered(ctx, nil, at(30*time.Second)))
	// After A's and B's leases expire, only B's undelivered events and the
	// last one are claimable again.
	c, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: "C", Now: at(2 * time.Minute), LeaseFor: time.Minute, Limit: 10})
	noErr(t, "ClaimOutbox(C, +2m)", err)
	check(t, "ClaimOutbox(C, +2m) ids", ids(c), ids(evs[2:6]))

	all, _ = s.ListOutboxAfter(ctx, 0, 0)
	for _, e := range all[:2] {
		if e.DeliveredAt == nil || !e.DeliveredAt.Equal(at(30*time.Second).Truncate(Precision)) {
			t.Errorf("event %d DeliveredAt = %v, want %v", e.ID, e.DeliveredAt, at(30*time.Second))
		}
	}
	noErr(t, "MarkDelivered(all)", s.MarkDelivered(ctx, ids(c), at(3*time.Minute)))
	none, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: "D", Now: at(time.Hour), LeaseFor: time.Minute, Limit: 10})
	noErr(t, "ClaimOutbox(D) all delivered", err)
	check(t, "ClaimOutbox(D) all delivered", ids(none), nil)

	// TrimOutbox deletes delivered events created before the cutoff.
	undelivered, err := s.AppendOutbox(ctx, store.OutboxEvent{Type: "x", CreatedAt: at(-time.Hour)})
	noErr(t, "AppendOutbox(old undelivered)", err)
	n, err := s.TrimOutbox(ctx, at(3*time.Minute))
	noErr(t, "TrimOutbox(+3m)", err)
	if n != 3 {
		t.Errorf("TrimOutbox(+3m) = %d, want 3", n)
	}
	rest, _ := s.ListOutboxAfter(ctx, 0, 0)
	check(t, "ids after TrimOutbox", ids(rest), append(ids(evs[3:]), undelivered))
}

func testOutboxConcurrent(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const total, workers, batch = 150, 6, 7
	noErr(t, "seed", a.InTx(ctx, func(tx store.Ops) error {
		for i := range total {
			if _, err := tx.AppendOutbox(ctx, store.OutboxEvent{Type: "e", Secret: fmt.Sprint(i), CreatedAt: base}); err != nil {
				return err
			}
		}
		return nil
	}))
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for {
				es, err := s.ClaimOutbox(ctx, store.ClaimParams{Owner: fmt.Sprint("w", w), Now: base, LeaseFor: time.Hour, Limit: batch})
				if err != nil {
					t.Errorf("worker %d: ClaimOutbox err = %v", w, err)
					return
				}
				if len(es) == 0 {
					return
				}
				ids := make([]int64, 0, len(es))
				mu.Lock()
				for _, e := range es {
					seen[e.ID]++
					ids = append(ids, e.ID)
				}
				mu.Unlock()
				if err := s.MarkDelivered(ctx, ids, base); err != nil {
					t.Errorf("worker %d: MarkDelivered err = %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != total {
		t.Errorf("claimed %d distinct events, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d claimed %d times, want once", id, n)
		}
	}
}

// --- tokens, policies, plugins, hooks ---

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	t1 := store.Token{ID: "t1", Hash: []byte{1, 2, 3}, Name: "ci", Policies: []string{"read-app", "admin"}, CreatedAt: base, ExpiresAt: ptr(at(24 * time.Hour))}
	t2 := store.Token{ID: "t2", Hash: []byte{4, 5, 6}, Name: "root", CreatedAt: at(time.Second)}
	noErr(t, "CreateToken(t1)", s.CreateToken(ctx, t1))
	noErr(t, "CreateToken(t2)", s.CreateToken(ctx, t2))
	wantErr(t, "CreateToken(same id)", s.CreateToken(ctx, store.Token{ID: "t1", Hash: []byte{9}, CreatedAt: base}), store.ErrConflict)
	wantErr(t, "CreateToken(same hash)", s.CreateToken(ctx, store.Token{ID: "t3", Hash: []byte{1, 2, 3}, CreatedAt: base}), store.ErrConflict)

	got, err := s.GetTokenByHash(ctx, []byte{1, 2, 3})
	noErr(t, "GetTokenByHash", err)
	check(t, "GetTokenByHash", got, t1)
	_, err = s.GetTokenByHash(ctx, []byte{7, 7})
	wantErr(t, "GetTokenByHash(unknown)", err, store.ErrNotFound)
	got, err = s.GetToken(ctx, "t2")
	noErr(t, "GetToken(t2)", err)
	check(t, "GetToken(t2)", got, t2)
	_, err = s.GetToken(ctx, "t9")
	wantErr(t, "GetToken(t9)", err, store.ErrNotFound)

	noErr(t, "RevokeToken(t1)", s.RevokeToken(ctx, "t1", at(time.Hour)))
	noErr(t, "RevokeToken(t1) again", s.RevokeToken(ctx, "t1", at(2*time.Hour)))
	wantErr(t, "RevokeToken(t9)", s.RevokeToken(ctx, "t9", base), store.ErrNotFound)
	t1.RevokedAt = ptr(at(time.Hour)) // the first revocation time stays
	list, err := s.ListTokens(ctx, store.Page{})
	noErr(t, "ListTokens", err)
	check(t, "ListTokens", list, []store.Token{t1, t2})
	list, err = s.ListTokens(ctx, store.Page{Limit: 1})
	noErr(t, "ListTokens(limit 1)", err)
	check(t, "ListTokens(limit 1)", list, []store.Token{t1})
	list, err = s.ListTokens(ctx, store.Page{After: "t1", Limit: 1})
	noErr(t, "ListTokens(after t1)", err)
	check(t, "ListTokens(after t1)", list, []store.Token{t2})
	list, err = s.ListTokens(ctx, store.Page{After: "t2"})
	noErr(t, "ListTokens(after t2)", err)
	if len(list) != 0 {
		t.Errorf("ListTokens(after t2) = %d tokens, want none", len(list))
	}
}

func testPolicies(t *testing.T, s store.Store) {
	ctx := t.Context()
	p1 := store.Policy{Name: "readers", Document: []byte(`{"rules":[]}`), CreatedAt: base, UpdatedAt: base}
	p2 := store.Policy{Name: "admins", Document: []byte(`{"rules":[{"path":"*"}]}`), CreatedAt: base, UpdatedAt: base}
	noErr(t, "PutPolicy(readers)", s.PutPolicy(ctx, p1))
	noErr(t, "PutPolicy(admins)", s.PutPolicy(ctx, p2))
	p1.Document, p1.UpdatedAt = []byte(`{"rules":[{"path":"app/*"}]}`), at(time.Hour)
	noErr(t, "PutPolicy(readers) replace", s.PutPolicy(ctx, p1))
	got, err := s.GetPolicy(ctx, "readers")
	noErr(t, "GetPolicy(readers)", err)
	check(t, "GetPolicy(readers)", got, p1)
	_, err = s.GetPolicy(ctx, "nope")
	wantErr(t, "GetPolicy(nope)", err, store.ErrNotFound)
	list, err := s.ListPolicies(ctx, store.Page{})
	noErr(t, "ListPolicies", err)
	check(t, "ListPolicies", list, []store.Policy{p2, p1})
	list, err = s.ListPolicies(ctx, store.Page{Limit: 1})
	noErr(t, "ListPolicies(limit 1)", err)
	check(t, "ListPolicies(limit 1)", list, []store.Policy{p2})
	list, err = s.ListPolicies(ctx, store.Page{After: "admins", Limit: 5})
	noErr(t, "ListPolicies(after admins)", err)
	check(t, "ListPolicies(after admins)", list, []store.Policy{p1})
	noErr(t, "DeletePolicy(admins)", s.DeletePolicy(ctx, "admins"))
	wantErr(t, "DeletePolicy(admins) again", s.DeletePolicy(ctx, "admins"), store.ErrNotFound)
	list, _ = s.ListPolicies(ctx, store.Page{})
	check(t, "ListPolicies after delete", list, []store.Policy{p1})
}

func testPluginsAndHooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	pa := store.Plugin{Name: "vault", Path: "/usr/lib/rotary/vault", SHA256: strings.Repeat("ab", 32), CreatedAt: base}
	pb := store.Plugin{Name: "aws", Path: "/usr/lib/rotary/aws", SHA256: strings.Repeat("cd", 32), CreatedAt: base}
	noErr(t, "PutPlugin(vault)", s.PutPlugin(ctx, pa))
	noErr(t, "PutPlugin(aws)", s.PutPlugin(ctx, pb))
	pa.SHA256 = strings.Repeat("ef", 32)
	noErr(t, "PutPlugin(vault) replace", s.PutPlugin(ctx, pa))
	got, err := s.GetPlugin(ctx, "vault")
	noErr(t, "GetPlugin(vault)", err)
	check(t, "GetPlugin(vault)", got, pa)
	_, err = s.GetPlugin(ctx, "nope")
	wantErr(t, "GetPlugin(nope)", err, store.ErrNotFound)
	plist, err := s.ListPlugins(ctx)
	noErr(t, "ListPlugins", err)
	check(t, "ListPlugins", plist, []store.Plugin{pb, pa})
	noErr(t, "DeletePlugin(aws)", s.DeletePlugin(ctx, "aws"))
	wantErr(t, "DeletePlugin(aws) again", s.DeletePlugin(ctx, "aws"), store.ErrNotFound)

	ha := store.Hook{Name: "notify", On: "finished", Secrets: "app/*", Kind: "webhook", Target: "https://hooks.example/x", CreatedAt: base}
	hb := store.Hook{Name: "alert", On: "failed", Secrets: "*", Kind: "exec", Target: "/bin/true", CreatedAt: base}
	noErr(t, "PutHook(notify)", s.PutHook(ctx, ha))
	noErr(t, "PutHook(alert)", s.PutHook(ctx, hb))
	ha.On = "failed"
	noErr(t, "PutHook(notify) replace", s.PutHook(ctx, ha))
	hlist, err := s.ListHooks(ctx)
	noErr(t, "ListHooks", err)
	check(t, "ListHooks", hlist, []store.Hook{hb, ha})
	noErr(t, "DeleteHook(alert)", s.DeleteHook(ctx, "alert"))
	wantErr(t, "DeleteHook(alert) again", s.DeleteHook(ctx, "alert"), store.ErrNotFound)
	hlist, _ = s.ListHooks(ctx)
	check(t, "ListHooks after delete", hlist, []store.Hook{ha})
}

func testPluginCatalog(t *testing.T, s store.Store) {
	ctx := t.Context()
	later := base.Add(time.Hour)
	p := store.Plugin{
		Name: "rabbit", Path: "/usr/lib/rotary/rabbitmq", SHA256: strings.Repeat("01", 32),
		Env: []string{"HTTP_PROXY=http://proxy:3128", "LOG_LEVEL=debug"}, CreatedAt: base, UpdatedAt: base,
	}
	noErr(t, "PutPlugin(rabbit)", s.PutPlugin(ctx, p))
	got, err := s.GetPlugin(ctx, "rabbit")
	noErr(t, "GetPlugin(rabbit)", err)
	check(t, "GetPlugin(rabbit) never started", got, p)

	// The last start is recorded without touching the registration.
	start := p
	start.Path, start.SHA256, start.Env = "/elsewhere", strings.Repeat("ff", 32), nil
	start.Version, start.SecretTypes, start.Kinds = "1.2.0", []string{"key-value"}, []string{"rotator"}
	start.IdentityFields, start.LastStartAt, start.Status = []string{"host", "port", "username"}, &later, store.PluginOK
	noErr(t, "RecordPluginStart(rabbit)", s.RecordPluginStart(ctx, start))
	want := p
	want.Version, want.SecretTypes, want.Kinds = start.Version, start.SecretTypes, start.Kinds
	want.IdentityFields, want.LastStartAt, want.Status = start.IdentityFields, &later, store.PluginOK
	got, err = s.GetPlugin(ctx, "rabbit")
	noErr(t, "GetPlugin(rabbit) after start", err)
	check(t, "GetPlugin(rabbit) after RecordPluginStart", got, want)

	failed := want
	failed.Status, failed.LastError = store.PluginFailed, "plugin rabbit: start: timeout"
	noErr(t, "RecordPluginStart(rabbit) failed", s.RecordPluginStart(ctx, failed))
	list, err := s.ListPlugins(ctx)
	noErr(t, "ListPlugins", err)
	check(t, "ListPlugins", list, []store.Plugin{failed})
	wantErr(t, "RecordPluginStart(nope)", s.RecordPluginStart(ctx, store.Plugin{Name: "nope", Status: store.PluginOK}), store.ErrNotFound)

	// Re-register replaces everything.
	re := store.Plugin{Name: "rabbit", Path: "/usr/lib/rotary/rabbitmq2", SHA256: strings.Repeat("02", 32), CreatedAt: base, UpdatedAt: later}
	noErr(t, "PutPlugin(rabbit) replace", s.PutPlugin(ctx, re))
	got, err = s.GetPlugin(ctx, "rabbit")
	noErr(t, "GetPlugin(rabbit) replaced", err)
	check(t, "GetPlugin(rabbit) replaced", got, re)

	// Inside a transaction too.
	err = s.InTx(ctx, func(tx store.Ops) error {
		if err := tx.RecordPluginStart(ctx, failed); err != nil {
			return err
		}
		return tx.DeletePlugin(ctx, "rabbit")
	})
	noErr(t, "InTx(RecordPluginStart, DeletePlugin)", err)
	_, err = s.GetPlugin(ctx, "rabbit")
	wantErr(t, "GetPlugin(rabbit) after delete", err, store.ErrNotFound)
}

// --- audit ---

func auditRec(seq int64, prev []byte, target string, tm time.Time) store.AuditRecord {
	return store.AuditRecord{
		Seq: seq, Time: tm, TokenID: "tok", Action: "read", Target: target, Result: "ok",
		RequestID: fmt.Sprint("req-", seq), Detail: "", PrevHash: prev, Hash: fmt.Appendf(nil, "h%d", seq),
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	seq, hash, err := s.AuditHead(ctx, 0)
	if err != nil || seq != 0 || hash != nil {
		t.Errorf("AuditHead on empty log = %d, %x, %v; want 0, nil, nil", seq, hash, err)
	}
	var recs []store.AuditRecord
	var prev []byte
	for i := int64(1); i <= 6; i++ {
		target := "app/a"
		if i%2 == 0 {
			target = "app/b"
		}
		r := auditRec(i, prev, target, at(time.Duration(i)*time.Minute))
		recs = append(recs, r)
		prev = r.Hash
	}
	noErr(t, "AppendAudit(1)", s.AppendAudit(ctx, recs[0]))
	noErr(t, "AppendAudit(2..6)", s.AppendAudit(ctx, recs[1:]...))
	noErr(t, "AppendAudit()", s.AppendAudit(ctx))
	seq, hash, err = s.AuditHead(ctx, 0)
	if err != nil || seq != 6 || !bytes.Equal(hash, recs[5].Hash) {
		t.Errorf("AuditHead = %d, %q, %v; want 6, %q, nil", seq, hash, err, recs[5].Hash)
	}
	wantErr(t, "AppendAudit(seq 3 again)", s.AppendAudit(ctx, auditRec(3, nil, "x", base)), store.ErrConflict)
	wantErr(t, "AppendAudit(7, 6 taken)", s.AppendAudit(ctx, auditRec(7, recs[5].Hash, "x", base), auditRec(6, nil, "x", base)), store.ErrConflict)
	seq, _, _ = s.AuditHead(ctx, 0)
	if seq != 6 {
		t.Errorf("AuditHead after refused batch = %d, want 6 (batch is atomic)", seq)
	}

	for _, tc := range []struct {
		f    store.AuditFilter
		want []store.AuditRecord
	}{
		{store.AuditFilter{}, recs},
		{store.AuditFilter{Target: "app/b"}, []store.AuditRecord{recs[1], recs[3], recs[5]}},
		{store.AuditFilter{Target: "app/"}, nil},
		{store.AuditFilter{Since: at(4 * time.Minute)}, recs[3:]},
		{store.AuditFilter{AfterSeq: 2, Limit: 2}, recs[2:4]},
		{store.AuditFilter{Target: "app/a", AfterSeq: 1, Since: at(2 * time.Minute), Limit: 1}, []store.AuditRecord{recs[2]}},
	} {
		got, err := s.ListAudit(ctx, tc.f)
		noErr(t, "ListAudit", err)
		check(t, fmt.Sprintf("ListAudit(%+v)", tc.f), got, tc.want)
	}

	// RehashAudit rewrites only the two hashes, and the head's hash.
	rehashed := make([]store.AuditRecord, len(recs))
	for i, r := range recs {
		r.PrevHash = fmt.Appendf(nil, "p2-%d", r.Seq)
		r.Hash = fmt.Appendf(nil, "h2-%d", r.Seq)
		rehashed[i] = r
	}
	noErr(t, "RehashAudit(1..6)", s.InTx(ctx, func(tx store.Ops) error {
		if _, _, err := tx.AuditHead(ctx, 0); err != nil {
			return err
		}
		return tx.RehashAudit(ctx, rehashed...)
	}))
	got, err := s.ListAudit(ctx, store.AuditFilter{})
	noErr(t, "ListAudit after RehashAudit", err)
	check(t, "ListAudit after RehashAudit", got, rehashed)
	seq, hash, err = s.AuditHead(ctx, 0)
	if err != nil || seq != 6 || !bytes.Equal(hash, rehashed[5].Hash) {
		t.Errorf("AuditHead after RehashAudit = %d, %q, %v; want 6, %q, nil", seq, hash, err, rehashed[5].Hash)
	}
	noErr(t, "RehashAudit()", s.RehashAudit(ctx))
	bad := auditRec(99, nil, "x", base)
	wantErr(t, "RehashAudit(seq 99, not stored)", s.RehashAudit(ctx, rehashed[0], bad), store.ErrNotFound)

	// The head is the batch's highest Seq, whatever the order of the
	// records in it, and the chain reads back in Seq order.
	r7 := auditRec(7, rehashed[5].Hash, "app/a", at(7*time.Minute))
	r8 := auditRec(8, r7.Hash, "app/b", at(8*time.Minute))
	noErr(t, "AppendAudit(8, 7)", s.AppendAudit(ctx, r8, r7))
	seq, hash, err = s.AuditHead(ctx, 0)
	if err != nil || seq != 8 || !bytes.Equal(hash, r8.Hash) {
		t.Errorf("AuditHead after AppendAudit(8, 7) = %d, %q, %v; want 8, %q, nil", seq, hash, err, r8.Hash)
	}
	got, err = s.ListAudit(ctx, store.AuditFilter{AfterSeq: 6})
	noErr(t, "ListAudit(after 6)", err)
	check(t, "ListAudit(after 6)", got, []store.AuditRecord{r7, r8})
}

// testAuditConcurrent: goroutines append through InTx{head -> append
// head+1}. The lock taken by AuditHead must make the log gap-free with no
// conflicts reaching the callers.
func testAuditConcurrent(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const workers, each = 6, 10
	var wg sync.WaitGroup
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range each {
				err := s.InTx(ctx, func(tx store.Ops) error {
					seq, hash, err := tx.AuditHead(ctx, 0)
					if err != nil {
						return err
					}
					r := auditRec(seq+1, hash, fmt.Sprintf("w%d/%d", w, i), base)
					r.Hash = append(append([]byte(nil), hash...), byte(seq+1))
					return tx.AppendAudit(ctx, r)
				})
				if err != nil {
					t.Errorf("worker %d append %d: InTx err = %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	recs, err := a.ListAudit(ctx, store.AuditFilter{})
	noErr(t, "ListAudit", err)
	if len(recs) != workers*each {
		t.Fatalf("ListAudit returned %d records, want %d", len(recs), workers*each)
	}
	var prev []byte
	for i, r := range recs {
		if r.Seq != int64(i+1) {
			t.Fatalf("record %d has Seq %d, want %d (gap-free)", i, r.Seq, i+1)
		}
		if !bytes.Equal(r.PrevHash, prev) {
			t.Fatalf("record %d PrevHash = %x, want %x (chain)", r.Seq, r.PrevHash, prev)
		}
		prev = r.Hash
	}
}

// testAuditChains: records of several chains live side by side, each
// chain numbered from 1 with its own head; a Seq taken in one chain is
// free in another; ListAudit reads one chain or all of them.
func testAuditChains(t *testing.T, s store.Store) {
	ctx := t.Context()
	heads, err := s.AuditHeads(ctx)
	noErr(t, "AuditHeads on a new store", err)
	for _, h := range heads {
		if h.Seq != 0 || h.Missing {
			t.Errorf("AuditHeads on a new store: %+v, want every chain empty", h)
		}
	}
	chainRec := func(chain, seq int64, prev []byte, min int) store.AuditRecord {
		r := auditRec(seq, prev, fmt.Sprintf("c%d", chain), at(time.Duration(min)*time.Minute))
		r.Chain, r.Hash = chain, fmt.Appendf(nil, "c%d-h%d", chain, seq)
		return r
	}
	a1 := chainRec(2, 1, nil, 1)
	b1 := chainRec(3, 1, nil, 2)
	a2 := chainRec(2, 2, a1.Hash, 3)
	b2 := chainRec(3, 2, b1.Hash, 4)
	b3 := chainRec(3, 3, b2.Hash, 5)
	// One batch may hold several chains, in any order.
	noErr(t, "AppendAudit(2:1, 3:1, 3:2)", s.AppendAudit(ctx, b2, a1, b1))
	noErr(t, "AppendAudit(3:3, 2:2)", s.AppendAudit(ctx, b3, a2))
	wantErr(t, "AppendAudit(3:2 again)", s.AppendAudit(ctx, chainRec(3, 2, nil, 9)), store.ErrConflict)
	for _, w := range []struct {
		chain, seq int64
		hash       []byte
	}{{2, 2, a2.Hash}, {3, 3, b3.Hash}, {0, 0, nil}} {
		seq, hash, err := s.AuditHead(ctx, w.chain)
		if err != nil || seq != w.seq || !bytes.Equal(hash, w.hash) {
			t.Errorf("AuditHead(%d) = %d, %q, %v; want %d, %q", w.chain, seq, hash, err, w.seq, w.hash)
		}
	}
	heads, err = s.AuditHeads(ctx)
	noErr(t, "AuditHeads", err)
	got := map[int64]store.AuditHead{}
	for _, h := range heads {
		got[h.Chain] = h
	}
	if h := got[2]; h.Seq != 2 || !bytes.Equal(h.Hash, a2.Hash) || h.Missing {
		t.Errorf("AuditHeads chain 2 = %+v, want seq 2", h)
	}
	if h := got[3]; h.Seq != 3 || !bytes.Equal(h.Hash, b3.Hash) || h.Missing {
		t.Errorf("AuditHeads chain 3 = %+v, want seq 3", h)
	}
	for _, tc := range []struct {
		f    store.AuditFilter
		want []store.AuditRecord
	}{
		{store.AuditFilter{}, []store.AuditRecord{a1, b1, a2, b2, b3}},
		{store.AuditFilter{ByChain: true, Chain: 3}, []store.AuditRecord{b1, b2, b3}},
		{store.AuditFilter{ByChain: true, Chain: 3, AfterSeq: 1, Limit: 1}, []store.AuditRecord{b2}},
		{store.AuditFilter{ByChain: true, Chain: 2, Target: "c3"}, nil},
		{store.AuditFilter{ByChain: true, Chain: 9}, nil},
	} {
		got, err := s.ListAudit(ctx, tc.f)
		noErr(t, "ListAudit", err)
		check(t, fmt.Sprintf("ListAudit(%+v)", tc.f), got, tc.want)
	}
	// RehashAudit names records by chain and Seq.
	a2r := a2
	a2r.Hash = []byte("rehashed")
	noErr(t, "RehashAudit(2:2)", s.RehashAudit(ctx, a2r))
	if seq, hash, _ := s.AuditHead(ctx, 2); seq != 2 || string(hash) != "rehashed" {
		t.Errorf("AuditHead(2) after RehashAudit = %d, %q", seq, hash)
	}
	if seq, hash, _ := s.AuditHead(ctx, 3); seq != 3 || !bytes.Equal(hash, b3.Hash) {
		t.Errorf("AuditHead(3) after RehashAudit of chain 2 = %d, %q, want it untouched", seq, hash)
	}
	wantErr(t, "RehashAudit(4:1, not stored)", s.RehashAudit(ctx, chainRec(4, 1, nil, 1)), store.ErrNotFound)
	// Claiming inside a transaction returns a writer chain and its head.
	var h store.AuditHead
	noErr(t, "InTx(ClaimAuditChain)", s.InTx(ctx, func(tx store.Ops) (err error) {
		h, err = tx.ClaimAuditChain(ctx)
		return err
	}))
	if h.Chain < store.AuditFirstWriterChain {
		t.Errorf("ClaimAuditChain = %+v, want a writer chain (>= %d)", h, store.AuditFirstWriterChain)
	}
	if seq, hash, _ := s.AuditHead(ctx, h.Chain); seq != h.Seq || !bytes.Equal(hash, h.Hash) {
		t.Errorf("ClaimAuditChain = %+v, but AuditHead(%d) = %d, %q", h, h.Chain, seq, hash)
	}
}

// testAuditChainsConcurrent: goroutines append through InTx{claim a
// chain -> append head+1 to it}. Every chain must come out gap-free and
// linked, with its head at its last record, and no conflict reaching the
// callers.
func testAuditChainsConcurrent(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const workers, each = 6, 10
	var wg sync.WaitGroup
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range each {
				err := s.InTx(ctx, func(tx store.Ops) error {
					h, err := tx.ClaimAuditChain(ctx)
					if err != nil {
						return err
					}
					r := auditRec(h.Seq+1, h.Hash, fmt.Sprintf("w%d/%d", w, i), base)
					r.Chain = h.Chain
					r.Hash = append(fmt.Appendf(nil, "c%d:", h.Chain), byte(h.Seq+1))
					return tx.AppendAudit(ctx, r)
				})
				if err != nil {
					t.Errorf("worker %d append %d: InTx err = %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	heads, err := a.AuditHeads(ctx)
	noErr(t, "AuditHeads", err)
	total := 0
	for _, h := range heads {
		if h.Chain < store.AuditFirstWriterChain {
			continue
		}
		recs, err := a.ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: h.Chain})
		noErr(t, "ListAudit", err)
		total += len(recs)
		var prev []byte
		for i, r := range recs {
			if r.Seq != int64(i+1) || r.Chain != h.Chain {
				t.Fatalf("chain %d: record %d is %d:%d, want %d:%d (gap-free)", h.Chain, i, r.Chain, r.Seq, h.Chain, i+1)
			}
			if !bytes.Equal(r.PrevHash, prev) {
				t.Fatalf("chain %d record %d PrevHash = %x, want %x (chain)", h.Chain, r.Seq, r.PrevHash, prev)
			}
			prev = r.Hash
		}
		if h.Seq != int64(len(recs)) || !bytes.Equal(h.Hash, prev) || h.Missing {
			t.Errorf("chain %d head = %+v, want seq %d hash %x", h.Chain, h, len(recs), prev)
		}
	}
	if total != workers*each {
		t.Fatalf("the writer chains hold %d records, want %d", total, workers*each)
	}
}

// testAuditChainsDoNotWait: on PostgreSQL, a transaction holding a
// writer chain (as a slow request would, through its commit) does not
// hold up another store's append: that one claims another chain and
// commits while the first is still open. The negative control: locking
// the first transaction's chain itself (AuditHead) does wait. SQLite has
// one writer, so there is nothing to check there.
func testAuditChainsDoNotWait(t *testing.T, a, b store.Store) {
	if a.Dialect() != "postgres" {
		return
	}
	ctx := t.Context()
	// One committed writer chain, so that the slow transaction locks a
	// row every store sees (the negative control locks it too).
	noErr(t, "first append", a.InTx(ctx, func(tx store.Ops) error {
		h, err := tx.ClaimAuditChain(ctx)
		if err != nil {
			return err
		}
		r := auditRec(h.Seq+1, h.Hash, "first", base)
		r.Chain = h.Chain
		return tx.AppendAudit(ctx, r)
	}))
	held := make(chan store.AuditHead)
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.InTx(ctx, func(tx store.Ops) error {
			h, err := tx.ClaimAuditChain(ctx)
			if err != nil {
				close(held)
				return err
			}
			r := auditRec(h.Seq+1, h.Hash, "slow", base)
			r.Chain = h.Chain
			if err := tx.AppendAudit(ctx, r); err != nil {
				close(held)
				return err
			}
			held <- h
			<-release
			return nil
		})
	}()
	h, ok := <-held
	if !ok {
		t.Fatalf("the slow transaction failed: %v", <-done)
	}
	// While a's transaction is open, b appends to another chain and
	// commits: if it waited on a's chain this would never return before
	// release (bounded by the deadline instead of hanging the suite).
	fast, cancel := context.WithTimeout(ctx, 5*time.Second)
	var hb store.AuditHead
	err := b.InTx(fast, func(tx store.Ops) (err error) {
		hb, err = tx.ClaimAuditChain(fast)
		if err != nil {
			return err
		}
		r := auditRec(hb.Seq+1, hb.Hash, "fast", base)
		r.Chain = hb.Chain
		return tx.AppendAudit(fast, r)
	})
	cancel()
	noErr(t, "append on b while a holds its chain", err)
	if hb.Chain == h.Chain {
		t.Errorf("b claimed chain %d, which a holds", hb.Chain)
	}
	// Negative control: asking for a's chain itself waits until the
	// deadline.
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	err = b.InTx(short, func(tx store.Ops) error {
		_, _, err := tx.AuditHead(short, h.Chain)
		return err
	})
	cancel2()
	if err == nil {
		t.Errorf("AuditHead(%d) on b while a holds it returned at once; the lock test proves nothing", h.Chain)
	}
	close(release)
	noErr(t, "the slow transaction", <-done)
}

// --- transactions ---

func testInTx(t *testing.T, s store.Store) {
	ctx := t.Context()
	errBoom := errors.New("boom")

	noErr(t, "InTx(commit)", s.InTx(ctx, func(tx store.Ops) error {
		mkSecret(t, tx, "committed")
		mkVersion(t, tx, "committed", 1)
		if err := tx.SetStage(ctx, "committed", store.StageCurrent, 1); err != nil {
			return err
		}
		// Reads inside the transaction see its own writes.
		if _, err := tx.GetVersion(ctx, "committed", 1); err != nil {
			return fmt.Errorf("read own write: %w", err)
		}
		_, err := tx.AppendOutbox(ctx, store.OutboxEvent{Type: "version.current", Secret: "committed", Version: 1, CreatedAt: base})
		return err
	}))
	if _, err := s.GetVersion(ctx, "committed", 1); err != nil {
		t.Errorf("GetVersion(committed, 1) after commit err = %v", err)
	}
	if evs, _ := s.ListOutboxAfter(ctx, 0, 0); len(evs) != 1 {
		t.Errorf("ListOutboxAfter after commit = %d events, want 1", len(evs))
	}

	err := s.InTx(ctx, func(tx store.Ops) error {
		mkSecret(t, tx, "rolled-back")
		if _, err := tx.AppendOutbox(ctx, store.OutboxEvent{Type: "x", CreatedAt: base}); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	wantErr(t, "InTx(returns error)", err, errBoom)
	_, err = s.GetSecret(ctx, "rolled-back")
	wantErr(t, "GetSecret(rolled-back) after rollback", err, store.ErrNotFound)
	if evs, _ := s.ListOutboxAfter(ctx, 0, 0); len(evs) != 1 {
		t.Errorf("ListOutboxAfter after rollback = %d events, want 1", len(evs))
	}

	// A store error inside the transaction comes back as itself.
	err = s.InTx(ctx, func(tx store.Ops) error {
		return tx.CreateSecret(ctx, store.Secret{Name: "committed", Type: "x", Region: "x", KeyID: "x", NextVersion: 1})
	})
	wantErr(t, "InTx(CreateSecret conflict)", err, store.ErrConflict)

	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Errorf("InTx(panics) recovered %v, want the panic value kaboom", p)
			}
		}()
		_ = s.InTx(ctx, func(tx store.Ops) error {
			mkSecret(t, tx, "panicked")
			panic("kaboom")
		})
		t.Error("InTx(panics) returned, want re-panic")
	}()
	_, err = s.GetSecret(ctx, "panicked")
	wantErr(t, "GetSecret(panicked) after panic", err, store.ErrNotFound)

	// The store is usable after all of that.
	noErr(t, "InTx after panic", s.InTx(ctx, func(tx store.Ops) error {
		mkSecret(t, tx, "after")
		return nil
	}))
	if _, err := s.GetSecret(ctx, "after"); err != nil {
		t.Errorf("GetSecret(after) err = %v", err)
	}

	// A cancelled context fails the transaction without committing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = s.InTx(cctx, func(tx store.Ops) error {
		return tx.CreateSecret(cctx, store.Secret{Name: "cancelled", Type: "x", Region: "x", KeyID: "x", NextVersion: 1})
	})
	if err == nil {
		t.Error("InTx(cancelled context) err = nil, want an error")
	}
	_, err = s.GetSecret(ctx, "cancelled")
	wantErr(t, "GetSecret(cancelled)", err, store.ErrNotFound)
}

// --- locks ---

func testLocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		call       string
		name, who  string
		now, until time.Duration
		want       bool
	}{
		{"A takes purge", "purge", "A", 0, time.Minute, true},
		{"B refused while A holds", "purge", "B", 30 * time.Second, 2 * time.Minute, false},
		{"A renews", "purge", "A", 30 * time.Second, 2 * time.Minute, true},
		{"B refused before renewed expiry", "purge", "B", 90 * time.Second, 3 * time.Minute, false},
		{"B takes once expired", "purge", "B", 2 * time.Minute, 3 * time.Minute, true},
		{"A refused now", "purge", "A", 2 * time.Minute, 4 * time.Minute, false},
		{"other lock is independent", "rewrap", "A", 2 * time.Minute, 4 * time.Minute, true},
	} {
		got, err := s.TryLock(ctx, tc.name, tc.who, at(tc.now), at(tc.until))
		noErr(t, "TryLock: "+tc.call, err)
		if got != tc.want {
			t.Errorf("TryLock(%s, %s) [%s] = %v, want %v", tc.name, tc.who, tc.call, got, tc.want)
		}
	}
	noErr(t, "Unlock(purge, A) by non-holder", s.Unlock(ctx, "purge", "A"))
	if ok, _ := s.TryLock(ctx, "purge", "C", at(2*time.Minute), at(5*time.Minute)); ok {
		t.Error("TryLock(purge, C) after a non-holder's Unlock = true, want false")
	}
	noErr(t, "Unlock(purge, B)", s.Unlock(ctx, "purge", "B"))
	if ok, _ := s.TryLock(ctx, "purge", "C", at(2*time.Minute), at(5*time.Minute)); !ok {
		t.Error("TryLock(purge, C) after holder's Unlock = false, want true")
	}
	noErr(t, "Unlock(never-held)", s.Unlock(ctx, "never", "X"))
}

// --- cross-cutting ---

func testTimePrecision(t *testing.T, s store.Store) {
	ctx := t.Context()
	loc := time.FixedZone("odd", -(3*3600 + 30*60))
	for i, tm := range []time.Time{
		time.Date(2025, 6, 1, 12, 0, 0, 999_999_999, time.UTC),
		time.Date(2025, 6, 1, 12, 0, 0, 1_500, loc),
		time.Date(1999, 12, 31, 23, 59, 59, 999_999_000, time.UTC),
		time.Date(2200, 1, 1, 0, 0, 0, 1_000, time.UTC),
		time.Unix(0, 0),
	} {
		name := fmt.Sprint("t", i)
		want := store.Region{Name: name, CreatedAt: tm}
		noErr(t, "CreateRegion", s.CreateRegion(ctx, want))
		got, err := s.GetRegion(ctx, name)
		noErr(t, "GetRegion", err)
		if got.CreatedAt.Location() != time.UTC {
			t.Errorf("GetRegion(%s).CreatedAt location = %v, want UTC", name, got.CreatedAt.Location())
		}
		if !got.CreatedAt.Equal(tm.Truncate(Precision)) {
			t.Errorf("GetRegion(%s).CreatedAt = %v, want %v (truncated to %v)", name, got.CreatedAt, tm.Truncate(Precision), Precision)
		}
	}
}

// testErrorsHideBlobs: errors never carry envelopes, hashes or materials.
func testErrorsHideBlobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	blob := []byte("SENSITIVE-BLOB-CONTENT")
	mkSecret(t, s, "s")
	v := store.SecretVersion{Secret: "s", Version: 1, Envelope: blob, KeyID: "k", KeyVersion: 1, CreatedAt: base}
	noErr(t, "InsertVersion", s.InsertVersion(ctx, v))
	noErr(t, "CreateToken", s.CreateToken(ctx, store.Token{ID: "t1", Hash: blob, CreatedAt: base}))
	noErr(t, "CreateKey", s.CreateKey(ctx, store.MasterKey{ID: "k", Region: "r", State: "enabled", PrimaryVersion: 1},
		store.KeyVersion{KeyID: "k", Version: 1, Material: blob}))
	for _, tc := range []struct {
		call string
		err  error
	}{
		{"InsertVersion(dup)", s.InsertVersion(ctx, v)},
		{"CreateToken(dup hash)", s.CreateToken(ctx, store.Token{ID: "t2", Hash: blob, CreatedAt: base})},
		{"SwapEnvelope(stale)", s.SwapEnvelope(ctx, store.SwapEnvelopeParams{Secret: "s", Version: 1, Old: []byte("x"), New: blob})},
		{"AddKeyVersion(dup)", s.AddKeyVersion(ctx, store.KeyVersion{KeyID: "k", Version: 1, Material: blob})},
		{"PutMetaIfAbsent(dup)", func() error {
			_ = s.PutMetaIfAbsent(ctx, "m", blob)
			return s.PutMetaIfAbsent(ctx, "m", blob)
		}()},
		{"GetTokenByHash(missing)", func() error { _, err := s.GetTokenByHash(ctx, append(blob, '!')); return err }()},
	} {
		if tc.err == nil {
			t.Errorf("%s err = nil, want an error", tc.call)
			continue
		}
		msg := tc.err.Error()
		if strings.Contains(msg, string(blob)) || strings.Contains(strings.ToLower(msg), fmt.Sprintf("%x", blob)) {
			t.Errorf("%s err = %q contains the blob", tc.call, msg)
		}
	}
}

func testDialect(t *testing.T, s store.Store) {
	if d := s.Dialect(); d != "sqlite" && d != "postgres" {
		t.Errorf("Dialect() = %q, want sqlite or postgres", d)
	}
}

// testRotationLeaseWrites: leases change only through claim, renew,
// release and reclaim. A writer that read the row before another owner's
// claim (GetRotation, then PutRotation of its copy) must not undo the
// claim; the housekeeping reclaim clears only an expired lease of the
// owner it names, never a renewed one; and the fencing check answers for
// the owner and the instant it is given, on a store and inside InTx.
func testRotationLeaseWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	mkSecret(t, s, "r")
	noErr(t, "PutRotation(r)", s.PutRotation(ctx, store.Rotation{Secret: "r", Rotator: "random", Enabled: true, NextDueAt: ptr(at(time.Hour)), UpdatedAt: base}))

	// A settings writer reads the row (unleased)...
	stale, err := s.GetRotation(ctx, "r")
	noErr(t, "GetRotation(r)", err)
	// ...daemon A claims it...
	claimed, err := s.ClaimRotation(ctx, "r", store.ClaimParams{Owner: "A", Now: base, LeaseFor: time.Minute})
	noErr(t, "ClaimRotation(r, A)", err)
	// ...and the writer stores its copy, unleased as it read it.
	stale.Schedule, stale.LastError, stale.UpdatedAt = "rate(1 day)", "changed meanwhile", at(time.Second)
	noErr(t, "PutRotation(r) from a read before the claim", s.PutRotation(ctx, stale))
	got, err := s.GetRotation(ctx, "r")
	noErr(t, "GetRotation(r) after the put", err)
	if got.LeaseOwner != "A" || got.LeaseExpiresAt == nil || !got.LeaseExpiresAt.Equal(*claimed.LeaseExpiresAt) {
		t.Errorf("lease after a PutRotation from a stale read = %q until %v, want A until %v (the claim survives)", got.LeaseOwner, got.LeaseExpiresAt, claimed.LeaseExpiresAt)
	}
	if got.Schedule != "rate(1 day)" || got.LastError != "changed meanwhile" {
		t.Errorf("PutRotation wrote schedule %q, last error %q; want its settings stored", got.Schedule, got.LastError)
	}
	// The claim can still be renewed by A, and B still cannot take it.
	noErr(t, "RenewRotationLease(r, A) after the put", s.RenewRotationLease(ctx, "r", "A", at(2*time.Minute)))
	_, err = s.ClaimRotation(ctx, "r", store.ClaimParams{Owner: "B", Now: at(90 * time.Second), LeaseFor: time.Minute})
	wantErr(t, "ClaimRotation(r, B) during A's renewed lease", err, store.ErrConflict)
	// The same inside a transaction, as the engine and Configure write.
	noErr(t, "InTx{GetRotationForUpdate; PutRotation}", s.InTx(ctx, func(tx store.Ops) error {
		r, err := tx.GetRotationForUpdate(ctx, "r")
		if err != nil {
			return err
		}
		r.LeaseOwner, r.LeaseExpiresAt = "", nil // must be ignored
		r.ConsecutiveFailures = 3
		return tx.PutRotation(ctx, r)
	}))
	got, _ = s.GetRotation(ctx, "r")
	if got.LeaseOwner != "A" || got.ConsecutiveFailures != 3 {
		t.Errorf("after InTx put: lease owner %q, failures %d; want A, 3", got.LeaseOwner, got.ConsecutiveFailures)
	}
	_, err = s.GetRotationForUpdate(ctx, "missing")
	wantErr(t, "GetRotationForUpdate(missing)", err, store.ErrNotFound)

	// Fencing: A's lease lives until +2m.
	noErr(t, "CheckRotationLease(r, A, +1m)", s.CheckRotationLease(ctx, "r", "A", at(time.Minute)))
	noErr(t, "InTx{CheckRotationLease(r, A, +1m)}", s.InTx(ctx, func(tx store.Ops) error {
		return tx.CheckRotationLease(ctx, "r", "A", at(time.Minute))
	}))
	wantErr(t, "CheckRotationLease(r, B)", s.CheckRotationLease(ctx, "r", "B", at(time.Minute)), store.ErrLeaseLost)
	wantErr(t, "CheckRotationLease(r, A, at expiry)", s.CheckRotationLease(ctx, "r", "A", at(2*time.Minute)), store.ErrLeaseLost)
	wantErr(t, "CheckRotationLease(r, A, after expiry)", s.CheckRotationLease(ctx, "r", "A", at(3*time.Minute)), store.ErrLeaseLost)
	wantErr(t, "CheckRotationLease(missing)", s.CheckRotationLease(ctx, "missing", "A", base), store.ErrLeaseLost)
	wantErr(t, "CheckRotationLease(r, empty owner)", s.CheckRotationLease(ctx, "r", "", base), store.ErrLeaseLost)
	// A failed check inside InTx rolls the transaction back.
	err = s.InTx(ctx, func(tx store.Ops) error {
		r, err := tx.GetRotationForUpdate(ctx, "r")
		if err != nil {
			return err
		}
		r.LastError = "written by a daemon without the lease"
		if err := tx.PutRotation(ctx, r); err != nil {
			return err
		}
		return tx.CheckRotationLease(ctx, "r", "B", at(time.Minute))
	})
	wantErr(t, "InTx{put; CheckRotationLease(r, B)}", err, store.ErrLeaseLost)
	if got, _ = s.GetRotation(ctx, "r"); got.LastError == "written by a daemon without the lease" {
		t.Errorf("a transaction whose fencing check failed committed its write")
	}

	// Reclaim: never a live lease, never a renewed one, never another owner's.
	wantErr(t, "ReclaimRotationLease(r, A) while live", s.ReclaimRotationLease(ctx, "r", "A", at(time.Minute)), store.ErrLeaseLost)
	// A housekeeper saw A's lease expired at +3m, but A renewed meanwhile.
	noErr(t, "RenewRotationLease(r, A) until +10m", s.RenewRotationLease(ctx, "r", "A", at(10*time.Minute)))
	wantErr(t, "ReclaimRotationLease(r, A) after a renewal", s.ReclaimRotationLease(ctx, "r", "A", at(3*time.Minute)), store.ErrLeaseLost)
	wantErr(t, "ReclaimRotationLease(r, B) of A's lease", s.ReclaimRotationLease(ctx, "r", "B", at(time.Hour)), store.ErrLeaseLost)
	got, _ = s.GetRotation(ctx, "r")
	if got.LeaseOwner != "A" || !got.LeaseExpiresAt.Equal(at(10*time.Minute).Truncate(Precision)) {
		t.Errorf("lease after refused reclaims = %q until %v, want A until %v", got.LeaseOwner, got.LeaseExpiresAt, at(10*time.Minute))
	}
	// Expired: reclaimed, and only the lease changes.
	before := got
	noErr(t, "ReclaimRotationLease(r, A) expired", s.ReclaimRotationLease(ctx, "r", "A", at(10*time.Minute)))
	got, _ = s.GetRotation(ctx, "r")
	before.LeaseOwner, before.LeaseExpiresAt = "", nil
	check(t, "GetRotation(r) after reclaim", got, before)
	wantErr(t, "ReclaimRotationLease(r, A) again", s.ReclaimRotationLease(ctx, "r", "A", at(time.Hour)), store.ErrLeaseLost)
	wantErr(t, "RenewRotationLease(r, A) after reclaim", s.RenewRotationLease(ctx, "r", "A", at(time.Hour)), store.ErrLeaseLost)
	wantErr(t, "ReclaimRotationLease(missing)", s.ReclaimRotationLease(ctx, "missing", "A", at(time.Hour)), store.ErrLeaseLost)
	// Taken by B after the expiry: A's reclaim-time view is stale.
	_, err = s.ClaimRotation(ctx, "r", store.ClaimParams{Owner: "B", Now: at(time.Hour), LeaseFor: time.Minute})
	noErr(t, "ClaimRotation(r, B)", err)
	wantErr(t, "ReclaimRotationLease(r, A) after B's claim", s.ReclaimRotationLease(ctx, "r", "A", at(2*time.Hour)), store.ErrLeaseLost)
	wantErr(t, "CheckRotationLease(r, A) after B's claim", s.CheckRotationLease(ctx, "r", "A", at(time.Hour)), store.ErrLeaseLost)
	noErr(t, "CheckRotationLease(r, B)", s.CheckRotationLease(ctx, "r", "B", at(time.Hour)))
}

// testRotationLeaseAcrossStores: two daemons on one database. B's claim
// made between A's GetRotation and PutRotation survives the put; and a
// claim by B, made once A's lease has expired by B's clock, waits for A's
// open transaction that passed the fencing check (CheckRotationLease), so
// what A commits is committed while the lease was A's.
func testRotationLeaseAcrossStores(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	mkSecret(t, a, "f")
	noErr(t, "PutRotation(f)", a.PutRotation(ctx, store.Rotation{Secret: "f", Rotator: "random", Enabled: true, UpdatedAt: base}))

	stale, err := a.GetRotation(ctx, "f")
	noErr(t, "a.GetRotation(f)", err)
	_, err = b.ClaimRotation(ctx, "f", store.ClaimParams{Owner: "B", Now: base, LeaseFor: time.Minute})
	noErr(t, "b.ClaimRotation(f, B)", err)
	stale.LastError = "settings written from a read before B's claim"
	noErr(t, "a.PutRotation(f) from the stale read", a.PutRotation(ctx, stale))
	got, _ := b.GetRotation(ctx, "f")
	if got.LeaseOwner != "B" {
		t.Fatalf("lease after A's put = %q, want B (the claim survives)", got.LeaseOwner)
	}
	noErr(t, "b.ReleaseRotation(f, B)", b.ReleaseRotation(ctx, "f", "B"))

	_, err = a.ClaimRotation(ctx, "f", store.ClaimParams{Owner: "A", Now: base, LeaseFor: time.Minute})
	noErr(t, "a.ClaimRotation(f, A)", err)
	claimed := make(chan error, 1)
	started := false
	err = a.InTx(ctx, func(tx store.Ops) error {
		if err := tx.CheckRotationLease(ctx, "f", "A", at(59*time.Second)); err != nil {
			return err
		}
		if !started { // InTx may run fn again
			started = true
			go func() {
				_, err := b.ClaimRotation(ctx, "f", store.ClaimParams{Owner: "B", Now: at(2 * time.Minute), LeaseFor: time.Minute})
				claimed <- err
			}()
		}
		// B's claim must not get through while this transaction is open.
		select {
		case err := <-claimed:
			claimed <- err
			return fmt.Errorf("b.ClaimRotation returned (err %v) while A's fenced transaction was open", err)
		case <-time.After(300 * time.Millisecond):
		}
		r, err := tx.GetRotationForUpdate(ctx, "f")
		if err != nil {
			return err
		}
		r.LastError = "A's step"
		return tx.PutRotation(ctx, r)
	})
	noErr(t, "A's fenced transaction", err)
	noErr(t, "b.ClaimRotation(f, B) after A's commit", <-claimed)
	got, _ = b.GetRotation(ctx, "f")
	if got.LeaseOwner != "B" || got.LastError != "A's step" {
		t.Errorf("after A's commit and B's claim: lease %q, last error %q; want B and A's step", got.LeaseOwner, got.LastError)
	}
	wantErr(t, "a.CheckRotationLease(f, A) after B's claim", a.CheckRotationLease(ctx, "f", "A", at(2*time.Minute)), store.ErrLeaseLost)
}

// LegacyAuditRecords are the records a test writes, in the schema before
// audit chains existed, to a store it then opens (migrating it); hand the
// opened store to CheckLegacyAuditMigrated.
func LegacyAuditRecords() []store.AuditRecord {
	var recs []store.AuditRecord
	var prev []byte
	for i := int64(1); i <= 3; i++ {
		r := auditRec(i, prev, "app/legacy", at(time.Duration(i)*time.Minute))
		recs = append(recs, r)
		prev = r.Hash
	}
	return recs
}

// CheckLegacyAuditMigrated checks a store migrated from the schema with
// one audit chain holding LegacyAuditRecords: they are the legacy chain,
// unchanged, with its head where the old head row was; the anchor chain
// is empty, and writers get chains of their own.
func CheckLegacyAuditMigrated(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	old := LegacyAuditRecords()
	got, err := s.ListAudit(ctx, store.AuditFilter{ByChain: true, Chain: store.AuditLegacyChain})
	noErr(t, "ListAudit(legacy chain)", err)
	check(t, "the legacy chain after the migration", got, old)
	seq, hash, err := s.AuditHead(ctx, store.AuditLegacyChain)
	if err != nil || seq != 3 || !bytes.Equal(hash, old[2].Hash) {
		t.Errorf("AuditHead(legacy) after the migration = %d, %q, %v; want 3, %q", seq, hash, err, old[2].Hash)
	}
	if seq, _, err := s.AuditHead(ctx, store.AuditAnchorChain); err != nil || seq != 0 {
		t.Errorf("AuditHead(anchor) after the migration = %d, %v; want 0", seq, err)
	}
	var h store.AuditHead
	noErr(t, "append to a writer chain after the migration", s.InTx(ctx, func(tx store.Ops) (err error) {
		if h, err = tx.ClaimAuditChain(ctx); err != nil {
			return err
		}
		r := auditRec(1, nil, "app/new", at(time.Hour))
		r.Chain = h.Chain
		return tx.AppendAudit(ctx, r)
	}))
	if h.Chain < store.AuditFirstWriterChain || h.Seq != 0 {
		t.Errorf("ClaimAuditChain after the migration = %+v, want a new writer chain", h)
	}
	heads, err := s.AuditHeads(ctx)
	noErr(t, "AuditHeads", err)
	if len(heads) != 3 || heads[0].Chain != 0 || heads[0].Seq != 3 || heads[1].Chain != 1 || heads[2].Chain != h.Chain || heads[2].Seq != 1 {
		t.Errorf("AuditHeads after the migration and one append = %+v", heads)
	}
}
