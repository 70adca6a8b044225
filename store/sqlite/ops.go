package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlcol"
)

// --- meta ---

func (o *ops) GetMeta(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := o.r().QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(bcol{P: &v})
	if err != nil {
		return nil, fmt.Errorf("get meta %q: %w", name, translate(err))
	}
	return v, nil
}

func (o *ops) PutMetaIfAbsent(ctx context.Context, name string, value []byte) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)`, name, bytesArg(value))
	if err != nil {
		return fmt.Errorf("put meta %q: %w", name, translate(err))
	}
	return nil
}

// --- regions ---

func (o *ops) CreateRegion(ctx context.Context, r store.Region) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO regions (name, fingerprint_key, created_at) VALUES (?, ?, ?)`,
		r.Name, bytesArg(r.FingerprintKey), ta(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("create region %q: %w", r.Name, translate(err))
	}
	return nil
}

func (o *ops) GetRegion(ctx context.Context, name string) (store.Region, error) {
	var r store.Region
	err := o.r().QueryRowContext(ctx, `SELECT name, fingerprint_key, created_at FROM regions WHERE name = ?`, name).
		Scan(&r.Name, bcol{P: &r.FingerprintKey}, tcol{&r.CreatedAt})
	if err != nil {
		return store.Region{}, fmt.Errorf("get region %q: %w", name, translate(err))
	}
	return r, nil
}

func (o *ops) ListRegions(ctx context.Context) ([]store.Region, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT name, fingerprint_key, created_at FROM regions ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list regions: %w", translate(err))
	}
	return collect(rows, "list regions", func(r *store.Region) []any {
		return []any{&r.Name, bcol{P: &r.FingerprintKey}, tcol{&r.CreatedAt}}
	})
}

// --- master keys ---

const keyCols = `id, region, alias, description, state, primary_version, rotation_period,
	next_rotation_at, deletion_date, created_at, updated_at`

func keyDest(k *store.MasterKey) []any {
	return []any{&k.ID, &k.Region, nullString{P: &k.Alias}, &k.Description, &k.State, &k.PrimaryVersion,
		(*int64)(&k.RotationPeriod), ntcol{&k.NextRotationAt}, ntcol{&k.DeletionDate},
		tcol{&k.CreatedAt}, tcol{&k.UpdatedAt}}
}

