package secrets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/rotary-secrets/rotary/audit"
	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
)

// Errors callers tell apart with errors.Is. Messages wrapping them name the
// secret and the problem.
var (
	ErrNotFound = errors.New("secret not found")
	ErrExists   = errors.New("secret already exists")
	ErrInvalid  = errors.New("invalid input")
	ErrDeleted  = errors.New("secret is scheduled for deletion")
)

// Defaults.
const (
	DefaultRegion         = "default"
	DefaultType           = "generic"
	DefaultRecoveryWindow = 7 * 24 * time.Hour
	MinRecoveryWindow     = 24 * time.Hour
	MaxRecoveryWindow     = 30 * 24 * time.Hour
	DefaultKeepVersions   = 100
	DefaultPruneAge       = 24 * time.Hour
	maxTags               = 50
	maxDescription        = 2048
)

// Keys is the part of the KMS the service uses.
type Keys interface {
	DefaultKey(ctx context.Context, region string) (kms.Key, error)
	DescribeKey(ctx context.Context, region, ref string) (kms.Key, error)
	ListKeys(ctx context.Context, region string) ([]kms.Key, error)
	Seal(ctx context.Context, p kms.SealParams) (kms.Sealed, error)
	Open(ctx context.Context, p kms.OpenParams) (sensitive.Bytes, error)
	Rewrap(ctx context.Context, region string, envelope []byte) ([]byte, bool, error)
	Fingerprint(ctx context.Context, region, secretType string, value []byte) (string, error)
}

// Config configures a Service.
type Config struct {
	Store store.Store
	Keys  Keys
	// KeepVersions: versions beyond this count that hold no stage and are
	// older than PruneAge are pruned. Defaults 100 and 24h.
	KeepVersions int
	PruneAge     time.Duration
	// ReadCacheTTL bounds how long a write made by another daemon sharing
	// the store may take to show in reads here (default 1s; negative
	// turns the read cache off). Writes through this Service are seen at
	// once. ReadCacheBytes bounds the cached ciphertext (default 32 MiB).
	ReadCacheTTL   time.Duration
	ReadCacheBytes int
	// Changes, when set, invalidates the read cache as soon as another
	// daemon's write commits (see ChangeFeed); the cache is bypassed
	// while it is not current. ReadCacheTTL then only bounds changes made
	// behind rotary's back (say, a restored backup) and defaults to 1m.
	Changes ChangeFeed
	Now     func() time.Time
	Logger  *slog.Logger
	// AuditKey seals the audit records the Service writes (the keyed
	// chain; see package audit). Required: the daemon derives it from
	// the root key.
	AuditKey audit.Key
}

// Service is the domain entry point every API call and the rotation engine
// go through. Every write commits the change, its outbox event and its
// audit record in one store transaction.
type Service struct {
	st     store.Store
	keys   Keys
	keep   int
	age    time.Duration
	now    func() time.Time
	logger *slog.Logger
	cache  *readCache
	audit  audit.Key
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("secrets: Config.Store is required")
	}
	if cfg.Keys == nil {
		return nil, errors.New("secrets: Config.Keys is required")
	}
	if !cfg.AuditKey.Valid() {
		return nil, errors.New("secrets: Config.AuditKey is required (the audit chain key derived from the root key)")
	}
	if cfg.KeepVersions < 0 {
		return nil, fmt.Errorf("secrets: Config.KeepVersions %d must not be negative", cfg.KeepVersions)
	}
	s := &Service{
		st:     cfg.Store,
		keys:   cfg.Keys,
		keep:   cmp.Or(cfg.KeepVersions, DefaultKeepVersions),
		age:    cmp.Or(cfg.PruneAge, DefaultPruneAge),
		now:    cfg.Now,
		logger: cfg.Logger,
		audit:  cfg.AuditKey,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	ttl := cmp.Or(cfg.ReadCacheTTL, time.Second)
	if cfg.Changes != nil {
		ttl = cmp.Or(cfg.ReadCacheTTL, time.Minute)
	}
	if ttl > 0 {
		s.cache = newReadCache(ttl, cmp.Or(cfg.ReadCacheBytes, 32<<20), s.now, cfg.Changes)
		if cfg.Changes != nil {
			cfg.Changes.Subscribe(s.cache.invalidate, s.cache.invalidateAll)
		}
	}
	return s, nil
}

