package storetest

import (
	"context"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// Modes are the two ways the suite reaches a store's operations, as
// River's driver tests run every operation both on the driver and on a
// transaction: Direct calls the Store's own methods (each in its implicit
// transaction), InTx runs every call inside its own InTx through the
// transaction's store.Ops. A test body that opens InTx itself runs the
// same in both modes.
var Modes = []Mode{
	{Name: "Store", Wrap: func(s store.Store) store.Store { return s }},
	{Name: "InTx", Wrap: func(s store.Store) store.Store { return txStore{s} }},
}

// Mode names one way of reaching a store's operations.
type Mode struct {
	Name string
	// Wrap returns the store the tests use: s itself, or a store whose
	// every store.Ops method runs inside s.InTx.
	Wrap func(s store.Store) store.Store
}

// txStore is a store.Store whose store.Ops methods each run in their own
// InTx, through the transaction's Ops; InTx, Dialect and Close are the
// wrapped store's.
type txStore struct{ s store.Store }

var _ store.Store = txStore{}

func (w txStore) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	return w.s.InTx(ctx, fn)
}
func (w txStore) Dialect() string { return w.s.Dialect() }
func (w txStore) Close() error    { return w.s.Close() }

// inTx runs fn in one transaction of s and returns its result.
func inTx[T any](ctx context.Context, s store.Store, fn func(tx store.Ops) (T, error)) (T, error) {
	var v T
	err := s.InTx(ctx, func(tx store.Ops) (err error) {
		v, err = fn(tx)
		return err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

func (w txStore) GetMeta(ctx context.Context, name string) ([]byte, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]byte, error) { return tx.GetMeta(ctx, name) })
}

func (w txStore) PutMetaIfAbsent(ctx context.Context, name string, value []byte) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.PutMetaIfAbsent(ctx, name, value) })
}

func (w txStore) CreateRegion(ctx context.Context, r store.Region) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.CreateRegion(ctx, r) })
}

func (w txStore) GetRegion(ctx context.Context, name string) (store.Region, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Region, error) { return tx.GetRegion(ctx, name) })
}

func (w txStore) ListRegions(ctx context.Context) ([]store.Region, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Region, error) { return tx.ListRegions(ctx) })
}

func (w txStore) CreateKey(ctx context.Context, k store.MasterKey, v store.KeyVersion) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.CreateKey(ctx, k, v) })
}

func (w txStore) GetKey(ctx context.Context, id string) (store.MasterKey, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.MasterKey, error) { return tx.GetKey(ctx, id) })
}

func (w txStore) GetKeyByAlias(ctx context.Context, region, alias string) (store.MasterKey, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.MasterKey, error) { return tx.GetKeyByAlias(ctx, region, alias) })
}

func (w txStore) ListKeys(ctx context.Context, region string) ([]store.MasterKey, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.MasterKey, error) { return tx.ListKeys(ctx, region) })
}

func (w txStore) UpdateKey(ctx context.Context, k store.MasterKey, ifUpdatedAt time.Time) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.UpdateKey(ctx, k, ifUpdatedAt) })
}

func (w txStore) AddKeyVersion(ctx context.Context, v store.KeyVersion) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.AddKeyVersion(ctx, v) })
}

func (w txStore) GetKeyVersions(ctx context.Context, keyID string) ([]store.KeyVersion, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.KeyVersion, error) { return tx.GetKeyVersions(ctx, keyID) })
}

func (w txStore) DeleteKey(ctx context.Context, id string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.DeleteKey(ctx, id) })
}

func (w txStore) CountKeys(ctx context.Context) (int, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int, error) { return tx.CountKeys(ctx) })
}

func (w txStore) CreateSecret(ctx context.Context, s store.Secret) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.CreateSecret(ctx, s) })
}

func (w txStore) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Secret, error) { return tx.GetSecret(ctx, name) })
}

func (w txStore) UpdateSecret(ctx context.Context, s store.Secret) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.UpdateSecret(ctx, s) })
}

func (w txStore) ListSecrets(ctx context.Context, p store.ListSecretsParams) ([]store.Secret, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Secret, error) { return tx.ListSecrets(ctx, p) })
}

func (w txStore) DeleteSecret(ctx context.Context, name string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.DeleteSecret(ctx, name) })
}

func (w txStore) SecretsDueForPurge(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]string, error) { return tx.SecretsDueForPurge(ctx, now, limit) })
}

func (w txStore) CountSecrets(ctx context.Context) (int, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int, error) { return tx.CountSecrets(ctx) })
}

func (w txStore) InsertVersion(ctx context.Context, v store.SecretVersion) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.InsertVersion(ctx, v) })
}

func (w txStore) GetVersion(ctx context.Context, secret string, version int64) (store.SecretVersion, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.SecretVersion, error) { return tx.GetVersion(ctx, secret, version) })
}

func (w txStore) ListVersions(ctx context.Context, secret string, withEnvelope bool) ([]store.SecretVersion, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.SecretVersion, error) { return tx.ListVersions(ctx, secret, withEnvelope) })
}