func (o *ops) CreateKey(ctx context.Context, k store.MasterKey, v store.KeyVersion) error {
	if v.KeyID == "" {
		v.KeyID = k.ID
	}
	if v.KeyID != k.ID {
		return fmt.Errorf("create key %q: version names key %q", k.ID, v.KeyID)
	}
	return o.atomic(ctx, func(q querier) error {
		_, err := q.ExecContext(ctx, `INSERT INTO master_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Region, aliasArg(k.Alias), k.Description, k.State, k.PrimaryVersion, int64(k.RotationPeriod),
			tpa(k.NextRotationAt), tpa(k.DeletionDate), ta(k.CreatedAt), ta(k.UpdatedAt))
		if err != nil {
			return fmt.Errorf("create key %q: %w", k.ID, translate(err))
		}
		_, err = q.ExecContext(ctx, `INSERT INTO key_versions (key_id, version, material, created_at) VALUES (?, ?, ?, ?)`,
			v.KeyID, v.Version, bytesArg(v.Material), ta(v.CreatedAt))
		if err != nil {
			return fmt.Errorf("create key %q: version %d: %w", k.ID, v.Version, translate(err))
		}
		return nil
	})
}

func (o *ops) GetKey(ctx context.Context, id string) (store.MasterKey, error) {
	var k store.MasterKey
	err := o.r().QueryRowContext(ctx, `SELECT `+keyCols+` FROM master_keys WHERE id = ?`, id).Scan(keyDest(&k)...)
	if err != nil {
		return store.MasterKey{}, fmt.Errorf("get key %q: %w", id, translate(err))
	}
	return k, nil
}

func (o *ops) GetKeyByAlias(ctx context.Context, region, alias string) (store.MasterKey, error) {
	var k store.MasterKey
	err := o.r().QueryRowContext(ctx, `SELECT `+keyCols+` FROM master_keys WHERE region = ? AND alias = ?`, region, alias).
		Scan(keyDest(&k)...)
	if err != nil {
		return store.MasterKey{}, fmt.Errorf("get key alias %q in region %q: %w", alias, region, translate(err))
	}
	return k, nil
}

func (o *ops) ListKeys(ctx context.Context, region string) ([]store.MasterKey, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+keyCols+` FROM master_keys
		WHERE (? = '' OR region = ?) ORDER BY region, id`, region, region)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", translate(err))
	}
	return collect(rows, "list keys", keyDest)
}

func (o *ops) UpdateKey(ctx context.Context, k store.MasterKey, ifUpdatedAt time.Time) error {
	q := `UPDATE master_keys SET region = ?, alias = ?, description = ?, state = ?,
		rotation_period = ?, next_rotation_at = ?, deletion_date = ?, updated_at = ?
		WHERE id = ?`
	args := []any{k.Region, aliasArg(k.Alias), k.Description, k.State, int64(k.RotationPeriod),
		tpa(k.NextRotationAt), tpa(k.DeletionDate), ta(k.UpdatedAt), k.ID}
	if !ifUpdatedAt.IsZero() {
		q += ` AND updated_at = ?`
		args = append(args, ta(ifUpdatedAt))
	}
	res, err := o.w().ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("update key %q: %w", k.ID, translate(err))
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 && !ifUpdatedAt.IsZero() {
		if _, gerr := o.GetKey(ctx, k.ID); gerr == nil {
			return fmt.Errorf("update key %q: %w", k.ID, store.ErrStale)
		}
	}
	return mustAffect(res, "update key %q", k.ID)
}

func (o *ops) AddKeyVersion(ctx context.Context, v store.KeyVersion) error {
	return o.atomic(ctx, func(q querier) error {
		_, err := q.ExecContext(ctx, `INSERT INTO key_versions (key_id, version, material, created_at) VALUES (?, ?, ?, ?)`,
			v.KeyID, v.Version, bytesArg(v.Material), ta(v.CreatedAt))
		if isFK(err) {
			return fmt.Errorf("add key version: key %q: %w", v.KeyID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("add key version: key %q version %d: %w", v.KeyID, v.Version, translate(err))
		}
		res, err := q.ExecContext(ctx, `UPDATE master_keys SET primary_version = ? WHERE id = ?`, v.Version, v.KeyID)
		if err != nil {
			return fmt.Errorf("add key version: key %q: %w", v.KeyID, translate(err))
		}
		return mustAffect(res, "add key version: key %q", v.KeyID)
	})
}

func (o *ops) GetKeyVersions(ctx context.Context, keyID string) ([]store.KeyVersion, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT key_id, version, material, created_at FROM key_versions
		WHERE key_id = ? ORDER BY version`, keyID)
	if err != nil {
		return nil, fmt.Errorf("get key versions %q: %w", keyID, translate(err))
	}
	return collect(rows, "get key versions", func(v *store.KeyVersion) []any {
		return []any{&v.KeyID, &v.Version, bcol{P: &v.Material}, tcol{&v.CreatedAt}}
	})
}

func (o *ops) DeleteKey(ctx context.Context, id string) error {
	return o.atomic(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, `DELETE FROM key_versions WHERE key_id = ?`, id); err != nil {
			return fmt.Errorf("delete key %q: %w", id, translate(err))
		}
		res, err := q.ExecContext(ctx, `DELETE FROM master_keys WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("delete key %q: %w", id, translate(err))
		}
		return mustAffect(res, "delete key %q", id)
	})
}

func (o *ops) CountKeys(ctx context.Context) (int, error) {
	return o.count(ctx, "master_keys")
}

// --- secrets ---

const secretCols = `name, type, region, key_id, description, tags, metadata, next_version,
	created_at, updated_at, deleted_at, purge_at`

func secretDest(s *store.Secret) []any {
	return []any{&s.Name, &s.Type, &s.Region, &s.KeyID, &s.Description, jsonCol[map[string]string]{P: &s.Tags}, jsonCol[map[string]string]{P: &s.Metadata},
		&s.NextVersion, tcol{&s.CreatedAt}, tcol{&s.UpdatedAt}, ntcol{&s.DeletedAt}, ntcol{&s.PurgeAt}}
}

func (o *ops) CreateSecret(ctx context.Context, s store.Secret) error {
	tags, meta, err := secretJSON(s)
	if err != nil {
		return fmt.Errorf("create secret %q: %w", s.Name, err)
	}
	_, err = o.w().ExecContext(ctx, `INSERT INTO secrets (`+secretCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Name, s.Type, s.Region, s.KeyID, s.Description, tags, meta, s.NextVersion,
		ta(s.CreatedAt), ta(s.UpdatedAt), tpa(s.DeletedAt), tpa(s.PurgeAt))
	if err != nil {
		return fmt.Errorf("create secret %q: %w", s.Name, translate(err))
	}
	return nil
}

func (o *ops) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	var s store.Secret
	err := o.r().QueryRowContext(ctx, `SELECT `+secretCols+` FROM secrets WHERE name = ?`, name).Scan(secretDest(&s)...)
	if err != nil {
		return store.Secret{}, fmt.Errorf("get secret %q: %w", name, translate(err))
	}
	return s, nil
}

func (o *ops) UpdateSecret(ctx context.Context, s store.Secret) error {
	tags, meta, err := secretJSON(s)
	if err != nil {
		return fmt.Errorf("update secret %q: %w", s.Name, err)
	}
	res, err := o.w().ExecContext(ctx, `UPDATE secrets SET type = ?, region = ?, key_id = ?, description = ?,
		tags = ?, metadata = ?, next_version = ?, updated_at = ?, deleted_at = ?, purge_at = ?
		WHERE name = ?`,
		s.Type, s.Region, s.KeyID, s.Description, tags, meta, s.NextVersion,
		ta(s.UpdatedAt), tpa(s.DeletedAt), tpa(s.PurgeAt), s.Name)
	if err != nil {
		return fmt.Errorf("update secret %q: %w", s.Name, translate(err))
	}
	return mustAffect(res, "update secret %q", s.Name)
}

func (o *ops) ListSecrets(ctx context.Context, p store.ListSecretsParams) ([]store.Secret, error) {
	// Prefix match as a byte range, so '%', '_' and '\' in names are literal
	// and the primary key index serves the scan.
	var (
		where []string
		args  []any
	)
	if p.Prefix != "" {
		where = append(where, "name >= ?")
		args = append(args, p.Prefix)
		if end, ok := prefixEnd(p.Prefix); ok {
			where = append(where, "name < ?")
			args = append(args, end)
		}
	}
	if p.After != "" {
		where = append(where, "name > ?")
		args = append(args, p.After)
	}
	if !p.IncludeDeleted {
		where = append(where, "deleted_at IS NULL")
	}
	if len(p.Globs) > 0 {
		// SQLite's GLOB has the same '*' and '?' and is case-sensitive;
		// '[' would open a character class, so it is made literal.
		var or []string
		for _, g := range p.Globs {
			or = append(or, "name GLOB ?")
			args = append(args, globArg(g))
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	q := `SELECT ` + secretCols + ` FROM secrets`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY name LIMIT ?"
	args = append(args, lim(p.Limit))
	rows, err := o.r().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", translate(err))
	}
	return collect(rows, "list secrets", secretDest)
}

// globArg is the GLOB pattern of a policy glob: SQLite's GLOB has the same
// '*' and '?' and is case-sensitive; '[' would open a character class, so
// it is made literal.
func globArg(g string) string { return strings.ReplaceAll(g, "[", "[[]") }

// prefixEnd returns the smallest string greater than every string that
// starts with p, in byte order; false when there is none.
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

func (o *ops) DeleteSecret(ctx context.Context, name string) error {
	return o.atomic(ctx, func(q querier) error {
		for _, stmt := range []string{
			`DELETE FROM secret_stages WHERE secret = ?`,
			`DELETE FROM run_steps WHERE run_id IN (SELECT id FROM rotation_runs WHERE secret = ?)`,
			`DELETE FROM rotation_runs WHERE secret = ?`,
			`DELETE FROM rotations WHERE secret = ?`,
			`DELETE FROM secret_versions WHERE secret = ?`,
		} {
			if _, err := q.ExecContext(ctx, stmt, name); err != nil {
				return fmt.Errorf("delete secret %q: %w", name, translate(err))
			}
		}
		res, err := q.ExecContext(ctx, `DELETE FROM secrets WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete secret %q: %w", name, translate(err))
		}
		return mustAffect(res, "delete secret %q", name)
	})
}

func (o *ops) SecretsDueForPurge(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT name FROM secrets
		WHERE deleted_at IS NOT NULL AND purge_at IS NOT NULL AND purge_at <= ?
		ORDER BY purge_at, name LIMIT ?`, ta(now), lim(limit))
	if err != nil {
		return nil, fmt.Errorf("secrets due for purge: %w", translate(err))
	}
	return collectScalar[string](rows, "secrets due for purge")
}

func (o *ops) CountSecrets(ctx context.Context) (int, error) {
	return o.count(ctx, "secrets")
}

// --- versions ---

// versionCols selects a version with its stages joined by char(31).
const versionCols = `v.secret, v.version, v.envelope, v.key_id, v.key_version, v.fingerprint,
	v.created_at, v.created_by, v.reason,
	(SELECT group_concat(st.stage, char(31)) FROM secret_stages st WHERE st.secret = v.secret AND st.version = v.version)`

const versionColsNoEnvelope = `v.secret, v.version, NULL, v.key_id, v.key_version, v.fingerprint,
	v.created_at, v.created_by, v.reason,
	(SELECT group_concat(st.stage, char(31)) FROM secret_stages st WHERE st.secret = v.secret AND st.version = v.version)`

func versionDest(v *store.SecretVersion) []any {
	return []any{&v.Secret, &v.Version, bcol{P: &v.Envelope}, &v.KeyID, &v.KeyVersion, &v.Fingerprint,
		tcol{&v.CreatedAt}, &v.CreatedBy, &v.Reason, stagesCol{P: &v.Stages}}
}

func (o *ops) InsertVersion(ctx context.Context, v store.SecretVersion) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO secret_versions (secret, version, envelope, key_id, key_version,
		fingerprint, created_at, created_by, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		v.Secret, v.Version, bytesArg(v.Envelope), v.KeyID, v.KeyVersion, v.Fingerprint,
		ta(v.CreatedAt), v.CreatedBy, v.Reason)
	if isFK(err) {
		return fmt.Errorf("insert version: secret %q: %w", v.Secret, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("insert version: secret %q version %d: %w", v.Secret, v.Version, translate(err))
	}
	return nil
}

func (o *ops) GetVersion(ctx context.Context, secret string, version int64) (store.SecretVersion, error) {
	var v store.SecretVersion
	err := o.r().QueryRowContext(ctx, `SELECT `+versionCols+` FROM secret_versions v
		WHERE v.secret = ? AND v.version = ?`, secret, version).Scan(versionDest(&v)...)
	if err != nil {
		return store.SecretVersion{}, fmt.Errorf("get version: secret %q version %d: %w", secret, version, translate(err))
	}
	return v, nil
}

func (o *ops) ListVersions(ctx context.Context, secret string, withEnvelope bool) ([]store.SecretVersion, error) {
	cols := versionColsNoEnvelope
	if withEnvelope {
		cols = versionCols
	}
	rows, err := o.r().QueryContext(ctx, `SELECT `+cols+` FROM secret_versions v
		WHERE v.secret = ? ORDER BY v.version`, secret)
	if err != nil {
		return nil, fmt.Errorf("list versions %q: %w", secret, translate(err))
	}
	return collect(rows, "list versions", versionDest)
}

func (o *ops) DeleteVersion(ctx context.Context, secret string, version int64) error {
	return o.atomic(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `DELETE FROM secret_versions WHERE secret = ? AND version = ?
			AND NOT EXISTS (SELECT 1 FROM secret_stages WHERE secret = ? AND version = ?)`,
			secret, version, secret, version)
		if isFK(err) {
			return fmt.Errorf("delete version: secret %q version %d holds a stage: %w", secret, version, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("delete version: secret %q version %d: %w", secret, version, translate(err))
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		if err := o.versionExists(ctx, q, secret, version); err != nil {
			return fmt.Errorf("delete version: %w", err)
		}
		return fmt.Errorf("delete version: secret %q version %d holds a stage: %w", secret, version, store.ErrConflict)
	})
}

func (o *ops) versionExists(ctx context.Context, q querier, secret string, version int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM secret_versions WHERE secret = ? AND version = ?`, secret, version).Scan(&one)
	if err != nil {
		return fmt.Errorf("secret %q version %d: %w", secret, version, translate(err))
	}
	return nil
}

