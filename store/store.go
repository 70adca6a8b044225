// Package store defines rotary's persistent records, the Store interface
// every backend implements, and the sentinel errors callers test with
// errors.Is. Backends live in subpackages: store/sqlite (the embedded
// default) and store/postgres (shared by several daemons). The conformance
// suite in store/storetest runs against both.
//
// The store speaks in domain records, never in plaintext secrets: secret
// versions hold sealed envelopes produced by package kms, master keys hold
// material wrapped by the root key, tokens hold hashes.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends translate driver errors into these; wrapping
// with context is allowed, so callers use errors.Is.
var (
	// ErrNotFound: the record does not exist (or, for secrets, was purged).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique constraint was violated (name taken, version
	// exists) or a compare-and-swap found the row changed underneath.
	ErrConflict = errors.New("store: conflict")
	// ErrLeaseLost: the caller no longer holds the lease it names.
	ErrLeaseLost = errors.New("store: lease lost")
	// ErrStale: a compare-and-swap write found the row changed by another
	// writer since the caller read it; read again and retry.
	ErrStale = errors.New("store: changed by another writer")
)

// Store is a backend. Every method of Ops runs in its own implicit
// transaction; InTx groups several into one.
type Store interface {
	Ops

	// InTx runs fn inside one transaction. If fn returns an error (or
	// panics) the transaction rolls back and InTx returns that error;
	// otherwise it commits. On SQLite the transaction is IMMEDIATE (it takes
	// the write lock at the start); on PostgreSQL it is READ COMMITTED and
	// methods that must serialize take row locks (audit head, claims).
	// fn must not keep tx after it returns, and must use tx rather than
	// the Store for its writes (SQLite has one write connection, which fn's
	// transaction holds). On PostgreSQL, InTx may run fn again after a
	// serialization failure or deadlock, so fn must be safe to repeat.
	InTx(ctx context.Context, fn func(tx Ops) error) error

	// Dialect names the backend: "sqlite" or "postgres".
	Dialect() string

	// Close releases the backend's resources.
	Close() error
}