// Actor names who asks; it goes into audit records and version authors.
type Actor struct {
	TokenID   string
	RequestID string
}

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor in ctx, or a system actor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{TokenID: "system"}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func invalid(err error) error {
	return fmt.Errorf("%w: %s", ErrInvalid, err.Error())
}

// CreateParams creates a secret, optionally with its first value.
type CreateParams struct {
	Name        string
	Type        string // default generic
	Region      string // default "default"
	KeyRef      string // key id or alias/NAME; default alias/default
	Description string
	Tags        map[string]string
	Value       []byte // nil: no version yet
}

// Info is a secret's metadata as shown by describe and list. It never
// holds a value.
type Info struct {
	Name        string
	Type        string
	Region      string
	KeyID       string
	Description string
	Tags        map[string]string
	Metadata    map[string]string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DeletedAt   *time.Time
	PurgeAt     *time.Time
	Versions    []VersionInfo
	Stages      map[string]int64
}

// VersionInfo describes one version.
type VersionInfo struct {
	Version     int64
	Stages      []string
	Fingerprint string
	CreatedAt   time.Time
	CreatedBy   string
	Reason      string
	KeyID       string
	KeyVersion  int
}

// Value is a decrypted version.
type Value struct {
	Name    string
	Version int64
	Stages  []string
	Value   sensitive.Bytes
}

func validTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return invalidf("too many tags: %d (at most %d)", len(tags), maxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > 128 {
			return invalidf("tag key %q must be 1-128 characters", k)
		}
		if len(v) > 256 {
			return invalidf("tag %q: value longer than 256 characters", k)
		}
	}
	return nil
}

// Create makes a new secret, and its version 1 when p.Value is given.
func (s *Service) Create(ctx context.Context, p CreateParams) (Info, error) {
	defer s.cache.invalidate(p.Name)
	if err := ValidateName(p.Name); err != nil {
		return Info{}, invalid(err)
	}
	typ := cmp.Or(p.Type, DefaultType)
	if err := ValidType(typ); err != nil {
		return Info{}, invalid(err)
	}
	if len(p.Description) > maxDescription {
		return Info{}, invalidf("description longer than %d characters", maxDescription)
	}
	if err := validTags(p.Tags); err != nil {
		return Info{}, err
	}
	var meta map[string]string
	if p.Value != nil {
		m, err := ValidateValue(typ, p.Value)
		if err != nil {
			return Info{}, invalid(err)
		}
		meta = m
	}
	region := cmp.Or(p.Region, DefaultRegion)
	// The first secret of a region creates its alias/default key. Regions
	// themselves come from the daemon's configuration, never from input.
	var key kms.Key
	var err error
	if p.KeyRef == "" || p.KeyRef == "alias/default" {
		key, err = s.keys.DefaultKey(ctx, region)
		if errors.Is(err, kms.ErrNotFound) {
			return Info{}, invalidf("region %q does not exist (regions are set in the server configuration)", region)
		}
	} else {
		key, err = s.keys.DescribeKey(ctx, region, p.KeyRef)
		if errors.Is(err, kms.ErrNotFound) {
			return Info{}, invalidf("key %q not found in region %q", p.KeyRef, region)
		}
	}
	if err != nil {
		return Info{}, fmt.Errorf("create %s: key: %w", p.Name, err)
	}
	if key.State != kms.KeyEnabled {
		return Info{}, invalidf("key %s is %s", key.ID, key.State)
	}
	if _, err := s.st.GetSecret(ctx, p.Name); err == nil {
		return Info{}, fmt.Errorf("create %s: %w", p.Name, ErrExists)
	}

	now := s.now().UTC()
	sec := store.Secret{
		Name: p.Name, Type: typ, Region: region, KeyID: key.ID,
		Description: p.Description, Tags: p.Tags, Metadata: meta,
		NextVersion: 1, CreatedAt: now, UpdatedAt: now,
	}
	var ver store.SecretVersion
	if p.Value != nil {
		ver, err = s.seal(ctx, sec, 1, p.Value, "create")
		if err != nil {
			return Info{}, err
		}
		sec.NextVersion = 2
	}
	err = s.st.InTx(ctx, func(tx store.Ops) error {
		if err := tx.CreateSecret(ctx, sec); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("create %s: %w", p.Name, ErrExists)
			}
			return err
		}
		if err := tx.NotifySecretChanged(ctx, p.Name); err != nil {
			return err
		}
		if p.Value != nil {
			if err := tx.InsertVersion(ctx, ver); err != nil {
				return err
			}
			if err := tx.SetStage(ctx, sec.Name, store.StageCurrent, 1); err != nil {
				return err
			}
			if err := s.outbox(ctx, tx, sec, ver, events.VersionCreated, "create", []string{store.StageCurrent}); err != nil {
				return err
			}
		}
		return s.AuditTx(ctx, tx, AuditEntry{Action: "secret.create", Target: p.Name, Result: "ok", Detail: "type=" + typ})
	})
	if err != nil {
		return Info{}, err
	}
	return s.Describe(ctx, p.Name)
}