func (o *ops) SwapEnvelope(ctx context.Context, p store.SwapEnvelopeParams) error {
	return o.atomic(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `UPDATE secret_versions SET envelope = ?, key_version = ?
			WHERE secret = ? AND version = ? AND envelope IS ?`,
			bytesArg(p.New), p.NewKeyVersion, p.Secret, p.Version, bytesArg(p.Old))
		if err != nil {
			return fmt.Errorf("swap envelope: secret %q version %d: %w", p.Secret, p.Version, translate(err))
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		if err := o.versionExists(ctx, q, p.Secret, p.Version); err != nil {
			return fmt.Errorf("swap envelope: %w", err)
		}
		return fmt.Errorf("swap envelope: secret %q version %d changed: %w", p.Secret, p.Version, store.ErrConflict)
	})
}

func (o *ops) VersionsNotOnKeyVersion(ctx context.Context, p store.StaleVersionsParams) ([]store.SecretVersion, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+versionCols+` FROM secret_versions v
		WHERE v.key_id = ? AND v.key_version <> ? AND (v.secret, v.version) > (?, ?)
		ORDER BY v.secret, v.version LIMIT ?`,
		p.KeyID, p.KeyVersion, p.AfterSecret, p.AfterVersion, lim(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("versions not on key %q version %d: %w", p.KeyID, p.KeyVersion, translate(err))
	}
	return collect(rows, "versions not on key version", versionDest)
}

// --- stages ---

func (o *ops) SetStage(ctx context.Context, secret, stage string, version int64) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO secret_stages (secret, stage, version) VALUES (?, ?, ?)
		ON CONFLICT (secret, stage) DO UPDATE SET version = excluded.version`, secret, stage, version)
	if isFK(err) {
		return fmt.Errorf("set stage %q: secret %q version %d: %w", stage, secret, version, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set stage %q: secret %q version %d: %w", stage, secret, version, translate(err))
	}
	return nil
}

func (o *ops) ClearStage(ctx context.Context, secret, stage string) error {
	_, err := o.w().ExecContext(ctx, `DELETE FROM secret_stages WHERE secret = ? AND stage = ?`, secret, stage)
	if err != nil {
		return fmt.Errorf("clear stage %q: secret %q: %w", stage, secret, translate(err))
	}
	return nil
}

func (o *ops) GetStages(ctx context.Context, secret string) (map[string]int64, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT stage, version FROM secret_stages WHERE secret = ?`, secret)
	if err != nil {
		return nil, fmt.Errorf("get stages %q: %w", secret, translate(err))
	}
	defer rows.Close()
	m := map[string]int64{}
	for rows.Next() {
		var (
			st string
			v  int64
		)
		if err := rows.Scan(&st, &v); err != nil {
			return nil, fmt.Errorf("get stages %q: %w", secret, err)
		}
		m[st] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get stages %q: %w", secret, translate(err))
	}
	return m, nil
}

// --- rotations ---

const rotationCols = `secret, rotator, config, schedule, window_ns, enabled, next_due_at, last_rotated_at,
	last_error, consecutive_failures, lease_owner, lease_expires_at, updated_at, target`

// rotationSettingsCols are the columns PutRotation writes: all but the lease.
const rotationSettingsCols = `secret, rotator, config, schedule, window_ns, enabled, next_due_at, last_rotated_at,
	last_error, consecutive_failures, updated_at, target`

func rotationDest(r *store.Rotation) []any {
	return []any{&r.Secret, &r.Rotator, bcol{P: &r.Config}, &r.Schedule, (*int64)(&r.Window), &r.Enabled,
		ntcol{&r.NextDueAt}, ntcol{&r.LastRotatedAt}, &r.LastError, &r.ConsecutiveFailures,
		&r.LeaseOwner, ntcol{&r.LeaseExpiresAt}, tcol{&r.UpdatedAt}, bcol{P: &r.Target}}
}

// PutRotation writes every column but the lease: an update keeps the
// lease as it is (claim, renew, release and reclaim own it), an insert
// starts unleased.
func (o *ops) PutRotation(ctx context.Context, r store.Rotation) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO rotations (`+rotationSettingsCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (secret) DO UPDATE SET rotator = excluded.rotator, config = excluded.config,
			schedule = excluded.schedule, window_ns = excluded.window_ns, enabled = excluded.enabled,
			next_due_at = excluded.next_due_at, last_rotated_at = excluded.last_rotated_at,
			last_error = excluded.last_error, consecutive_failures = excluded.consecutive_failures,
			updated_at = excluded.updated_at, target = excluded.target`,
		r.Secret, r.Rotator, bytesArg(r.Config), r.Schedule, int64(r.Window), r.Enabled,
		tpa(r.NextDueAt), tpa(r.LastRotatedAt), r.LastError, r.ConsecutiveFailures,
		ta(r.UpdatedAt), bytesArg(r.Target))
	if isFK(err) {
		return fmt.Errorf("put rotation: secret %q: %w", r.Secret, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("put rotation: secret %q: %w", r.Secret, translate(err))
	}
	return nil
}

