package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/store"
)

// KeyStore adapts a store.Store to the persistence interface of package
// kms, translating records and sentinel errors. kms is a leaf package and
// knows nothing of the store; this is the one place the two meet.
func KeyStore(st store.Store) kms.KeyStore { return keyStore{st} }

type keyStore struct{ st store.Store }

var _ kms.KeyStore = keyStore{}

// kmsErr maps store sentinels to kms sentinels, keeping the message.
func kmsErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s", kms.ErrNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %s", kms.ErrConflict, err.Error())
	case errors.Is(err, store.ErrStale):
		return fmt.Errorf("%w: %s", kms.ErrStale, err.Error())
	default:
		return err
	}
}

func toKMSKey(k store.MasterKey) kms.Key {
	return kms.Key{
		ID: k.ID, Region: k.Region, Alias: k.Alias, Description: k.Description, State: kms.KeyState(k.State),
		PrimaryVersion: k.PrimaryVersion, RotationPeriod: k.RotationPeriod, NextRotationAt: k.NextRotationAt,
		DeletionDate: k.DeletionDate, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
}

func toStoreKey(k kms.Key) store.MasterKey {
	return store.MasterKey{
		ID: k.ID, Region: k.Region, Alias: k.Alias, Description: k.Description, State: string(k.State),
		PrimaryVersion: k.PrimaryVersion, RotationPeriod: k.RotationPeriod, NextRotationAt: k.NextRotationAt,
		DeletionDate: k.DeletionDate, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
}

func (s keyStore) GetMeta(ctx context.Context, name string) ([]byte, error) {
	v, err := s.st.GetMeta(ctx, name)
	return v, kmsErr(err)
}

func (s keyStore) PutMetaIfAbsent(ctx context.Context, name string, value []byte) error {
	return kmsErr(s.st.PutMetaIfAbsent(ctx, name, value))
}

func (s keyStore) CreateRegion(ctx context.Context, r kms.Region) error {
	return kmsErr(s.st.CreateRegion(ctx, store.Region(r)))
}

func (s keyStore) GetRegion(ctx context.Context, name string) (kms.Region, error) {
	r, err := s.st.GetRegion(ctx, name)
	return kms.Region(r), kmsErr(err)
}

func (s keyStore) ListRegions(ctx context.Context) ([]kms.Region, error) {
	rs, err := s.st.ListRegions(ctx)
	out := make([]kms.Region, len(rs))
	for i, r := range rs {
		out[i] = kms.Region(r)
	}
	return out, kmsErr(err)
}

func (s keyStore) CreateKey(ctx context.Context, k kms.Key, v kms.KeyVersion) error {
	return kmsErr(s.st.CreateKey(ctx, toStoreKey(k), store.KeyVersion(v)))
}

func (s keyStore) GetKey(ctx context.Context, id string) (kms.Key, error) {
	k, err := s.st.GetKey(ctx, id)
	return toKMSKey(k), kmsErr(err)
}

func (s keyStore) GetKeyByAlias(ctx context.Context, region, alias string) (kms.Key, error) {
	k, err := s.st.GetKeyByAlias(ctx, region, alias)
	return toKMSKey(k), kmsErr(err)
}

func (s keyStore) ListKeys(ctx context.Context, region string) ([]kms.Key, error) {
	ks, err := s.st.ListKeys(ctx, region)
	out := make([]kms.Key, len(ks))
	for i, k := range ks {
		out[i] = toKMSKey(k)
	}
	return out, kmsErr(err)
}

func (s keyStore) UpdateKey(ctx context.Context, k kms.Key, ifUpdatedAt time.Time) error {
	return kmsErr(s.st.UpdateKey(ctx, toStoreKey(k), ifUpdatedAt))
}

func (s keyStore) AddKeyVersion(ctx context.Context, v kms.KeyVersion) error {
	return kmsErr(s.st.AddKeyVersion(ctx, store.KeyVersion(v)))
}

func (s keyStore) GetKeyVersions(ctx context.Context, keyID string) ([]kms.KeyVersion, error) {
	vs, err := s.st.GetKeyVersions(ctx, keyID)
	out := make([]kms.KeyVersion, len(vs))
	for i, v := range vs {
		out[i] = kms.KeyVersion(v)
	}
	return out, kmsErr(err)
}

func (s keyStore) DeleteKey(ctx context.Context, keyID string) error {
	return kmsErr(s.st.DeleteKey(ctx, keyID))
}