// seal encrypts value as version v of sec and returns the version record.
func (s *Service) seal(ctx context.Context, sec store.Secret, v int64, value []byte, reason string) (store.SecretVersion, error) {
	sealed, err := s.keys.Seal(ctx, kms.SealParams{
		Region: sec.Region, KeyRef: sec.KeyID, Secret: sec.Name, Version: v, Plaintext: value,
	})
	if err != nil {
		return store.SecretVersion{}, fmt.Errorf("%s: seal version %d: %w", sec.Name, v, err)
	}
	fp, err := s.keys.Fingerprint(ctx, sec.Region, sec.Type, value)
	if err != nil {
		return store.SecretVersion{}, fmt.Errorf("%s: fingerprint: %w", sec.Name, err)
	}
	return store.SecretVersion{
		Secret: sec.Name, Version: v, Envelope: sealed.Envelope,
		KeyID: sealed.KeyID, KeyVersion: sealed.KeyVersion, Fingerprint: fp,
		CreatedAt: s.now().UTC(), CreatedBy: ActorFrom(ctx).TokenID, Reason: reason,
	}, nil
}

func (s *Service) outbox(ctx context.Context, tx store.Ops, sec store.Secret, ver store.SecretVersion, typ, reason string, stages []string) error {
	ev := events.Event{
		Event: typ, Secret: sec.Name, Version: ver.Version, Stages: stages,
		Fingerprint: ver.Fingerprint, Region: sec.Region, Reason: reason, At: s.now().UTC(),
	}
	_, err := tx.AppendOutbox(ctx, store.OutboxEvent{
		Type: typ, Secret: sec.Name, Version: ver.Version, Payload: ev.Marshal(), CreatedAt: ev.At,
	})
	return err
}

// AuditEntry is one audit record to append. Detail must never carry a
// value.
type AuditEntry struct {
	Actor                          *Actor // nil: the context's (ActorFrom)
	Action, Target, Result, Detail string
}