func (o *ops) GetRotation(ctx context.Context, secret string) (store.Rotation, error) {
	var r store.Rotation
	err := o.r().QueryRowContext(ctx, `SELECT `+rotationCols+` FROM rotations WHERE secret = ?`, secret).
		Scan(rotationDest(&r)...)
	if err != nil {
		return store.Rotation{}, fmt.Errorf("get rotation %q: %w", secret, translate(err))
	}
	return r, nil
}

func (o *ops) ListRotations(ctx context.Context, p store.ListRotationsParams) ([]store.Rotation, error) {
	where, args := "secret > ?", []any{p.After}
	if len(p.Globs) > 0 {
		or := make([]string, len(p.Globs))
		for i, g := range p.Globs {
			or[i] = "secret GLOB ?"
			args = append(args, globArg(g))
		}
		where += " AND (" + strings.Join(or, " OR ") + ")"
	}
	args = append(args, lim(p.Limit))
	rows, err := o.r().QueryContext(ctx, `SELECT `+rotationCols+` FROM rotations WHERE `+where+` ORDER BY secret LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list rotations: %w", translate(err))
	}
	return collect(rows, "list rotations", rotationDest)
}

func (o *ops) ClaimDueRotations(ctx context.Context, p store.ClaimParams) ([]store.Rotation, error) {
	// One UPDATE statement holds the write lock from its start, so two
	// claimers (in this process or another) never see the same free row.
	rows, err := o.w().QueryContext(ctx, `UPDATE rotations SET lease_owner = ?, lease_expires_at = ?
		WHERE secret IN (
			SELECT secret FROM rotations
			WHERE enabled = 1 AND next_due_at <= ?
				AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at <= ?)
			ORDER BY next_due_at, secret
			LIMIT ?)
		RETURNING `+rotationCols,
		p.Owner, ta(p.Now.Add(p.LeaseFor)), ta(p.Now), ta(p.Now), claimLimit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("claim due rotations: %w", translate(err))
	}
	rs, err := collect(rows, "claim due rotations", rotationDest)
	if err != nil {
		return nil, err
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i].NextDueAt, rs[j].NextDueAt
		if !a.Equal(*b) {
			return a.Before(*b)
		}
		return rs[i].Secret < rs[j].Secret
	})
	return rs, nil
}

func (o *ops) ClaimRotation(ctx context.Context, secret string, p store.ClaimParams) (store.Rotation, error) {
	var r store.Rotation
	err := o.atomic(ctx, func(q querier) error {
		err := q.QueryRowContext(ctx, `UPDATE rotations SET lease_owner = ?, lease_expires_at = ?
			WHERE secret = ? AND (lease_owner = '' OR lease_owner = ? OR lease_expires_at IS NULL OR lease_expires_at <= ?)
			RETURNING `+rotationCols,
			p.Owner, ta(p.Now.Add(p.LeaseFor)), secret, p.Owner, ta(p.Now)).Scan(rotationDest(&r)...)
		if !errors.Is(err, sql.ErrNoRows) {
			if err != nil {
				return fmt.Errorf("claim rotation %q: %w", secret, translate(err))
			}
			return nil
		}
		var one int
		if err := q.QueryRowContext(ctx, `SELECT 1 FROM rotations WHERE secret = ?`, secret).Scan(&one); err != nil {
			return fmt.Errorf("claim rotation %q: %w", secret, translate(err))
		}
		return fmt.Errorf("claim rotation %q: leased by another owner: %w", secret, store.ErrConflict)
	})
	if err != nil {
		return store.Rotation{}, err
	}
	return r, nil
}

func (o *ops) RenewRotationLease(ctx context.Context, secret, owner string, until time.Time) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotations SET lease_expires_at = ?
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> ''`, ta(until), secret, owner)
	if err != nil {
		return fmt.Errorf("renew rotation lease %q: %w", secret, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("renew rotation lease %q for %q: %w", secret, owner, store.ErrLeaseLost)
	}
	return nil
}

func (o *ops) ReleaseRotation(ctx context.Context, secret, owner string) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotations SET lease_owner = '', lease_expires_at = NULL
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> ''`, secret, owner)
	if err != nil {
		return fmt.Errorf("release rotation %q: %w", secret, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("release rotation %q for %q: %w", secret, owner, store.ErrLeaseLost)
	}
	return nil
}

func (o *ops) GetRotationForUpdate(ctx context.Context, secret string) (store.Rotation, error) {
	// On SQLite the transaction's write lock already keeps other writers out.
	var r store.Rotation
	err := o.w().QueryRowContext(ctx, `SELECT `+rotationCols+` FROM rotations WHERE secret = ?`, secret).
		Scan(rotationDest(&r)...)
	if err != nil {
		return store.Rotation{}, fmt.Errorf("get rotation %q for update: %w", secret, translate(err))
	}
	return r, nil
}

func (o *ops) CheckRotationLease(ctx context.Context, secret, owner string, now time.Time) error {
	// On SQLite the transaction's write lock already keeps other writers out.
	// A claim by another owner (an UPDATE of the row) waits for it, so what
	// this transaction commits happens while the lease is this owner's.
	var one int
	err := o.w().QueryRowContext(ctx, `SELECT 1 FROM rotations
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> '' AND lease_expires_at > ?`,
		secret, owner, ta(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("rotation %q: %q holds no live lease: %w", secret, owner, store.ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("check rotation lease %q: %w", secret, translate(err))
	}
	return nil
}

func (o *ops) ReclaimRotationLease(ctx context.Context, secret, owner string, now time.Time) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotations SET lease_owner = '', lease_expires_at = NULL
		WHERE secret = ? AND lease_owner = ? AND lease_owner <> ''
			AND (lease_expires_at IS NULL OR lease_expires_at <= ?)`, secret, owner, ta(now))
	if err != nil {
		return fmt.Errorf("reclaim rotation lease %q: %w", secret, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("reclaim rotation lease %q of %q: renewed, taken or released meanwhile: %w", secret, owner, store.ErrLeaseLost)
	}
	return nil
}