func (w txStore) DeleteVersion(ctx context.Context, secret string, version int64) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.DeleteVersion(ctx, secret, version) })
}

func (w txStore) SwapEnvelope(ctx context.Context, p store.SwapEnvelopeParams) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.SwapEnvelope(ctx, p) })
}

func (w txStore) VersionsNotOnKeyVersion(ctx context.Context, p store.StaleVersionsParams) ([]store.SecretVersion, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.SecretVersion, error) { return tx.VersionsNotOnKeyVersion(ctx, p) })
}

func (w txStore) SetStage(ctx context.Context, secret, stage string, version int64) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.SetStage(ctx, secret, stage, version) })
}

func (w txStore) ClearStage(ctx context.Context, secret, stage string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.ClearStage(ctx, secret, stage) })
}

func (w txStore) GetStages(ctx context.Context, secret string) (map[string]int64, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (map[string]int64, error) { return tx.GetStages(ctx, secret) })
}

func (w txStore) PutRotation(ctx context.Context, r store.Rotation) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.PutRotation(ctx, r) })
}

func (w txStore) GetRotation(ctx context.Context, secret string) (store.Rotation, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Rotation, error) { return tx.GetRotation(ctx, secret) })
}

func (w txStore) GetRotationForUpdate(ctx context.Context, secret string) (store.Rotation, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Rotation, error) { return tx.GetRotationForUpdate(ctx, secret) })
}

func (w txStore) ListRotations(ctx context.Context, p store.ListRotationsParams) ([]store.Rotation, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Rotation, error) { return tx.ListRotations(ctx, p) })
}

func (w txStore) ClaimDueRotations(ctx context.Context, p store.ClaimParams) ([]store.Rotation, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Rotation, error) { return tx.ClaimDueRotations(ctx, p) })
}

func (w txStore) ClaimRotation(ctx context.Context, secret string, p store.ClaimParams) (store.Rotation, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Rotation, error) { return tx.ClaimRotation(ctx, secret, p) })
}

func (w txStore) RenewRotationLease(ctx context.Context, secret, owner string, until time.Time) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.RenewRotationLease(ctx, secret, owner, until) })
}

func (w txStore) ReleaseRotation(ctx context.Context, secret, owner string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.ReleaseRotation(ctx, secret, owner) })
}

func (w txStore) CheckRotationLease(ctx context.Context, secret, owner string, now time.Time) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.CheckRotationLease(ctx, secret, owner, now) })
}

func (w txStore) ReclaimRotationLease(ctx context.Context, secret, owner string, now time.Time) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.ReclaimRotationLease(ctx, secret, owner, now) })
}

func (w txStore) EarliestDue(ctx context.Context) (time.Time, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (time.Time, error) { return tx.EarliestDue(ctx) })
}

func (w txStore) CreateRun(ctx context.Context, r store.RotationRun) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.CreateRun(ctx, r) })
}

func (w txStore) UpdateRun(ctx context.Context, r store.RotationRun) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.UpdateRun(ctx, r) })
}

func (w txStore) GetRun(ctx context.Context, id string) (store.RotationRun, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.RotationRun, error) { return tx.GetRun(ctx, id) })
}

func (w txStore) ListRuns(ctx context.Context, secret string, limit int) ([]store.RotationRun, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.RotationRun, error) { return tx.ListRuns(ctx, secret, limit) })
}

func (w txStore) UnfinishedRuns(ctx context.Context) ([]store.RotationRun, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.RotationRun, error) { return tx.UnfinishedRuns(ctx) })
}

func (w txStore) AddRunStep(ctx context.Context, s store.RunStep) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.AddRunStep(ctx, s) })
}

func (w txStore) ListRunSteps(ctx context.Context, runID string) ([]store.RunStep, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.RunStep, error) { return tx.ListRunSteps(ctx, runID) })
}

func (w txStore) AppendOutbox(ctx context.Context, e store.OutboxEvent) (int64, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int64, error) { return tx.AppendOutbox(ctx, e) })
}

func (w txStore) ClaimOutbox(ctx context.Context, p store.ClaimParams) ([]store.OutboxEvent, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.OutboxEvent, error) { return tx.ClaimOutbox(ctx, p) })
}

func (w txStore) MarkDelivered(ctx context.Context, ids []int64, at time.Time) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.MarkDelivered(ctx, ids, at) })
}

func (w txStore) ListOutboxAfter(ctx context.Context, after int64, limit int) ([]store.OutboxEvent, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.OutboxEvent, error) { return tx.ListOutboxAfter(ctx, after, limit) })
}

func (w txStore) TrimOutbox(ctx context.Context, before time.Time) (int, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int, error) { return tx.TrimOutbox(ctx, before) })
}

func (w txStore) CreateToken(ctx context.Context, t store.Token) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.CreateToken(ctx, t) })
}

func (w txStore) GetTokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Token, error) { return tx.GetTokenByHash(ctx, hash) })
}