// AuditTx appends one record inside tx to a writer chain that no other
// transaction holds (store.Ops.ClaimAuditChain), so audited writes of
// several daemons never wait for each other's commits.
func (s *Service) AuditTx(ctx context.Context, tx store.Ops, e AuditEntry) error {
	a := ActorFrom(ctx)
	if e.Actor != nil {
		a = *e.Actor
	}
	h, err := tx.ClaimAuditChain(ctx)
	if err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	r := s.audit.Seal(h.Hash, h.Seq+1, audit.Record{Chain: h.Chain,
		Time: s.now().UTC(), TokenID: a.TokenID, Action: e.Action, Target: e.Target,
		Result: e.Result, RequestID: a.RequestID, Detail: e.Detail,
	})
	return tx.AppendAudit(ctx, store.AuditRecord(r))
}

// live returns a secret that exists and is not scheduled for deletion.
func (s *Service) live(ctx context.Context, ops store.Ops, name string) (store.Secret, error) {
	if err := ValidateLookupName(name); err != nil {
		return store.Secret{}, invalid(err)
	}
	sec, err := ops.GetSecret(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Secret{}, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return store.Secret{}, err
	}
	if sec.DeletedAt != nil {
		return store.Secret{}, fmt.Errorf("%s: %w (restore it first)", name, ErrDeleted)
	}
	return sec, nil
}

// PutParams adds a version.
type PutParams struct {
	Name   string
	Value  []byte
	Reason string // default "put"
	// Stages the new version takes; default current (the old current
	// becomes previous). The rotation engine passes pending.
	Stages []string
}

// Put stores a new version of a secret. By default it becomes current and
// the old current becomes previous.
func (s *Service) Put(ctx context.Context, p PutParams) (VersionInfo, error) {
	defer s.cache.invalidate(p.Name)
	var out VersionInfo
	err := RetryConflict(ctx, func() error {
		return s.st.InTx(ctx, func(tx store.Ops) error {
			var err error
			out, err = s.PutTx(ctx, tx, p)
			return err
		})
	})
	return out, err
}

// RetryConflict runs f again, after a short random pause, while it fails
// with store.ErrConflict (up to 100 times): on PostgreSQL two writers may
// read the same next version number, and the loser's insert conflicts.
// On SQLite the IMMEDIATE transaction serializes writers.
func RetryConflict(ctx context.Context, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if !errors.Is(err, store.ErrConflict) || attempt >= 100 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(mrand.Int64N(int64(time.Millisecond) * int64(min(attempt+1, 10))))):
		}
	}
}

// PutTx stores a new version of a secret inside the caller's transaction
// tx (the rotation engine's create step commits its run with it). The
// version number is part of the ciphertext's AAD, so the value is sealed
// here, once the number is known. It may fail with store.ErrConflict on
// PostgreSQL (see RetryConflict); call Invalidate after the transaction.
func (s *Service) PutTx(ctx context.Context, tx store.Ops, p PutParams) (VersionInfo, error) {
	cur, err := s.live(ctx, tx, p.Name)
	if err != nil {
		return VersionInfo{}, err
	}
	meta, err := ValidateValue(cur.Type, p.Value)
	if err != nil {
		return VersionInfo{}, invalid(err)
	}
	stages := p.Stages
	if len(stages) == 0 {
		stages = []string{store.StageCurrent}
	}
	reason := cmp.Or(p.Reason, "put")
	v := cur.NextVersion
	ver, err := s.seal(ctx, cur, v, p.Value, reason)
	if err != nil {
		return VersionInfo{}, err
	}
	if err := tx.InsertVersion(ctx, ver); err != nil {
		return VersionInfo{}, err
	}
	old, err := tx.GetStages(ctx, p.Name)
	if err != nil {
		return VersionInfo{}, err
	}
	for _, st := range stages {
		if st == store.StageCurrent {
			if prev, ok := old[store.StageCurrent]; ok {
				if err := tx.SetStage(ctx, p.Name, store.StagePrevious, prev); err != nil {
					return VersionInfo{}, err
				}
			}
		}
		if err := tx.SetStage(ctx, p.Name, st, v); err != nil {
			return VersionInfo{}, err
		}
	}
	cur.NextVersion = v + 1
	cur.UpdatedAt = s.now().UTC()
	if meta != nil || cur.Type == "certificate" || cur.Type == "jwt" {
		cur.Metadata = meta
	}
	if err := tx.UpdateSecret(ctx, cur); err != nil {
		return VersionInfo{}, err
	}
	if err := tx.NotifySecretChanged(ctx, p.Name); err != nil {
		return VersionInfo{}, err
	}
	if _, ok := old[store.StagePending]; ok && slices.Contains(stages, store.StageCurrent) {
		// A new current value written by hand overtakes a rotation in
		// flight: its pending version is no longer the next one. The
		// rotation engine owns the run and ends it (rotation.Engine.Put
		// in the same transaction, or its next step commit).
		if err := tx.ClearStage(ctx, p.Name, store.StagePending); err != nil {
			return VersionInfo{}, err
		}
	}
	if err := s.outbox(ctx, tx, cur, ver, events.VersionCreated, reason, stages); err != nil {
		return VersionInfo{}, err
	}
	if err := s.AuditTx(ctx, tx, AuditEntry{Action: "secret.put", Target: p.Name, Result: "ok", Detail: fmt.Sprintf("version=%d", v)}); err != nil {
		return VersionInfo{}, err
	}
	if err := s.prune(ctx, tx, p.Name); err != nil {
		return VersionInfo{}, err
	}
	return VersionInfo{
		Version: v, Stages: stages, Fingerprint: ver.Fingerprint, CreatedAt: ver.CreatedAt,
		CreatedBy: ver.CreatedBy, Reason: reason, KeyID: ver.KeyID, KeyVersion: ver.KeyVersion,
	}, nil
}