func (o *ops) EarliestDue(ctx context.Context) (time.Time, error) {
	// A rotation leased by a live claimer is not claimable before its
	// lease ends, so it counts as due at the later of the two times. Only
	// the first rows in due order are looked at (through the index): if
	// they are all leased, the answer may be late by a little, which the
	// runner's bounded sleep absorbs.
	rows, err := o.r().QueryContext(ctx, `SELECT next_due_at, lease_owner, lease_expires_at FROM rotations
		WHERE `+"enabled = 1"+` AND next_due_at IS NOT NULL ORDER BY next_due_at LIMIT 64`)
	if err != nil {
		return time.Time{}, fmt.Errorf("earliest due: %w", translate(err))
	}
	defer rows.Close()
	var best time.Time
	for rows.Next() {
		var due, exp *time.Time
		var owner string
		if err := rows.Scan(ntcol{&due}, &owner, ntcol{&exp}); err != nil {
			return time.Time{}, fmt.Errorf("earliest due: %w", translate(err))
		}
		t := *due
		if owner != "" && exp != nil && exp.After(t) {
			t = *exp
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, fmt.Errorf("earliest due: %w", translate(err))
	}
	if best.IsZero() {
		return time.Time{}, fmt.Errorf("earliest due: no rotation scheduled: %w", store.ErrNotFound)
	}
	return best, nil
}

// --- runs ---

const runCols = `id, secret, run_trigger, step, state, pending_version, attempt, options,
	started_at, updated_at, ended_at, error`

func runDest(r *store.RotationRun) []any {
	return []any{&r.ID, &r.Secret, &r.Trigger, &r.Step, &r.State, &r.PendingVersion, &r.Attempt, bcol{P: &r.Options},
		tcol{&r.StartedAt}, tcol{&r.UpdatedAt}, ntcol{&r.EndedAt}, &r.Error}
}

func (o *ops) CreateRun(ctx context.Context, r store.RotationRun) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO rotation_runs (`+runCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Secret, r.Trigger, r.Step, r.State, r.PendingVersion, r.Attempt, bytesArg(r.Options),
		ta(r.StartedAt), ta(r.UpdatedAt), tpa(r.EndedAt), r.Error)
	if isFK(err) {
		return fmt.Errorf("create run %q: secret %q: %w", r.ID, r.Secret, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("create run %q: %w", r.ID, translate(err))
	}
	return nil
}

func (o *ops) UpdateRun(ctx context.Context, r store.RotationRun) error {
	res, err := o.w().ExecContext(ctx, `UPDATE rotation_runs SET run_trigger = ?, step = ?, state = ?,
		pending_version = ?, attempt = ?, options = ?, updated_at = ?, ended_at = ?, error = ?
		WHERE id = ?`,
		r.Trigger, r.Step, r.State, r.PendingVersion, r.Attempt, bytesArg(r.Options),
		ta(r.UpdatedAt), tpa(r.EndedAt), r.Error, r.ID)
	if err != nil {
		return fmt.Errorf("update run %q: %w", r.ID, translate(err))
	}
	return mustAffect(res, "update run %q", r.ID)
}

func (o *ops) GetRun(ctx context.Context, id string) (store.RotationRun, error) {
	var r store.RotationRun
	err := o.r().QueryRowContext(ctx, `SELECT `+runCols+` FROM rotation_runs WHERE id = ?`, id).Scan(runDest(&r)...)
	if err != nil {
		return store.RotationRun{}, fmt.Errorf("get run %q: %w", id, translate(err))
	}
	return r, nil
}

func (o *ops) ListRuns(ctx context.Context, secret string, limit int) ([]store.RotationRun, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+runCols+` FROM rotation_runs WHERE secret = ?
		ORDER BY started_at DESC, id DESC LIMIT ?`, secret, lim(limit))
	if err != nil {
		return nil, fmt.Errorf("list runs %q: %w", secret, translate(err))
	}
	return collect(rows, "list runs", runDest)
}

func (o *ops) UnfinishedRuns(ctx context.Context) ([]store.RotationRun, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+runCols+` FROM rotation_runs WHERE state = 'running'
		ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("unfinished runs: %w", translate(err))
	}
	return collect(rows, "unfinished runs", runDest)
}

func (o *ops) AddRunStep(ctx context.Context, s store.RunStep) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO run_steps (run_id, step, started_at, ended_at, result, error)
		VALUES (?, ?, ?, ?, ?, ?)`, s.RunID, s.Step, ta(s.StartedAt), tpa(s.EndedAt), s.Result, s.Error)
	if isFK(err) {
		return fmt.Errorf("add run step: run %q: %w", s.RunID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("add run step: run %q: %w", s.RunID, translate(err))
	}
	return nil
}

func (o *ops) ListRunSteps(ctx context.Context, runID string) ([]store.RunStep, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT run_id, step, started_at, ended_at, result, error
		FROM run_steps WHERE run_id = ? ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("list run steps %q: %w", runID, translate(err))
	}
	return collect(rows, "list run steps", func(s *store.RunStep) []any {
		return []any{&s.RunID, &s.Step, tcol{&s.StartedAt}, ntcol{&s.EndedAt}, &s.Result, &s.Error}
	})
}

// --- outbox ---

const outboxCols = `id, type, secret, version, payload, created_at, delivered_at, lease_owner, lease_expires_at`

func outboxDest(e *store.OutboxEvent) []any {
	return []any{&e.ID, &e.Type, &e.Secret, &e.Version, bcol{P: &e.Payload}, tcol{&e.CreatedAt},
		ntcol{&e.DeliveredAt}, &e.LeaseOwner, ntcol{&e.LeaseExpiresAt}}
}

func (o *ops) AppendOutbox(ctx context.Context, e store.OutboxEvent) (int64, error) {
	var id int64
	err := o.w().QueryRowContext(ctx, `INSERT INTO outbox (type, secret, version, payload, created_at,
		delivered_at, lease_owner, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.Type, e.Secret, e.Version, bytesArg(e.Payload), ta(e.CreatedAt),
		tpa(e.DeliveredAt), e.LeaseOwner, tpa(e.LeaseExpiresAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append outbox %q: %w", e.Type, translate(err))
	}
	return id, nil
}

func (o *ops) ClaimOutbox(ctx context.Context, p store.ClaimParams) ([]store.OutboxEvent, error) {
	// SQLite has one writer, so claims serialize. An event is claimable
	// when free (or already this owner's) and no earlier undelivered event
	// of its secret is leased by another owner; an earlier claimable one
	// sorts first, so it is in the same batch.
	now := ta(p.Now)
	rows, err := o.w().QueryContext(ctx, `UPDATE outbox SET lease_owner = ?, lease_expires_at = ?
		WHERE id IN (
			SELECT o.id FROM outbox o
			WHERE o.delivered_at IS NULL
				AND (o.lease_owner = '' OR o.lease_owner = ? OR o.lease_expires_at IS NULL OR o.lease_expires_at <= ?)
				AND NOT EXISTS (SELECT 1 FROM outbox e
					WHERE e.secret = o.secret AND e.id < o.id AND e.delivered_at IS NULL
						AND e.lease_owner <> '' AND e.lease_owner <> ? AND e.lease_expires_at > ?)
			ORDER BY o.id
			LIMIT ?)
		RETURNING `+outboxCols,
		p.Owner, ta(p.Now.Add(p.LeaseFor)), p.Owner, now, p.Owner, now, claimLimit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", translate(err))
	}
	es, err := collect(rows, "claim outbox", outboxDest)
	if err != nil {
		return nil, err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].ID < es[j].ID })
	return es, nil
}