func (w txStore) GetToken(ctx context.Context, id string) (store.Token, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Token, error) { return tx.GetToken(ctx, id) })
}

func (w txStore) ListTokens(ctx context.Context, p store.Page) ([]store.Token, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Token, error) { return tx.ListTokens(ctx, p) })
}

func (w txStore) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.RevokeToken(ctx, id, at) })
}

func (w txStore) PutPolicy(ctx context.Context, p store.Policy) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.PutPolicy(ctx, p) })
}

func (w txStore) GetPolicy(ctx context.Context, name string) (store.Policy, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Policy, error) { return tx.GetPolicy(ctx, name) })
}

func (w txStore) ListPolicies(ctx context.Context, p store.Page) ([]store.Policy, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Policy, error) { return tx.ListPolicies(ctx, p) })
}

func (w txStore) DeletePolicy(ctx context.Context, name string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.DeletePolicy(ctx, name) })
}

func (w txStore) AuditHead(ctx context.Context, chain int64) (seq int64, hash []byte, err error) {
	err = w.s.InTx(ctx, func(tx store.Ops) (err error) {
		seq, hash, err = tx.AuditHead(ctx, chain)
		return err
	})
	return seq, hash, err
}

func (w txStore) ClaimAuditChain(ctx context.Context) (store.AuditHead, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.AuditHead, error) { return tx.ClaimAuditChain(ctx) })
}

func (w txStore) AuditHeads(ctx context.Context) ([]store.AuditHead, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.AuditHead, error) { return tx.AuditHeads(ctx) })
}

func (w txStore) AppendAudit(ctx context.Context, recs ...store.AuditRecord) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.AppendAudit(ctx, recs...) })
}

func (w txStore) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.AuditRecord, error) { return tx.ListAudit(ctx, f) })
}

func (w txStore) RehashAudit(ctx context.Context, recs ...store.AuditRecord) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.RehashAudit(ctx, recs...) })
}

func (w txStore) PutPlugin(ctx context.Context, p store.Plugin) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.PutPlugin(ctx, p) })
}

func (w txStore) GetPlugin(ctx context.Context, name string) (store.Plugin, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Plugin, error) { return tx.GetPlugin(ctx, name) })
}

func (w txStore) ListPlugins(ctx context.Context) ([]store.Plugin, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Plugin, error) { return tx.ListPlugins(ctx) })
}

func (w txStore) DeletePlugin(ctx context.Context, name string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.DeletePlugin(ctx, name) })
}

func (w txStore) PutHook(ctx context.Context, h store.Hook) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.PutHook(ctx, h) })
}

func (w txStore) GetHook(ctx context.Context, name string) (store.Hook, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (store.Hook, error) { return tx.GetHook(ctx, name) })
}

func (w txStore) RecordPluginStart(ctx context.Context, p store.Plugin) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.RecordPluginStart(ctx, p) })
}

func (w txStore) ListHooks(ctx context.Context) ([]store.Hook, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.Hook, error) { return tx.ListHooks(ctx) })
}

func (w txStore) DeleteHook(ctx context.Context, name string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.DeleteHook(ctx, name) })
}

func (w txStore) AddHookDeliveries(ctx context.Context, ds []store.HookDelivery) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.AddHookDeliveries(ctx, ds) })
}

func (w txStore) ClaimHookDeliveries(ctx context.Context, p store.ClaimParams) ([]store.HookDelivery, error) {
	return inTx(ctx, w.s, func(tx store.Ops) ([]store.HookDelivery, error) { return tx.ClaimHookDeliveries(ctx, p) })
}

func (w txStore) FinishHookDelivery(ctx context.Context, r store.HookDeliveryResult) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.FinishHookDelivery(ctx, r) })
}

func (w txStore) ReleaseHookDeliveries(ctx context.Context, owner string) (int, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int, error) { return tx.ReleaseHookDeliveries(ctx, owner) })
}

func (w txStore) CapHookBacklog(ctx context.Context, hook string, max int, now time.Time) (int, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int, error) { return tx.CapHookBacklog(ctx, hook, max, now) })
}

func (w txStore) TrimHookDeliveries(ctx context.Context, before time.Time) (int, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (int, error) { return tx.TrimHookDeliveries(ctx, before) })
}

func (w txStore) OutboxBacklog(ctx context.Context) (int, time.Time, error) {
	var (
		n      int
		oldest time.Time
	)
	err := w.s.InTx(ctx, func(tx store.Ops) (err error) {
		n, oldest, err = tx.OutboxBacklog(ctx)
		return err
	})
	return n, oldest, err
}

func (w txStore) TryLock(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	return inTx(ctx, w.s, func(tx store.Ops) (bool, error) { return tx.TryLock(ctx, name, owner, now, until) })
}

func (w txStore) Unlock(ctx context.Context, name, owner string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.Unlock(ctx, name, owner) })
}

func (w txStore) NotifySecretChanged(ctx context.Context, name string) error {
	return w.s.InTx(ctx, func(tx store.Ops) error { return tx.NotifySecretChanged(ctx, name) })
}