// prune deletes versions that hold no stage, beyond the newest s.keep, and
// older than s.age.
func (s *Service) prune(ctx context.Context, tx store.Ops, name string) error {
	vs, err := tx.ListVersions(ctx, name, false)
	if err != nil {
		return err
	}
	if len(vs) <= s.keep {
		return nil
	}
	cutoff := s.now().Add(-s.age)
	excess := len(vs) - s.keep
	pruned := false
	for _, v := range vs { // ascending: oldest first
		if excess == 0 {
			break
		}
		if len(v.Stages) > 0 || v.CreatedAt.After(cutoff) {
			continue
		}
		if err := tx.DeleteVersion(ctx, name, v.Version); err != nil {
			return fmt.Errorf("prune %s version %d: %w", name, v.Version, err)
		}
		excess--
		pruned = true
	}
	if pruned {
		return tx.NotifySecretChanged(ctx, name)
	}
	return nil
}

// Prune applies the retention rule to one secret now.
func (s *Service) Prune(ctx context.Context, name string) error {
	defer s.cache.invalidate(name)
	return s.st.InTx(ctx, func(tx store.Ops) error { return s.prune(ctx, tx, name) })
}

// GetParams selects a version: by number, by stage, or current.
type GetParams struct {
	Name    string
	Version int64
	Stage   string
}