func (o *ops) OutboxBacklog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	err := o.r().QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL`).
		Scan(&n, ntcol{&oldest})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox backlog: %w", translate(err))
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, *oldest, nil
}

func (o *ops) MarkDelivered(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q querier) error {
		const chunk = 500
		for len(ids) > 0 {
			n := min(len(ids), chunk)
			args := make([]any, 0, n+1)
			args = append(args, ta(at))
			for _, id := range ids[:n] {
				args = append(args, id)
			}
			ph := strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
			if _, err := q.ExecContext(ctx, `UPDATE outbox SET delivered_at = ? WHERE id IN (`+ph+`)`, args...); err != nil {
				return fmt.Errorf("mark delivered: %w", translate(err))
			}
			ids = ids[n:]
		}
		return nil
	})
}

func (o *ops) ListOutboxAfter(ctx context.Context, after int64, limit int) ([]store.OutboxEvent, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+outboxCols+` FROM outbox WHERE id > ? ORDER BY id LIMIT ?`,
		after, lim(limit))
	if err != nil {
		return nil, fmt.Errorf("list outbox after %d: %w", after, translate(err))
	}
	return collect(rows, "list outbox", outboxDest)
}

func (o *ops) TrimOutbox(ctx context.Context, before time.Time) (int, error) {
	res, err := o.w().ExecContext(ctx, `DELETE FROM outbox WHERE delivered_at IS NOT NULL AND created_at < ?`, ta(before))
	if err != nil {
		return 0, fmt.Errorf("trim outbox: %w", translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trim outbox: %w", err)
	}
	return int(n), nil
}

// --- tokens ---

const tokenCols = `id, hash, name, policies, created_at, expires_at, revoked_at`

func tokenDest(t *store.Token) []any {
	return []any{&t.ID, bcol{P: &t.Hash}, &t.Name, jsonCol[[]string]{P: &t.Policies}, tcol{&t.CreatedAt},
		ntcol{&t.ExpiresAt}, ntcol{&t.RevokedAt}}
}

func (o *ops) CreateToken(ctx context.Context, t store.Token) error {
	pol, err := jsonArg(t.Policies, len(t.Policies) == 0)
	if err != nil {
		return fmt.Errorf("create token %q: %w", t.ID, err)
	}
	_, err = o.w().ExecContext(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Hash, t.Name, pol, ta(t.CreatedAt), tpa(t.ExpiresAt), tpa(t.RevokedAt))
	if err != nil {
		return fmt.Errorf("create token %q: %w", t.ID, translate(err))
	}
	return nil
}

func (o *ops) GetTokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	var t store.Token
	err := o.r().QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, hash).Scan(tokenDest(&t)...)
	if err != nil {
		// Never the hash in the message.
		return store.Token{}, fmt.Errorf("get token by hash: %w", translate(err))
	}
	return t, nil
}

func (o *ops) GetToken(ctx context.Context, id string) (store.Token, error) {
	var t store.Token
	err := o.r().QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id).Scan(tokenDest(&t)...)
	if err != nil {
		return store.Token{}, fmt.Errorf("get token %q: %w", id, translate(err))
	}
	return t, nil
}

func (o *ops) ListTokens(ctx context.Context, p store.Page) ([]store.Token, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id > ? ORDER BY id LIMIT ?`,
		p.After, lim(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", translate(err))
	}
	return collect(rows, "list tokens", tokenDest)
}

func (o *ops) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := o.w().ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, ta(at), id)
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", id, translate(err))
	}
	return mustAffect(res, "revoke token %q", id)
}

// --- policies ---

func (o *ops) PutPolicy(ctx context.Context, p store.Policy) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO policies (name, document, created_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET document = excluded.document, created_at = excluded.created_at,
			updated_at = excluded.updated_at`,
		p.Name, bytesArg(p.Document), ta(p.CreatedAt), ta(p.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put policy %q: %w", p.Name, translate(err))
	}
	return nil
}

func policyDest(p *store.Policy) []any {
	return []any{&p.Name, bcol{P: &p.Document}, tcol{&p.CreatedAt}, tcol{&p.UpdatedAt}}
}

func (o *ops) GetPolicy(ctx context.Context, name string) (store.Policy, error) {
	var p store.Policy
	err := o.r().QueryRowContext(ctx, `SELECT name, document, created_at, updated_at FROM policies WHERE name = ?`, name).
		Scan(policyDest(&p)...)
	if err != nil {
		return store.Policy{}, fmt.Errorf("get policy %q: %w", name, translate(err))
	}
	return p, nil
}

func (o *ops) ListPolicies(ctx context.Context, p store.Page) ([]store.Policy, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT name, document, created_at, updated_at FROM policies
		WHERE name > ? ORDER BY name LIMIT ?`, p.After, lim(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", translate(err))
	}
	return collect(rows, "list policies", policyDest)
}

func (o *ops) DeletePolicy(ctx context.Context, name string) error {
	res, err := o.w().ExecContext(ctx, `DELETE FROM policies WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete policy %q: %w", name, translate(err))
	}
	return mustAffect(res, "delete policy %q", name)
}

// --- audit ---

const auditCols = `seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash`

func auditDest(a *store.AuditRecord) []any {
	return []any{&a.Seq, tcol{&a.Time}, &a.TokenID, &a.Action, &a.Target, &a.Result, &a.RequestID, &a.Detail,
		bcol{P: &a.PrevHash}, bcol{P: &a.Hash}}
}

// AuditHead reads the newest record. Inside InTx the transaction already
// holds SQLite's write lock (IMMEDIATE), so appends serialize.
func (o *ops) AuditHead(ctx context.Context) (int64, []byte, error) {
	var (
		seq  int64
		hash []byte
	)
	err := o.r().QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, bcol{P: &hash})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", translate(err))
	}
	return seq, hash, nil
}

func (o *ops) AppendAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q querier) error {
		for _, a := range recs {
			_, err := q.ExecContext(ctx, `INSERT INTO audit (`+auditCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				a.Seq, ta(a.Time), a.TokenID, a.Action, a.Target, a.Result, a.RequestID, a.Detail,
				bytesArg(a.PrevHash), bytesArg(a.Hash))
			if err != nil {
				return fmt.Errorf("append audit seq %d: %w", a.Seq, translate(err))
			}
		}
		last := recs[len(recs)-1]
		_, err := q.ExecContext(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq < ?`,
			last.Seq, bytesArg(last.Hash), last.Seq)
		if err != nil {
			return fmt.Errorf("append audit: head: %w", translate(err))
		}
		return nil
	})
}

func (o *ops) RehashAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q querier) error {
		last := recs[0]
		for _, a := range recs {
			res, err := q.ExecContext(ctx, `UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?`,
				bytesArg(a.PrevHash), bytesArg(a.Hash), a.Seq)
			if err != nil {
				return fmt.Errorf("rehash audit seq %d: %w", a.Seq, translate(err))
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("rehash audit seq %d: %w", a.Seq, store.ErrNotFound)
			}
			if a.Seq > last.Seq {
				last = a
			}
		}
		_, err := q.ExecContext(ctx, `UPDATE audit_head SET hash = ? WHERE id = 1 AND seq = ?`, bytesArg(last.Hash), last.Seq)
		if err != nil {
			return fmt.Errorf("rehash audit: head: %w", translate(err))
		}
		return nil
	})
}

func (o *ops) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	q := `SELECT ` + auditCols + ` FROM audit WHERE seq > ?`
	args := []any{f.AfterSeq}
	if !f.Since.IsZero() {
		q += ` AND time >= ?`
		args = append(args, ta(f.Since))
	}
	if f.Target != "" {
		q += ` AND target = ?`
		args = append(args, f.Target)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, lim(f.Limit))
	rows, err := o.r().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", translate(err))
	}
	return collect(rows, "list audit", auditDest)
}

// --- plugins and hooks ---

