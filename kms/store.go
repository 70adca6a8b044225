package kms

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the KeyStore contract. A KeyStore returns them, or
// errors wrapping them, so that kms can tell "missing" and "taken" apart
// from real failures with errors.Is. Manager methods also return errors
// that match ErrNotFound when a region or key does not exist.
var (
	// ErrNotFound: the row does not exist.
	ErrNotFound = errors.New("kms: not found")
	// ErrConflict: a unique constraint was violated: the meta name, region
	// name, key id, (region, alias) pair or (key id, version) pair exists.
	ErrConflict = errors.New("kms: conflict")
	// ErrStale: UpdateKey's compare-and-swap found the key changed by
	// another writer since it was read.
	ErrStale = errors.New("kms: key changed by another writer")
)

// KeyStore is the persistence kms needs. The daemon adapts its store
// (SQLite or PostgreSQL) to it. Every method is safe for concurrent use and
// is atomic on its own; several daemons may share one KeyStore, and kms
// relies on ErrConflict, never on locks, to resolve their races.
//
// Records hold key material only in wrapped form: Region.FingerprintKey and
// KeyVersion.Material are AES-256-GCM ciphertexts under the root key, opaque
// to the store. Times are stored with at least millisecond precision.
type KeyStore interface {
	// GetMeta returns the value stored under name, or ErrNotFound.
	GetMeta(ctx context.Context, name string) ([]byte, error)
	// PutMetaIfAbsent stores value under name, or returns ErrConflict if
	// name already has a value (which it leaves unchanged).
	PutMetaIfAbsent(ctx context.Context, name string, value []byte) error

	// CreateRegion inserts r, or returns ErrConflict if r.Name exists.
	CreateRegion(ctx context.Context, r Region) error
	// GetRegion returns the region, or ErrNotFound.
	GetRegion(ctx context.Context, name string) (Region, error)
	// ListRegions returns every region, in any order.
	ListRegions(ctx context.Context) ([]Region, error)

	// CreateKey inserts k and its first version v in one transaction, or
	// returns ErrConflict if k.ID exists or k.Alias is non-empty and taken
	// by another key of k.Region. An empty alias means "no alias" and never
	// conflicts (store it as NULL).
	CreateKey(ctx context.Context, k Key, v KeyVersion) error
	// GetKey returns the key with this id, or ErrNotFound.
	GetKey(ctx context.Context, id string) (Key, error)
	// GetKeyByAlias returns the key of region whose alias (without the
	// "alias/" prefix) is alias, or ErrNotFound.
	GetKeyByAlias(ctx context.Context, region, alias string) (Key, error)
	// ListKeys returns the keys of region, or of every region if region is
	// "", in any order.
	ListKeys(ctx context.Context, region string) ([]Key, error)
	// UpdateKey writes k's mutable fields (State, Alias, Description,
	// RotationPeriod, NextRotationAt, DeletionDate, UpdatedAt; not
	// PrimaryVersion, which AddKeyVersion owns) to the key with id k.ID,
	// only if its UpdatedAt is still ifUpdatedAt (what kms read), else
	// ErrStale: two daemons changing one key never undo each other's
	// change. ErrNotFound if there is none, ErrConflict if the new alias is
	// taken in the region.
	UpdateKey(ctx context.Context, k Key, ifUpdatedAt time.Time) error
	// AddKeyVersion inserts v and, in the same transaction, sets the key's
	// PrimaryVersion to v.Version. It returns ErrConflict if the key already
	// has that version and ErrNotFound if the key does not exist.
	AddKeyVersion(ctx context.Context, v KeyVersion) error
	// GetKeyVersions returns every version of the key, in ascending order
	// of Version; an empty list (not an error) for an unknown key.
	GetKeyVersions(ctx context.Context, keyID string) ([]KeyVersion, error)
	// DeleteKey removes the key and all its versions for good; with them go
	// the only copies of its material (crypto-shredding). ErrNotFound if
	// the key does not exist.
	DeleteKey(ctx context.Context, keyID string) error
}

// Region is the stored form of a region: a named partition of keys with
// its own fingerprint key.
type Region struct {
	Name           string
	FingerprintKey []byte // HMAC key, wrapped by the root key
	CreatedAt      time.Time
}

// KeyState is the state of a master key.
type KeyState string

// Key states. Only an enabled key seals and opens.
const (
	KeyEnabled         KeyState = "enabled"
	KeyDisabled        KeyState = "disabled"
	KeyPendingDeletion KeyState = "pending_deletion"
)

// Key is a master key's metadata. Its material lives in KeyVersion records.
type Key struct {
	ID             string // "mk-" and 16 lowercase hex digits
	Region         string
	Alias          string // without the "alias/" prefix; "" for none
	Description    string
	State          KeyState
	PrimaryVersion int           // the version new seals use: the newest
	RotationPeriod time.Duration // 0: no automatic rotation
	NextRotationAt *time.Time    // nil when RotationPeriod is 0
	DeletionDate   *time.Time    // set while pending deletion
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// KeyVersion is one immutable version of a master key's material.
type KeyVersion struct {
	KeyID     string
	Version   int    // 1, 2, 3, …
	Material  []byte // 32-byte AES key, wrapped by the root key
	CreatedAt time.Time
}