// Get decrypts one version of a secret.
func (s *Service) Get(ctx context.Context, p GetParams) (Value, error) {
	if p.Version != 0 && p.Stage != "" {
		return Value{}, invalidf("give a version or a stage, not both")
	}
	if p.Version < 0 {
		return Value{}, invalidf("version %d: must be positive", p.Version)
	}
	if err := ValidateLookupName(p.Name); err != nil {
		return Value{}, invalid(err)
	}
	sec, stages, err := s.cache.secret(ctx, s.st, p.Name)
	if err != nil {
		return Value{}, err
	}
	if sec.DeletedAt != nil {
		return Value{}, fmt.Errorf("%s: %w (restore it first)", p.Name, ErrDeleted)
	}
	v := p.Version
	if v == 0 {
		stage := cmp.Or(p.Stage, store.StageCurrent)
		if !validStage(stage) {
			return Value{}, invalidf("unknown stage %q (use current, previous or pending)", stage)
		}
		var ok bool
		if v, ok = stages[stage]; !ok {
			return Value{}, fmt.Errorf("%s: no version has stage %s: %w", p.Name, stage, ErrNotFound)
		}
	}
	ver, err := s.cache.version(ctx, s.st, sec, v)
	if errors.Is(err, store.ErrNotFound) {
		return Value{}, fmt.Errorf("%s: version %d: %w", p.Name, v, ErrNotFound)
	}
	if err != nil {
		return Value{}, err
	}
	val, err := s.keys.Open(ctx, kms.OpenParams{Region: sec.Region, Secret: sec.Name, Version: v, Envelope: ver.Envelope})
	if err != nil {
		s.cache.drop(sec, v)
		return Value{}, fmt.Errorf("%s: version %d: %w", p.Name, v, err)
	}
	var names []string
	for _, st := range SortedStages(stages) {
		if stages[st] == v {
			names = append(names, st)
		}
	}
	return Value{Name: sec.Name, Version: v, Stages: names, Value: val}, nil
}

func validStage(s string) bool {
	return s == store.StageCurrent || s == store.StagePrevious || s == store.StagePending
}

// Describe returns a secret's metadata and versions, never a value.
// Secrets scheduled for deletion are described (with DeletedAt set).
func (s *Service) Describe(ctx context.Context, name string) (Info, error) {
	if err := ValidateLookupName(name); err != nil {
		return Info{}, invalid(err)
	}
	sec, err := s.st.GetSecret(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return Info{}, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Info{}, err
	}
	vs, err := s.st.ListVersions(ctx, name, false)
	if err != nil {
		return Info{}, err
	}
	stages, err := s.st.GetStages(ctx, name)
	if err != nil {
		return Info{}, err
	}
	info := infoOf(sec)
	info.Stages = stages
	for _, v := range vs {
		info.Versions = append(info.Versions, VersionInfo{
			Version: v.Version, Stages: v.Stages, Fingerprint: v.Fingerprint, CreatedAt: v.CreatedAt,
			CreatedBy: v.CreatedBy, Reason: v.Reason, KeyID: v.KeyID, KeyVersion: v.KeyVersion,
		})
	}
	return info, nil
}

func infoOf(sec store.Secret) Info {
	return Info{
		Name: sec.Name, Type: sec.Type, Region: sec.Region, KeyID: sec.KeyID,
		Description: sec.Description, Tags: sec.Tags, Metadata: sec.Metadata,
		CreatedAt: sec.CreatedAt, UpdatedAt: sec.UpdatedAt, DeletedAt: sec.DeletedAt, PurgeAt: sec.PurgeAt,
	}
}

// ListParams filters List.
type ListParams struct {
	Prefix         string
	IncludeDeleted bool
	Limit          int
	After          string
	// Globs, when not empty, keeps only names matching one of them,
	// filtered in the store query (see store.ListSecretsParams.Globs).
	Globs []string
}

// List returns secrets whose names start with the prefix, by name.
func (s *Service) List(ctx context.Context, p ListParams) ([]Info, error) {
	if len(p.Prefix) > 256 {
		return nil, invalidf("prefix longer than 256 characters")
	}
	secs, err := s.st.ListSecrets(ctx, store.ListSecretsParams{
		Prefix: p.Prefix, After: p.After, Limit: p.Limit, IncludeDeleted: p.IncludeDeleted, Globs: p.Globs,
	})
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(secs))
	for _, sec := range secs {
		out = append(out, infoOf(sec))
	}
	return out, nil
}

// DeleteParams schedules a deletion, or deletes at once with Force.
type DeleteParams struct {
	Name           string
	RecoveryWindow time.Duration // 0: the default, 7 days
	Force          bool
}