func (o *ops) PutPlugin(ctx context.Context, p store.Plugin) error {
	args, err := pluginArgs(p)
	if err != nil {
		return fmt.Errorf("put plugin %q: %w", p.Name, err)
	}
	_, err = o.w().ExecContext(ctx, `INSERT INTO plugins (`+pluginCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256, env = excluded.env,
			created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version,
			secret_types = excluded.secret_types, kinds = excluded.kinds, identity_fields = excluded.identity_fields,
			last_start_at = excluded.last_start_at, status = excluded.status, last_error = excluded.last_error`,
		args...)
	if err != nil {
		return fmt.Errorf("put plugin %q: %w", p.Name, translate(err))
	}
	return nil
}

const pluginCols = `name, path, sha256, env, created_at, updated_at, version, secret_types, kinds,
	identity_fields, last_start_at, status, last_error`

func pluginArgs(p store.Plugin) ([]any, error) {
	lists := make([]any, 4)
	for i, l := range [][]string{p.Env, p.SecretTypes, p.Kinds, p.IdentityFields} {
		v, err := jsonArg(l, len(l) == 0)
		if err != nil {
			return nil, err
		}
		lists[i] = v
	}
	return []any{p.Name, p.Path, p.SHA256, lists[0], ta(p.CreatedAt), ta(p.UpdatedAt), p.Version,
		lists[1], lists[2], lists[3], tpa(p.LastStartAt), p.Status, p.LastError}, nil
}

func pluginDest(p *store.Plugin) []any {
	return []any{&p.Name, &p.Path, &p.SHA256, jsonCol[[]string]{P: &p.Env}, tcol{&p.CreatedAt}, tcol{&p.UpdatedAt},
		&p.Version, jsonCol[[]string]{P: &p.SecretTypes}, jsonCol[[]string]{P: &p.Kinds},
		jsonCol[[]string]{P: &p.IdentityFields}, ntcol{&p.LastStartAt}, &p.Status, &p.LastError}
}

func (o *ops) GetPlugin(ctx context.Context, name string) (store.Plugin, error) {
	var p store.Plugin
	err := o.r().QueryRowContext(ctx, `SELECT `+pluginCols+` FROM plugins WHERE name = ?`, name).
		Scan(pluginDest(&p)...)
	if err != nil {
		return store.Plugin{}, fmt.Errorf("get plugin %q: %w", name, translate(err))
	}
	return p, nil
}

func (o *ops) ListPlugins(ctx context.Context) ([]store.Plugin, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+pluginCols+` FROM plugins ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list plugins: %w", translate(err))
	}
	return collect(rows, "list plugins", pluginDest)
}

func (o *ops) DeletePlugin(ctx context.Context, name string) error {
	res, err := o.w().ExecContext(ctx, `DELETE FROM plugins WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete plugin %q: %w", name, translate(err))
	}
	return mustAffect(res, "delete plugin %q", name)
}

const hookCols = `name, on_event, secrets_glob, kind, target, shell, timeout, sealed_secret, created_at,
	delivered, failures, dropped, last_delivery_at, last_error, failing`

func hookDest(h *store.Hook) []any {
	return []any{&h.Name, &h.On, &h.Secrets, &h.Kind, &h.Target, &h.Shell, (*int64)(&h.Timeout),
		bcol{P: &h.SealedSecret}, tcol{&h.CreatedAt}, &h.Delivered, &h.Failures, &h.Dropped,
		ntcol{&h.LastDeliveryAt}, &h.LastError, &h.Failing}
}

func (o *ops) RecordPluginStart(ctx context.Context, p store.Plugin) error {
	args, err := pluginArgs(p)
	if err != nil {
		return fmt.Errorf("record plugin start %q: %w", p.Name, err)
	}
	// args: name 0, ..., version 6, secret_types 7, kinds 8, identity_fields 9,
	// last_start_at 10, status 11, last_error 12.
	res, err := o.w().ExecContext(ctx, `UPDATE plugins SET version = ?, secret_types = ?, kinds = ?,
		identity_fields = ?, last_start_at = ?, status = ?, last_error = ? WHERE name = ?`,
		args[6], args[7], args[8], args[9], args[10], args[11], args[12], p.Name)
	if err != nil {
		return fmt.Errorf("record plugin start %q: %w", p.Name, translate(err))
	}
	return mustAffect(res, "record plugin start %q", p.Name)
}

func (o *ops) PutHook(ctx context.Context, h store.Hook) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO hooks (name, on_event, secrets_glob, kind, target, shell, timeout,
			sealed_secret, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET on_event = excluded.on_event, secrets_glob = excluded.secrets_glob,
			kind = excluded.kind, target = excluded.target, shell = excluded.shell, timeout = excluded.timeout,
			sealed_secret = excluded.sealed_secret, created_at = excluded.created_at`,
		h.Name, h.On, h.Secrets, h.Kind, h.Target, h.Shell, int64(h.Timeout), bytesArg(h.SealedSecret), ta(h.CreatedAt))
	if err != nil {
		return fmt.Errorf("put hook %q: %w", h.Name, translate(err))
	}
	return nil
}

func (o *ops) GetHook(ctx context.Context, name string) (store.Hook, error) {
	var h store.Hook
	err := o.r().QueryRowContext(ctx, `SELECT `+hookCols+`,
		(SELECT COUNT(*) FROM hook_deliveries d WHERE d.hook = hooks.name AND d.state = 'pending')
		FROM hooks WHERE name = ?`, name).Scan(append(hookDest(&h), &h.Backlog)...)
	if err != nil {
		return store.Hook{}, fmt.Errorf("get hook %q: %w", name, translate(err))
	}
	return h, nil
}

func (o *ops) ListHooks(ctx context.Context) ([]store.Hook, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+hookCols+`,
		(SELECT COUNT(*) FROM hook_deliveries d WHERE d.hook = hooks.name AND d.state = 'pending')
		FROM hooks ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", translate(err))
	}
	return collect(rows, "list hooks", func(h *store.Hook) []any { return append(hookDest(h), &h.Backlog) })
}

func (o *ops) DeleteHook(ctx context.Context, name string) error {
	return o.atomic(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `DELETE FROM hooks WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete hook %q: %w", name, translate(err))
		}
		if err := mustAffect(res, "delete hook %q", name); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM hook_deliveries WHERE hook = ?`, name); err != nil {
			return fmt.Errorf("delete hook %q: deliveries: %w", name, translate(err))
		}
		return nil
	})
}

// --- hook deliveries ---

const deliveryCols = `hook, event_id, secret, payload, event_at, state, attempts, next_attempt_at, last_error,
	lease_owner, lease_expires_at, created_at, updated_at`

func deliveryDest(d *store.HookDelivery) []any {
	return []any{&d.Hook, &d.EventID, &d.Secret, bcol{P: &d.Payload}, tcol{&d.EventAt}, &d.State, &d.Attempts,
		tcol{&d.NextAttemptAt}, &d.LastError, &d.LeaseOwner, ntcol{&d.LeaseExpiresAt}, tcol{&d.CreatedAt},
		tcol{&d.UpdatedAt}}
}

func (o *ops) AddHookDeliveries(ctx context.Context, ds []store.HookDelivery) error {
	if len(ds) == 0 {
		return nil
	}
	return o.atomic(ctx, func(q querier) error {
		for _, d := range ds {
			state := cmp.Or(d.State, store.DeliveryPending)
			_, err := q.ExecContext(ctx, `INSERT INTO hook_deliveries (`+deliveryCols+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hook, event_id) DO NOTHING`,
				d.Hook, d.EventID, d.Secret, bytesArg(d.Payload), ta(d.EventAt), state, d.Attempts,
				ta(d.NextAttemptAt), d.LastError, d.LeaseOwner, tpa(d.LeaseExpiresAt), ta(d.CreatedAt), ta(d.UpdatedAt))
			if err != nil {
				return fmt.Errorf("add hook delivery %q/%d: %w", d.Hook, d.EventID, translate(err))
			}
		}
		return nil
	})
}