// Ops is every operation a Store offers, inside or outside a transaction.
type Ops interface {
	// Meta: small named blobs (root key check value, passphrase salt).
	GetMeta(ctx context.Context, name string) ([]byte, error)
	// PutMetaIfAbsent stores value under name; ErrConflict if present.
	PutMetaIfAbsent(ctx context.Context, name string, value []byte) error

	// Regions.
	CreateRegion(ctx context.Context, r Region) error // ErrConflict if it exists
	GetRegion(ctx context.Context, name string) (Region, error)
	ListRegions(ctx context.Context) ([]Region, error)

	// Master keys. CreateKey inserts the key and its first version
	// together; ErrConflict when the id or (region, alias) is taken.
	CreateKey(ctx context.Context, k MasterKey, v KeyVersion) error
	GetKey(ctx context.Context, id string) (MasterKey, error)
	GetKeyByAlias(ctx context.Context, region, alias string) (MasterKey, error)
	ListKeys(ctx context.Context, region string) ([]MasterKey, error) // region "" lists all
	// UpdateKey writes k's metadata by ID (not PrimaryVersion, which
	// AddKeyVersion owns). With ifUpdatedAt set it is a compare-and-swap:
	// only if the row's UpdatedAt is still that, else ErrStale. ErrNotFound,
	// ErrConflict (alias taken).
	UpdateKey(ctx context.Context, k MasterKey, ifUpdatedAt time.Time) error
	// AddKeyVersion inserts v and sets the key's PrimaryVersion to
	// v.Version; ErrConflict if that version exists.
	AddKeyVersion(ctx context.Context, v KeyVersion) error
	GetKeyVersions(ctx context.Context, keyID string) ([]KeyVersion, error) // ascending
	// DeleteKey removes the key and every version of it.
	DeleteKey(ctx context.Context, id string) error
	// CountKeys counts master keys, for metrics.
	CountKeys(ctx context.Context) (int, error)

	// Secrets. Names are unique among secrets not yet purged.
	CreateSecret(ctx context.Context, s Secret) error // ErrConflict if the name is taken
	GetSecret(ctx context.Context, name string) (Secret, error)
	// UpdateSecret writes every mutable field of s (by Name).
	UpdateSecret(ctx context.Context, s Secret) error
	// ListSecrets returns secrets whose name starts with p.Prefix (and,
	// when p.Globs is set, matches one of them), ordered by name, after
	// p.After, at most p.Limit (0 = no limit).
	ListSecrets(ctx context.Context, p ListSecretsParams) ([]Secret, error)
	// DeleteSecret removes a secret with all its versions, stages and
	// rotation records (purge).
	DeleteSecret(ctx context.Context, name string) error
	// SecretsDueForPurge lists deleted secrets whose PurgeAt <= now.
	SecretsDueForPurge(ctx context.Context, now time.Time, limit int) ([]string, error)
	CountSecrets(ctx context.Context) (int, error)

	// Versions. InsertVersion fails with ErrConflict if the version exists.
	InsertVersion(ctx context.Context, v SecretVersion) error
	// GetVersion returns one version with its stages filled in.
	GetVersion(ctx context.Context, secret string, version int64) (SecretVersion, error)
	// ListVersions returns a secret's versions, ascending, stages filled in.
	// The Envelope field is left empty when withEnvelope is false.
	ListVersions(ctx context.Context, secret string, withEnvelope bool) ([]SecretVersion, error)
	// DeleteVersion removes one version (retention pruning). A version that
	// holds a stage is refused with ErrConflict.
	DeleteVersion(ctx context.Context, secret string, version int64) error
	// SwapEnvelope replaces a version's envelope if it still equals old
	// (compare-and-swap, for rewrap); ErrConflict if it changed.
	SwapEnvelope(ctx context.Context, p SwapEnvelopeParams) error
	// VersionsNotOnKeyVersion lists versions sealed under keyID with a key
	// version other than keyVersion, at most limit, ordered by
	// (secret, version) after the cursor, envelopes included.
	VersionsNotOnKeyVersion(ctx context.Context, p StaleVersionsParams) ([]SecretVersion, error)

	// Stages. Each (secret, stage) names at most one version.
	// SetStage points stage at version (moving it if it was elsewhere).
	SetStage(ctx context.Context, secret, stage string, version int64) error
	// ClearStage removes stage from the secret; no error if absent.
	ClearStage(ctx context.Context, secret, stage string) error
	// GetStages returns stage -> version for a secret.
	GetStages(ctx context.Context, secret string) (map[string]int64, error)

	// NotifySecretChanged tells the other daemons sharing the store that
	// the secret name changed, so that they drop it from their read
	// caches. Inside InTx the notice goes out after the transaction
	// commits (InTx returns once it was sent, or after a short bound),
	// and never if it rolls back; outside, at once. A no-op on a store
	// that one daemon owns (SQLite). See store/postgres (doc.go).
	NotifySecretChanged(ctx context.Context, name string) error

	// Rotation settings and state, one row per secret that has any.
	// PutRotation inserts or replaces a rotation's settings and state but
	// never its lease (LeaseOwner and LeaseExpiresAt are ignored): a
	// replace keeps the stored lease, an insert starts unleased. Leases
	// change only through the claim, renew, release and reclaim methods.
	PutRotation(ctx context.Context, r Rotation) error
	GetRotation(ctx context.Context, secret string) (Rotation, error)
	// GetRotationForUpdate is GetRotation for a read-modify-write inside
	// InTx: on PostgreSQL it locks the row until the transaction ends
	// (SELECT … FOR UPDATE), so a concurrent writer of the row waits
	// rather than being undone by the PutRotation that follows; SQLite's
	// IMMEDIATE transaction serializes writers already.
	GetRotationForUpdate(ctx context.Context, secret string) (Rotation, error)
	// ListRotations returns rotations in secret-name order: all of them
	// for the zero params, or one page of those whose secret matches one
	// of the globs.
	ListRotations(ctx context.Context, p ListRotationsParams) ([]Rotation, error)
	// ClaimDueRotations leases up to p.Limit rotations that are enabled,
	// due (NextDueAt <= p.Now) and not leased (or whose lease expired),
	// ordered by due time. Each is returned to exactly one claimer.
	ClaimDueRotations(ctx context.Context, p ClaimParams) ([]Rotation, error)
	// ClaimRotation leases one secret's rotation regardless of due time
	// (manual rotation); ErrConflict if someone else holds a live lease.
	ClaimRotation(ctx context.Context, secret string, p ClaimParams) (Rotation, error)
	// RenewRotationLease extends the lease; ErrLeaseLost if not held.
	RenewRotationLease(ctx context.Context, secret, owner string, until time.Time) error
	// ReleaseRotation clears the lease held by owner; ErrLeaseLost if not held.
	ReleaseRotation(ctx context.Context, secret, owner string) error
	// CheckRotationLease is the fencing check of a rotation step's commit:
	// nil if owner holds the secret's lease and it expires after now,
	// ErrLeaseLost otherwise (expired, released, taken, or no rotation).
	// Inside InTx on PostgreSQL it locks the row until the transaction
	// ends, so another owner's claim waits for the commit and cannot slip
	// between the check and the commit.
	CheckRotationLease(ctx context.Context, secret, owner string, now time.Time) error
	// ReclaimRotationLease clears owner's lease on secret if it expired at
	// now (expiry <= now), in one compare-and-swap statement; ErrLeaseLost
	// if owner no longer holds it or renewed it meanwhile.
	ReclaimRotationLease(ctx context.Context, secret, owner string, now time.Time) error
	// EarliestDue returns the smallest NextDueAt of enabled rotations, or
	// ErrNotFound when none is scheduled.
	EarliestDue(ctx context.Context) (time.Time, error)

	// Rotation runs and their steps (history).
	CreateRun(ctx context.Context, r RotationRun) error
	UpdateRun(ctx context.Context, r RotationRun) error // by ID
	GetRun(ctx context.Context, id string) (RotationRun, error)
	// ListRuns returns a secret's runs, newest first, at most limit (0 = all).
	ListRuns(ctx context.Context, secret string, limit int) ([]RotationRun, error)
	// UnfinishedRuns returns runs whose State is RunRunning.
	UnfinishedRuns(ctx context.Context) ([]RotationRun, error)
	AddRunStep(ctx context.Context, s RunStep) error
	ListRunSteps(ctx context.Context, runID string) ([]RunStep, error)

	// Outbox.
	// AppendOutbox inserts an event and returns its ID (monotonic).
	AppendOutbox(ctx context.Context, e OutboxEvent) (int64, error)
	// ClaimOutbox leases up to p.Limit undelivered events (unleased, with
	// expired leases, or already leased by p.Owner), ordered by ID. Per
	// secret order holds across claimers: an event is never claimed while
	// an earlier undelivered event of the same secret is leased by another
	// owner, and never without every earlier undelivered event of its
	// secret in the same batch. Claims serialize (PostgreSQL: an advisory
	// transaction lock), so two claimers never split one secret's events.
	ClaimOutbox(ctx context.Context, p ClaimParams) ([]OutboxEvent, error)
	// MarkDelivered sets DeliveredAt on the events.
	MarkDelivered(ctx context.Context, ids []int64, at time.Time) error
	// ListOutboxAfter returns events with ID > after, ascending, at most limit.
	ListOutboxAfter(ctx context.Context, after int64, limit int) ([]OutboxEvent, error)
	// TrimOutbox deletes delivered events older than before; returns count.
	TrimOutbox(ctx context.Context, before time.Time) (int, error)

	// Tokens. Looked up by the hash of the presented token.
	CreateToken(ctx context.Context, t Token) error
	GetTokenByHash(ctx context.Context, hash []byte) (Token, error)
	GetToken(ctx context.Context, id string) (Token, error)
	// ListTokens returns tokens in id order, a page at a time.
	ListTokens(ctx context.Context, p Page) ([]Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error

	// Policies.
	PutPolicy(ctx context.Context, p Policy) error // insert or replace
	GetPolicy(ctx context.Context, name string) (Policy, error)
	// ListPolicies returns policies in name order, a page at a time.
	ListPolicies(ctx context.Context, p Page) ([]Policy, error)
	DeletePolicy(ctx context.Context, name string) error

	// Audit: several hash chains (see package audit). Chain
	// AuditLegacyChain holds the log of stores written before there were
	// several, AuditAnchorChain the anchors, and writers append to chains
	// from AuditFirstWriterChain on, each with its own head row.
	//
	// AuditHead returns chain's newest record's Seq and Hash (0, nil for a
	// chain with no record) and, inside InTx on PostgreSQL, locks the
	// chain's head so that appends to that chain serialize.
	AuditHead(ctx context.Context, chain int64) (seq int64, hash []byte, err error)
	// ClaimAuditChain, inside InTx, locks the head of a writer chain that
	// no other transaction holds (PostgreSQL: FOR UPDATE SKIP LOCKED) and
	// returns it; when every writer chain is held it makes a new one. So
	// concurrent writers append to different chains and never wait for
	// each other's commits. On SQLite (one writer) it returns the first.
	ClaimAuditChain(ctx context.Context) (AuditHead, error)
	// AuditHeads returns every chain's head row in chain order, and a
	// head with Missing set for a chain that has records but no head row.
	// It locks nothing.
	AuditHeads(ctx context.Context) ([]AuditHead, error)
	// AppendAudit inserts records (of one or several chains) whose Seqs
	// continue their chains' heads, and moves each chain's head to its
	// highest Seq (never backwards); ErrConflict if a (Chain, Seq) is
	// taken.
	AppendAudit(ctx context.Context, recs ...AuditRecord) error
	// ListAudit returns records matching the filter: with ByChain, the
	// records of f.Chain in Seq order; otherwise of every chain, ordered
	// by Time, Chain and Seq.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
	// RehashAudit replaces PrevHash and Hash of the stored records with
	// the (Chain, Seq) of recs (their other fields are not written), and
	// a chain head's hash when its head is among them: the one rewrite of
	// the log, to move it to a new chain hash. ErrNotFound if a record is
	// not stored. Call it inside InTx after AuditHead of the chain, so
	// that no append runs meanwhile.
	RehashAudit(ctx context.Context, recs ...AuditRecord) error

	// Plugins and hooks.
	PutPlugin(ctx context.Context, p Plugin) error // insert or replace
	GetPlugin(ctx context.Context, name string) (Plugin, error)
	ListPlugins(ctx context.Context) ([]Plugin, error)
	DeletePlugin(ctx context.Context, name string) error
	// PutHook inserts or replaces a hook's settings (name, on, secrets,
	// kind, target, shell, timeout, sealed secret, created at); its
	// delivery counters are kept on replace.
	PutHook(ctx context.Context, h Hook) error
	GetHook(ctx context.Context, name string) (Hook, error)
	// ListHooks returns every hook in name order, delivery state and
	// Backlog (pending deliveries) filled in.
	// RecordPluginStart writes what the plugin said at its last start
	// (Version, SecretTypes, Kinds, IdentityFields, LastStartAt, Status,
	// LastError) and leaves its registration alone; ErrNotFound if the
	// plugin is not registered.
	RecordPluginStart(ctx context.Context, p Plugin) error
	ListHooks(ctx context.Context) ([]Hook, error)
	// DeleteHook removes a hook and its deliveries.
	DeleteHook(ctx context.Context, name string) error

	// Hook deliveries: one row per (hook, outbox event).
	// AddHookDeliveries inserts pending deliveries; one whose (hook,
	// event) exists is left as it is (the relay may offer an event again).
	AddHookDeliveries(ctx context.Context, ds []HookDelivery) error
	// ClaimHookDeliveries leases up to p.Limit pending deliveries due at
	// p.Now (unleased or lease expired), oldest event first, and adds one
	// to their Attempts. Per (hook, secret) order: a delivery is claimed
	// only when no pending delivery of an earlier event of the same hook
	// and secret exists, leased or not. Claims serialize like ClaimOutbox.
	ClaimHookDeliveries(ctx context.Context, p ClaimParams) ([]HookDelivery, error)
	// FinishHookDelivery records the outcome of a claimed delivery and
	// updates its hook's counters; ErrLeaseLost if r.Owner does not hold it.
	FinishHookDelivery(ctx context.Context, r HookDeliveryResult) error
	// ReleaseHookDeliveries clears the leases owner holds (a daemon
	// restarted under the same owner name takes its dead predecessor's
	// deliveries back at once); returns how many.
	ReleaseHookDeliveries(ctx context.Context, owner string) (int, error)
	// CapHookBacklog marks the oldest pending deliveries of hook dropped
	// (never the ones leased now) until at most max remain; returns how
	// many it dropped.
	CapHookBacklog(ctx context.Context, hook string, max int, now time.Time) (int, error)
	// TrimHookDeliveries deletes ended (done, failed, dropped) deliveries
	// last updated before before; returns count.
	TrimHookDeliveries(ctx context.Context, before time.Time) (int, error)
	// OutboxBacklog counts undelivered events and returns the creation
	// time of the oldest (zero when none).
	OutboxBacklog(ctx context.Context) (int, time.Time, error)

	// Named locks for singleton jobs (housekeeping on several daemons).
	// TryLock takes or renews lock name for owner until the given time; it
	// reports false if another owner holds an unexpired lock.
	TryLock(ctx context.Context, name, owner string, now, until time.Time) (bool, error)
	Unlock(ctx context.Context, name, owner string) error
}

// Region is a partition of keys.
type Region struct {
	Name           string
	FingerprintKey []byte // wrapped by the root key
	CreatedAt      time.Time
}

// Key states.
const (
	KeyEnabled         = "enabled"
	KeyDisabled        = "disabled"
	KeyPendingDeletion = "pending_deletion"
)

// MasterKey is a KMS-style customer master key.
type MasterKey struct {
	ID             string
	Region         string
	Alias          string // without the "alias/" prefix; "" for none
	Description    string
	State          string
	PrimaryVersion int
	RotationPeriod time.Duration // 0: no automatic rotation
	NextRotationAt *time.Time
	DeletionDate   *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// KeyVersion is one version of a master key's material.
type KeyVersion struct {
	KeyID     string
	Version   int
	Material  []byte // wrapped by the root key
	CreatedAt time.Time
}

// Secret is a secret's metadata. Values live in SecretVersion.
type Secret struct {
	Name        string
	Type        string
	Region      string
	KeyID       string
	Description string
	Tags        map[string]string
	Metadata    map[string]string // derived facts, such as a certificate's expiry
	NextVersion int64             // the number the next version takes (starts at 1)
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DeletedAt   *time.Time
	PurgeAt     *time.Time
}

// Stage names.
const (
	StageCurrent  = "current"
	StagePending  = "pending"
	StagePrevious = "previous"
)

// SecretVersion is one immutable encrypted value of a secret.
type SecretVersion struct {
	Secret      string
	Version     int64
	Envelope    []byte // sealed by kms; AAD binds region, name, version
	KeyID       string
	KeyVersion  int
	Fingerprint string
	CreatedAt   time.Time
	CreatedBy   string // token id or "rotation"
	Reason      string // put, manual, scheduled, emergency, create
	Stages      []string
}

// Page selects one page of a listing ordered by a unique key: the rows
// whose key sorts after After ("" for the first page), at most Limit of
// them (0 for all).
type Page struct {
	After string
	Limit int
}

// ListRotationsParams selects rotations for ListRotations: secret names
// after After, matching one of Globs (auth.Match syntax; none: every
// name), at most Limit (0: all).
type ListRotationsParams struct {
	After string
	Globs []string
	Limit int
}

// ListSecretsParams filters ListSecrets.
type ListSecretsParams struct {
	Prefix         string
	After          string
	Limit          int
	IncludeDeleted bool
	// Globs, when not empty, keeps only names matching at least one of
	// them, in the query itself: '*' matches any run of characters, '?'
	// one character, anything else itself (auth.Match on secret names).
	// The API passes the globs a token's policies allow, so a listing
	// never loads secrets the caller may not see.
	Globs []string
}

// SwapEnvelopeParams is a compare-and-swap of one version's envelope.
type SwapEnvelopeParams struct {
	Secret        string
	Version       int64
	Old           []byte
	New           []byte
	NewKeyVersion int
}

// StaleVersionsParams pages through versions to rewrap.
type StaleVersionsParams struct {
	KeyID        string
	KeyVersion   int // versions whose KeyVersion differs are returned
	AfterSecret  string
	AfterVersion int64
	Limit        int
}

// Rotation is a secret's rotation settings and scheduling state.
type Rotation struct {
	Secret              string
	Rotator             string // postgres, mysql, redis, random, plugin:NAME
	Config              []byte // rotator config JSON
	Schedule            string // normalized expression; "" for manual only
	Window              time.Duration
	Enabled             bool
	NextDueAt           *time.Time
	LastRotatedAt       *time.Time
	LastError           string
	ConsecutiveFailures int
	LeaseOwner          string
	LeaseExpiresAt      *time.Time
	UpdatedAt           time.Time
	// Target is the identity of the account the rotation is bound to (JSON
	// of rotators.Target), fixed when the settings are saved; nil for
	// settings saved before rotations were bound.
	Target []byte
}

// ClaimParams names a claimer and its lease.
type ClaimParams struct {
	Owner    string
	Now      time.Time
	LeaseFor time.Duration
	Limit    int
}

// Run states.
const (
	RunRunning    = "running"
	RunSucceeded  = "succeeded"
	RunFailed     = "failed"
	RunRolledBack = "rolled_back"
	RunAbandoned  = "abandoned"
)

// RotationRun is one rotation of one secret.
type RotationRun struct {
	ID             string
	Secret         string
	Trigger        string // manual, scheduled, emergency
	Step           string // create, set, test, finish: the last step persisted
	State          string
	PendingVersion int64
	Attempt        int
	Options        []byte // JSON: emergency options and the like
	StartedAt      time.Time
	UpdatedAt      time.Time
	EndedAt        *time.Time
	Error          string // sanitized
}

// RunStep is one step of a run.
type RunStep struct {
	RunID     string
	Step      string
	StartedAt time.Time
	EndedAt   *time.Time
	Result    string // ok, failed
	Error     string // sanitized
}

// OutboxEvent is an event waiting to be relayed.
type OutboxEvent struct {
	ID             int64
	Type           string
	Secret         string
	Version        int64
	Payload        []byte // event JSON, never a value
	CreatedAt      time.Time
	DeliveredAt    *time.Time
	LeaseOwner     string
	LeaseExpiresAt *time.Time
}

// Token is an API token; only its hash is stored.
type Token struct {
	ID        string
	Hash      []byte
	Name      string
	Policies  []string
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// Policy is a named policy document (JSON).
type Policy struct {
	Name      string
	Document  []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// The audit chains with a fixed role (the same numbers as package
// audit's LegacyChain, AnchorChain and FirstWriterChain).
const (
	AuditLegacyChain      int64 = 0
	AuditAnchorChain      int64 = 1
	AuditFirstWriterChain int64 = 2
)

// AuditRecord is one link of one of the audit log's hash chains.
type AuditRecord struct {
	Chain     int64
	Seq       int64
	Time      time.Time
	TokenID   string
	Action    string
	Target    string
	Result    string
	RequestID string
	Detail    string
	PrevHash  []byte
	Hash      []byte
}

// AuditFilter selects audit records.
type AuditFilter struct {
	Since    time.Time // zero: from the start
	Target   string    // exact match; "" for any
	ByChain  bool      // only Chain's records, in Seq order
	Chain    int64
	AfterSeq int64 // with ByChain: records after this Seq
	Limit    int
}

// AuditHead is where one audit chain stands: its newest record's Seq and
// Hash (0, nil for none). Missing marks a chain that has records but no
// head row (AuditHeads).
type AuditHead struct {
	Chain   int64
	Seq     int64
	Hash    []byte
	Missing bool
}

// Plugin states, from its last start.
const (
	PluginOK     = "ok"
	PluginFailed = "failed"
)

// Plugin is a registered plugin (the catalog): what was registered, and
// what the plugin said about itself when it last started.
type Plugin struct {
	Name   string
	Path   string // absolute path of the executable
	SHA256 string // hex; checked before every start
	// Env is the plugin's whole environment (KEY=VALUE). It is stored in
	// plain text: it is configuration, never a place for secrets.
	Env       []string
	CreatedAt time.Time
	UpdatedAt time.Time

	// From the last start (RecordPluginStart).
	Version        string
	SecretTypes    []string
	Kinds          []string // rotator, hook
	IdentityFields []string
	LastStartAt    *time.Time
	Status         string // "" (never started), PluginOK, PluginFailed
	LastError      string // sanitized
}

// Hook runs after a rotation finishes or fails.
type Hook struct {
	Name         string
	On           string // finished, failed, all
	Secrets      string // glob ("" or "*": every secret)
	Kind         string // exec, webhook, plugin
	Target       string // command, URL or plugin name
	Shell        bool   // exec: run Target with /bin/sh -c
	Timeout      time.Duration
	SealedSecret []byte // webhook: signing secret sealed by package hooks
	CreatedAt    time.Time

	// Delivery state, written by FinishHookDelivery and CapHookBacklog.
	Delivered      int64
	Failures       int64 // failed attempts
	Dropped        int64 // deliveries dropped by the backlog cap
	LastDeliveryAt *time.Time
	LastError      string // sanitized
	Failing        bool   // a delivery was given up; cleared by the next success
	Backlog        int    // pending deliveries (ListHooks only)
}

// Hook delivery states.
const (
	DeliveryPending = "pending"
	DeliveryDone    = "done"
	DeliveryFailed  = "failed"  // given up after max attempts or age
	DeliveryDropped = "dropped" // dropped by the backlog cap
)

// HookDelivery is one outbox event to deliver to one hook.
type HookDelivery struct {
	Hook           string
	EventID        int64
	Secret         string
	Payload        []byte // the event JSON
	EventAt        time.Time
	State          string
	Attempts       int
	NextAttemptAt  time.Time
	LastError      string
	LeaseOwner     string
	LeaseExpiresAt *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// HookDeliveryResult is the outcome of one delivery attempt.
type HookDeliveryResult struct {
	Hook    string
	EventID int64
	Owner   string
	State   string // DeliveryDone, DeliveryPending (retry at NextAttemptAt) or DeliveryFailed
	// NextAttemptAt is when a retried delivery is due.
	NextAttemptAt time.Time
	Error         string // sanitized; "" when done
	At            time.Time
}