// Delete schedules a secret's deletion after the recovery window, or, with
// Force, purges it now.
func (s *Service) Delete(ctx context.Context, p DeleteParams) (Info, error) {
	defer s.cache.invalidate(p.Name)
	if p.Force && p.RecoveryWindow != 0 {
		return Info{}, invalidf("give a recovery window or force, not both")
	}
	window := cmp.Or(p.RecoveryWindow, DefaultRecoveryWindow)
	if !p.Force && (window < MinRecoveryWindow || window > MaxRecoveryWindow) {
		return Info{}, invalidf("recovery window %s: must be between 1d and 30d", window)
	}
	if err := ValidateLookupName(p.Name); err != nil {
		return Info{}, invalid(err)
	}
	var info Info
	err := s.st.InTx(ctx, func(tx store.Ops) error {
		sec, err := tx.GetSecret(ctx, p.Name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s: %w", p.Name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if sec.DeletedAt != nil && !p.Force {
			return fmt.Errorf("%s: %w already (purge at %s)", p.Name, ErrDeleted, sec.PurgeAt.Format(time.RFC3339))
		}
		now := s.now().UTC()
		ev := store.SecretVersion{}
		if p.Force {
			if err := tx.DeleteSecret(ctx, p.Name); err != nil {
				return err
			}
			sec.DeletedAt, sec.PurgeAt = &now, &now
		} else {
			purge := now.Add(window)
			sec.DeletedAt, sec.PurgeAt, sec.UpdatedAt = &now, &purge, now
			if err := tx.UpdateSecret(ctx, sec); err != nil {
				return err
			}
		}
		if err := tx.NotifySecretChanged(ctx, p.Name); err != nil {
			return err
		}
		info = infoOf(sec)
		reason := events.ReasonDelete
		if p.Force {
			reason = events.ReasonPurge
		}
		if err := s.outbox(ctx, tx, sec, ev, events.Deleted, reason, nil); err != nil {
			return err
		}
		detail := "recovery_window=" + window.String()
		if p.Force {
			detail = "force"
		}
		return s.AuditTx(ctx, tx, AuditEntry{Action: "secret.delete", Target: p.Name, Result: "ok", Detail: detail})
	})
	return info, err
}

// Restore cancels a scheduled deletion.
func (s *Service) Restore(ctx context.Context, name string) (Info, error) {
	defer s.cache.invalidate(name)
	if err := ValidateLookupName(name); err != nil {
		return Info{}, invalid(err)
	}
	err := s.st.InTx(ctx, func(tx store.Ops) error {
		sec, err := tx.GetSecret(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if sec.DeletedAt == nil {
			return invalidf("%s is not scheduled for deletion", name)
		}
		sec.DeletedAt, sec.PurgeAt, sec.UpdatedAt = nil, nil, s.now().UTC()
		if err := tx.UpdateSecret(ctx, sec); err != nil {
			return err
		}
		if err := tx.NotifySecretChanged(ctx, name); err != nil {
			return err
		}
		if err := s.outbox(ctx, tx, sec, store.SecretVersion{}, events.Restored, "restore", nil); err != nil {
			return err
		}
		return s.AuditTx(ctx, tx, AuditEntry{Action: "secret.restore", Target: name, Result: "ok"})
	})
	if err != nil {
		return Info{}, err
	}
	return s.Describe(ctx, name)
}

// PurgeDue purges secrets whose recovery window has passed and reports how
// many. It is safe to run on several daemons at once.
func (s *Service) PurgeDue(ctx context.Context) (int, error) {
	names, err := s.st.SecretsDueForPurge(ctx, s.now().UTC(), 500)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		err := s.st.InTx(ctx, func(tx store.Ops) error {
			sec, err := tx.GetSecret(ctx, name)
			if err != nil {
				return err
			}
			if sec.PurgeAt == nil || sec.PurgeAt.After(s.now()) {
				return nil // restored meanwhile
			}
			if err := tx.DeleteSecret(ctx, name); err != nil {
				return err
			}
			if err := tx.NotifySecretChanged(ctx, name); err != nil {
				return err
			}
			n++
			if err := s.outbox(ctx, tx, sec, store.SecretVersion{}, events.Deleted, events.ReasonPurge, nil); err != nil {
				return err
			}
			return s.AuditTx(ctx, tx, AuditEntry{Actor: &Actor{TokenID: "system"}, Action: "secret.purge", Target: name, Result: "ok"})
		})
		s.cache.invalidate(name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, fmt.Errorf("purge %s: %w", name, err)
		}
	}
	return n, nil
}