func (o *ops) ClaimHookDeliveries(ctx context.Context, p store.ClaimParams) ([]store.HookDelivery, error) {
	now := ta(p.Now)
	rows, err := o.w().QueryContext(ctx, `UPDATE hook_deliveries
		SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ?
		WHERE (hook, event_id) IN (
			SELECT d.hook, d.event_id FROM hook_deliveries d
			WHERE d.state = 'pending' AND d.next_attempt_at <= ?
				AND (d.lease_owner = '' OR d.lease_expires_at IS NULL OR d.lease_expires_at <= ?)
				AND NOT EXISTS (SELECT 1 FROM hook_deliveries e
					WHERE e.hook = d.hook AND e.secret = d.secret AND e.state = 'pending' AND e.event_id < d.event_id)
			ORDER BY d.event_id, d.hook
			LIMIT ?)
		RETURNING `+deliveryCols,
		p.Owner, ta(p.Now.Add(p.LeaseFor)), now, now, now, claimLimit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("claim hook deliveries: %w", translate(err))
	}
	ds, err := collect(rows, "claim hook deliveries", deliveryDest)
	if err != nil {
		return nil, err
	}
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].EventID != ds[j].EventID {
			return ds[i].EventID < ds[j].EventID
		}
		return ds[i].Hook < ds[j].Hook
	})
	return ds, nil
}

func (o *ops) FinishHookDelivery(ctx context.Context, r store.HookDeliveryResult) error {
	var hookSQL string
	var args []any
	switch r.State {
	case store.DeliveryDone:
		hookSQL = `UPDATE hooks SET delivered = delivered + 1, last_delivery_at = ?, failing = 0, last_error = '' WHERE name = ?`
		args = []any{ta(r.At), r.Hook}
	case store.DeliveryPending:
		hookSQL = `UPDATE hooks SET failures = failures + 1, last_error = ? WHERE name = ?`
		args = []any{r.Error, r.Hook}
	case store.DeliveryFailed:
		hookSQL = `UPDATE hooks SET failures = failures + 1, last_error = ?, failing = 1 WHERE name = ?`
		args = []any{r.Error, r.Hook}
	default:
		return fmt.Errorf("finish hook delivery %q/%d: unknown state %q", r.Hook, r.EventID, r.State)
	}
	return o.atomic(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `UPDATE hook_deliveries SET state = ?, next_attempt_at = ?, last_error = ?,
				lease_owner = '', lease_expires_at = NULL, updated_at = ?
			WHERE hook = ? AND event_id = ? AND state = 'pending' AND lease_owner = ?`,
			r.State, ta(r.NextAttemptAt), r.Error, ta(r.At), r.Hook, r.EventID, r.Owner)
		if err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, translate(err))
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, err)
		} else if n == 0 {
			return fmt.Errorf("finish hook delivery %q/%d: %w", r.Hook, r.EventID, store.ErrLeaseLost)
		}
		if _, err := q.ExecContext(ctx, hookSQL, args...); err != nil {
			return fmt.Errorf("finish hook delivery %q/%d: hook: %w", r.Hook, r.EventID, translate(err))
		}
		return nil
	})
}

func (o *ops) CapHookBacklog(ctx context.Context, hook string, max int, now time.Time) (int, error) {
	var dropped int
	err := o.atomic(ctx, func(q querier) error {
		var n int
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM hook_deliveries WHERE hook = ? AND state = 'pending'`,
			hook).Scan(&n); err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, translate(err))
		}
		if n <= max {
			return nil
		}
		res, err := q.ExecContext(ctx, `UPDATE hook_deliveries SET state = 'dropped', updated_at = ?,
				last_error = 'dropped: backlog over its cap'
			WHERE (hook, event_id) IN (
				SELECT hook, event_id FROM hook_deliveries
				WHERE hook = ? AND state = 'pending'
					AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at <= ?)
				ORDER BY event_id LIMIT ?)`, ta(now), hook, ta(now), n-max)
		if err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, translate(err))
		}
		k, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, err)
		}
		dropped = int(k)
		if _, err := q.ExecContext(ctx, `UPDATE hooks SET dropped = dropped + ? WHERE name = ?`, dropped, hook); err != nil {
			return fmt.Errorf("cap hook backlog %q: %w", hook, translate(err))
		}
		return nil
	})
	return dropped, err
}

func (o *ops) ReleaseHookDeliveries(ctx context.Context, owner string) (int, error) {
	res, err := o.w().ExecContext(ctx, `UPDATE hook_deliveries SET lease_owner = '', lease_expires_at = NULL
		WHERE state = 'pending' AND lease_owner = ?`, owner)
	if err != nil {
		return 0, fmt.Errorf("release hook deliveries of %q: %w", owner, translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release hook deliveries of %q: %w", owner, err)
	}
	return int(n), nil
}

func (o *ops) TrimHookDeliveries(ctx context.Context, before time.Time) (int, error) {
	res, err := o.w().ExecContext(ctx, `DELETE FROM hook_deliveries WHERE state <> 'pending' AND updated_at < ?`, ta(before))
	if err != nil {
		return 0, fmt.Errorf("trim hook deliveries: %w", translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trim hook deliveries: %w", err)
	}
	return int(n), nil
}

// --- named locks ---

func (o *ops) TryLock(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	rows, err := o.w().QueryContext(ctx, `INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE locks.owner = excluded.owner OR locks.expires_at <= ?
		RETURNING owner`, name, owner, ta(until), ta(now))
	if err != nil {
		return false, fmt.Errorf("try lock %q: %w", name, translate(err))
	}
	got, err := collectScalar[string](rows, "try lock")
	if err != nil {
		return false, err
	}
	return len(got) == 1, nil
}

func (o *ops) Unlock(ctx context.Context, name, owner string) error {
	if _, err := o.w().ExecContext(ctx, `DELETE FROM locks WHERE name = ? AND owner = ?`, name, owner); err != nil {
		return fmt.Errorf("unlock %q: %w", name, translate(err))
	}
	return nil
}

// --- helpers ---

func (o *ops) count(ctx context.Context, table string) (int, error) {
	var n int
	if err := o.r().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, translate(err))
	}
	return n, nil
}

// defaultClaimLimit applies when ClaimParams.Limit is not positive.
const defaultClaimLimit = 100

func claimLimit(n int) int {
	if n <= 0 {
		return defaultClaimLimit
	}
	return n
}

// Column scanners and argument helpers shared with the other backend.
type (
	bcol       = sqlcol.Bytes
	nullString = sqlcol.NullString
	stagesCol  = sqlcol.Stages
)

type jsonCol[T any] = sqlcol.JSON[T]

var (
	mustAffect = sqlcol.MustAffect
	aliasArg   = sqlcol.AliasArg
	jsonArg    = sqlcol.JSONArg
	secretJSON = sqlcol.SecretJSON
	bytesArg   = sqlcol.BytesArg
)

func collect[T any](rows *sql.Rows, what string, dest func(*T) []any) ([]T, error) {
	return sqlcol.Collect(rows, what, dest, translate)
}

func collectScalar[T any](rows *sql.Rows, what string) ([]T, error) {
	return sqlcol.CollectScalar[T](rows, what, translate)
}