// RewrapReport counts what Rewrap did.
type RewrapReport struct {
	Keys      int
	Scanned   int
	Rewrapped int
	Skipped   int // changed by another writer meanwhile
}

// Rewrap re-wraps every version's data key under the newest version of its
// master key in region ("" for every region), without decrypting values.
// It can be interrupted and run again: versions already on the newest key
// version are not touched. progress, if non-nil, is called after each
// version with the counts so far and the total to do.
func (s *Service) Rewrap(ctx context.Context, region string, progress func(done, total int)) (RewrapReport, error) {
	var rep RewrapReport
	keys, err := s.keys.ListKeys(ctx, region)
	if err != nil {
		return rep, err
	}
	type job struct {
		key kms.Key
		vs  []store.SecretVersion
	}
	var jobs []job
	total := 0
	for _, k := range keys {
		if k.State != kms.KeyEnabled {
			continue
		}
		rep.Keys++
		var all []store.SecretVersion
		p := store.StaleVersionsParams{KeyID: k.ID, KeyVersion: k.PrimaryVersion, Limit: 500}
		for {
			vs, err := s.st.VersionsNotOnKeyVersion(ctx, p)
			if err != nil {
				return rep, err
			}
			all = append(all, vs...)
			if len(vs) < p.Limit {
				break
			}
			last := vs[len(vs)-1]
			p.AfterSecret, p.AfterVersion = last.Secret, last.Version
		}
		total += len(all)
		jobs = append(jobs, job{k, all})
	}
	for _, j := range jobs {
		for _, v := range j.vs {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			rep.Scanned++
			env, changed, err := s.keys.Rewrap(ctx, j.key.Region, v.Envelope)
			if err != nil {
				return rep, fmt.Errorf("rewrap %s version %d: %w", v.Secret, v.Version, err)
			}
			if changed {
				err = s.st.SwapEnvelope(ctx, store.SwapEnvelopeParams{
					Secret: v.Secret, Version: v.Version, Old: v.Envelope, New: env, NewKeyVersion: j.key.PrimaryVersion,
				})
				switch {
				case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
					rep.Skipped++
				case err != nil:
					return rep, err
				default:
					rep.Rewrapped++
				}
			}
			if progress != nil {
				progress(rep.Scanned, total)
			}
		}
	}
	if rep.Rewrapped > 0 {
		err := s.st.InTx(ctx, func(tx store.Ops) error {
			return s.AuditTx(ctx, tx, AuditEntry{Action: "key.rewrap", Target: cmp.Or(region, "*"), Result: "ok", Detail: fmt.Sprintf("rewrapped=%d", rep.Rewrapped)})
		})
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// SortedStages returns stage names in a stable order for display.
func SortedStages(m map[string]int64) []string {
	return slices.Sorted(maps.Keys(m))
}

// PruneAll applies the retention rule to every secret, a page at a time.
// It returns how many secrets it looked at.
func (s *Service) PruneAll(ctx context.Context) (int, error) {
	n, after := 0, ""
	for {
		secs, err := s.st.ListSecrets(ctx, store.ListSecretsParams{After: after, Limit: 500, IncludeDeleted: true})
		if err != nil {
			return n, err
		}
		for _, sec := range secs {
			if err := s.Prune(ctx, sec.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return n, err
			}
			n++
		}
		if len(secs) < 500 {
			return n, nil
		}
		after = secs[len(secs)-1].Name
	}
}
