package sqlops

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// --- meta ---

func (o *Ops) GetMeta(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := o.r().QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(bcol{P: &v})
	if err != nil {
		return nil, fmt.Errorf("get meta %q: %w", name, o.translate(err))
	}
	return v, nil
}

func (o *Ops) PutMetaIfAbsent(ctx context.Context, name string, value []byte) error {
	err := o.insert(ctx, o.w(), `INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING`, name, bytesArg(value))
	if err != nil {
		return fmt.Errorf("put meta %q: %w", name, err)
	}
	return nil
}

// --- regions ---

func (o *Ops) CreateRegion(ctx context.Context, r store.Region) error {
	err := o.insert(ctx, o.w(), `INSERT INTO regions (name, fingerprint_key, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		r.Name, bytesArg(r.FingerprintKey), o.d.Time(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("create region %q: %w", r.Name, err)
	}
	return nil
}

func (o *Ops) GetRegion(ctx context.Context, name string) (store.Region, error) {
	var r store.Region
	err := o.r().QueryRowContext(ctx, `SELECT name, fingerprint_key, created_at FROM regions WHERE name = ?`, name).
		Scan(&r.Name, bcol{P: &r.FingerprintKey}, tcol{P: &r.CreatedAt})
	if err != nil {
		return store.Region{}, fmt.Errorf("get region %q: %w", name, o.translate(err))
	}
	return r, nil
}

func (o *Ops) ListRegions(ctx context.Context) ([]store.Region, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT name, fingerprint_key, created_at FROM regions ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list regions: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list regions", func(r *store.Region) []any {
		return []any{&r.Name, bcol{P: &r.FingerprintKey}, tcol{P: &r.CreatedAt}}
	})
}

// --- master keys ---

const keyCols = `id, region, alias, description, state, primary_version, rotation_period,
	next_rotation_at, deletion_date, created_at, updated_at`

func keyDest(k *store.MasterKey) []any {
	return []any{&k.ID, &k.Region, nullString{P: &k.Alias}, &k.Description, &k.State, &k.PrimaryVersion,
		(*int64)(&k.RotationPeriod), ntcol{P: &k.NextRotationAt}, ntcol{P: &k.DeletionDate},
		tcol{P: &k.CreatedAt}, tcol{P: &k.UpdatedAt}}
}

func (o *Ops) CreateKey(ctx context.Context, k store.MasterKey, v store.KeyVersion) error {
	if v.KeyID == "" {
		v.KeyID = k.ID
	}
	if v.KeyID != k.ID {
		return fmt.Errorf("create key %q: version names key %q", k.ID, v.KeyID)
	}
	return o.atomic(ctx, func(q Querier) error {
		err := o.insert(ctx, q, `INSERT INTO master_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			k.ID, k.Region, aliasArg(k.Alias), k.Description, k.State, k.PrimaryVersion, int64(k.RotationPeriod),
			o.tpa(k.NextRotationAt), o.tpa(k.DeletionDate), o.d.Time(k.CreatedAt), o.d.Time(k.UpdatedAt))
		if err != nil {
			return fmt.Errorf("create key %q: %w", k.ID, err)
		}
		err = o.insert(ctx, q, `INSERT INTO key_versions (key_id, version, material, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			v.KeyID, v.Version, bytesArg(v.Material), o.d.Time(v.CreatedAt))
		if err != nil {
			return fmt.Errorf("create key %q: version %d: %w", k.ID, v.Version, err)
		}
		return nil
	})
}

func (o *Ops) GetKey(ctx context.Context, id string) (store.MasterKey, error) {
	var k store.MasterKey
	err := o.r().QueryRowContext(ctx, `SELECT `+keyCols+` FROM master_keys WHERE id = ?`, id).Scan(keyDest(&k)...)
	if err != nil {
		return store.MasterKey{}, fmt.Errorf("get key %q: %w", id, o.translate(err))
	}
	return k, nil
}

func (o *Ops) GetKeyByAlias(ctx context.Context, region, alias string) (store.MasterKey, error) {
	var k store.MasterKey
	err := o.r().QueryRowContext(ctx, `SELECT `+keyCols+` FROM master_keys WHERE region = ? AND alias = ?`, region, alias).
		Scan(keyDest(&k)...)
	if err != nil {
		return store.MasterKey{}, fmt.Errorf("get key alias %q in region %q: %w", alias, region, o.translate(err))
	}
	return k, nil
}

func (o *Ops) ListKeys(ctx context.Context, region string) ([]store.MasterKey, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT `+keyCols+` FROM master_keys
		WHERE (? = '' OR region = ?) ORDER BY region, id`, region, region)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list keys", keyDest)
}

func (o *Ops) UpdateKey(ctx context.Context, k store.MasterKey, ifUpdatedAt time.Time) error {
	q := `UPDATE master_keys SET region = ?, alias = ?, description = ?, state = ?,
		rotation_period = ?, next_rotation_at = ?, deletion_date = ?, updated_at = ?
		WHERE id = ?`
	args := []any{k.Region, aliasArg(k.Alias), k.Description, k.State, int64(k.RotationPeriod),
		o.tpa(k.NextRotationAt), o.tpa(k.DeletionDate), o.d.Time(k.UpdatedAt), k.ID}
	if !ifUpdatedAt.IsZero() {
		q += ` AND updated_at = ?`
		args = append(args, o.d.Time(ifUpdatedAt))
	}
	res, err := o.w().ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("update key %q: %w", k.ID, o.translate(err))
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 && !ifUpdatedAt.IsZero() {
		if _, gerr := o.GetKey(ctx, k.ID); gerr == nil {
			return fmt.Errorf("update key %q: %w", k.ID, store.ErrStale)
		}
	}
	return mustAffect(res, "update key %q", k.ID)
}

func (o *Ops) AddKeyVersion(ctx context.Context, v store.KeyVersion) error {
	return o.atomic(ctx, func(q Querier) error {
		err := o.insert(ctx, q, `INSERT INTO key_versions (key_id, version, material, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			v.KeyID, v.Version, bytesArg(v.Material), o.d.Time(v.CreatedAt))
		if o.d.IsForeignKey(err) {
			return fmt.Errorf("add key version: key %q: %w", v.KeyID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("add key version: key %q version %d: %w", v.KeyID, v.Version, err)
		}
		res, err := q.ExecContext(ctx, `UPDATE master_keys SET primary_version = ? WHERE id = ?`, v.Version, v.KeyID)
		if err != nil {
			return fmt.Errorf("add key version: key %q: %w", v.KeyID, o.translate(err))
		}
		return mustAffect(res, "add key version: key %q", v.KeyID)
	})
}

func (o *Ops) GetKeyVersions(ctx context.Context, keyID string) ([]store.KeyVersion, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT key_id, version, material, created_at FROM key_versions
		WHERE key_id = ? ORDER BY version`, keyID)
	if err != nil {
		return nil, fmt.Errorf("get key versions %q: %w", keyID, o.translate(err))
	}
	return Collect(o.d, rows, "get key versions", func(v *store.KeyVersion) []any {
		return []any{&v.KeyID, &v.Version, bcol{P: &v.Material}, tcol{P: &v.CreatedAt}}
	})
}

func (o *Ops) DeleteKey(ctx context.Context, id string) error {
	return o.atomic(ctx, func(q Querier) error {
		if _, err := q.ExecContext(ctx, `DELETE FROM key_versions WHERE key_id = ?`, id); err != nil {
			return fmt.Errorf("delete key %q: %w", id, o.translate(err))
		}
		res, err := q.ExecContext(ctx, `DELETE FROM master_keys WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("delete key %q: %w", id, o.translate(err))
		}
		return mustAffect(res, "delete key %q", id)
	})
}

func (o *Ops) CountKeys(ctx context.Context) (int, error) {
	return o.count(ctx, "master_keys")
}

// --- secrets ---

const secretCols = `name, type, region, key_id, description, tags, metadata, next_version,
	created_at, updated_at, deleted_at, purge_at`

func secretDest(s *store.Secret) []any {
	return []any{&s.Name, &s.Type, &s.Region, &s.KeyID, &s.Description, jsonCol[map[string]string]{P: &s.Tags}, jsonCol[map[string]string]{P: &s.Metadata},
		&s.NextVersion, tcol{P: &s.CreatedAt}, tcol{P: &s.UpdatedAt}, ntcol{P: &s.DeletedAt}, ntcol{P: &s.PurgeAt}}
}

func (o *Ops) CreateSecret(ctx context.Context, s store.Secret) error {
	tags, meta, err := secretJSON(s)
	if err != nil {
		return fmt.Errorf("create secret %q: %w", s.Name, err)
	}
	err = o.insert(ctx, o.w(), `INSERT INTO secrets (`+secretCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		s.Name, s.Type, s.Region, s.KeyID, s.Description, tags, meta, s.NextVersion,
		o.d.Time(s.CreatedAt), o.d.Time(s.UpdatedAt), o.tpa(s.DeletedAt), o.tpa(s.PurgeAt))
	if err != nil {
		return fmt.Errorf("create secret %q: %w", s.Name, err)
	}
	return nil
}

func (o *Ops) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	var s store.Secret
	err := o.r().QueryRowContext(ctx, `SELECT `+secretCols+` FROM secrets WHERE name = ?`, name).Scan(secretDest(&s)...)
	if err != nil {
		return store.Secret{}, fmt.Errorf("get secret %q: %w", name, o.translate(err))
	}
	return s, nil
}

func (o *Ops) UpdateSecret(ctx context.Context, s store.Secret) error {
	tags, meta, err := secretJSON(s)
	if err != nil {
		return fmt.Errorf("update secret %q: %w", s.Name, err)
	}
	res, err := o.w().ExecContext(ctx, `UPDATE secrets SET type = ?, region = ?, key_id = ?, description = ?,
		tags = ?, metadata = ?, next_version = ?, updated_at = ?, deleted_at = ?, purge_at = ?
		WHERE name = ?`,
		s.Type, s.Region, s.KeyID, s.Description, tags, meta, s.NextVersion,
		o.d.Time(s.UpdatedAt), o.tpa(s.DeletedAt), o.tpa(s.PurgeAt), s.Name)
	if err != nil {
		return fmt.Errorf("update secret %q: %w", s.Name, o.translate(err))
	}
	return mustAffect(res, "update secret %q", s.Name)
}

func (o *Ops) ListSecrets(ctx context.Context, p store.ListSecretsParams) ([]store.Secret, error) {
	var (
		where []string
		args  []any
	)
	if p.Prefix != "" {
		cond, a := o.d.PrefixMatch("name", p.Prefix)
		where, args = append(where, cond), append(args, a...)
	}
	if p.After != "" {
		where, args = append(where, "name > ?"), append(args, p.After)
	}
	if !p.IncludeDeleted {
		where = append(where, "deleted_at IS NULL")
	}
	if len(p.Globs) > 0 {
		cond, a := o.d.GlobMatch("name", p.Globs)
		where, args = append(where, cond), append(args, a...)
	}
	q := `SELECT ` + secretCols + ` FROM secrets`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY name LIMIT ?"
	args = append(args, o.d.Limit(p.Limit))
	rows, err := o.r().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", o.translate(err))
	}
	return Collect(o.d, rows, "list secrets", secretDest)
}

func (o *Ops) DeleteSecret(ctx context.Context, name string) error {
	return o.atomic(ctx, func(q Querier) error {
		for _, stmt := range []string{
			`DELETE FROM secret_stages WHERE secret = ?`,
			`DELETE FROM run_steps WHERE run_id IN (SELECT id FROM rotation_runs WHERE secret = ?)`,
			`DELETE FROM rotation_runs WHERE secret = ?`,
			`DELETE FROM rotations WHERE secret = ?`,
			`DELETE FROM secret_versions WHERE secret = ?`,
		} {
			if _, err := q.ExecContext(ctx, stmt, name); err != nil {
				return fmt.Errorf("delete secret %q: %w", name, o.translate(err))
			}
		}
		res, err := q.ExecContext(ctx, `DELETE FROM secrets WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete secret %q: %w", name, o.translate(err))
		}
		return mustAffect(res, "delete secret %q", name)
	})
}

func (o *Ops) SecretsDueForPurge(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT name FROM secrets
		WHERE deleted_at IS NOT NULL AND purge_at IS NOT NULL AND purge_at <= ?
		ORDER BY purge_at, name LIMIT ?`, o.d.Time(now), o.d.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("secrets due for purge: %w", o.translate(err))
	}
	return collectScalar[string](o.d, rows, "secrets due for purge")
}

func (o *Ops) CountSecrets(ctx context.Context) (int, error) {
	return o.count(ctx, "secrets")
}

// --- versions ---

// versionColsWith selects a version with its stages joined by char(31);
// envelope is the envelope column, or NULL to leave it out.
func versionColsWith(d Dialect, envelope string) string {
	return `v.secret, v.version, ` + envelope + `, v.key_id, v.key_version, v.fingerprint,
	v.created_at, v.created_by, v.reason,
	(SELECT ` + d.StageList() + ` FROM secret_stages st WHERE st.secret = v.secret AND st.version = v.version)`
}

func versionDest(v *store.SecretVersion) []any {
	return []any{&v.Secret, &v.Version, bcol{P: &v.Envelope}, &v.KeyID, &v.KeyVersion, &v.Fingerprint,
		tcol{P: &v.CreatedAt}, &v.CreatedBy, &v.Reason, stagesCol{P: &v.Stages}}
}

func (o *Ops) InsertVersion(ctx context.Context, v store.SecretVersion) error {
	err := o.insert(ctx, o.w(), `INSERT INTO secret_versions (secret, version, envelope, key_id, key_version,
		fingerprint, created_at, created_by, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		v.Secret, v.Version, bytesArg(v.Envelope), v.KeyID, v.KeyVersion, v.Fingerprint,
		o.d.Time(v.CreatedAt), v.CreatedBy, v.Reason)
	if o.d.IsForeignKey(err) {
		return fmt.Errorf("insert version: secret %q: %w", v.Secret, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("insert version: secret %q version %d: %w", v.Secret, v.Version, err)
	}
	return nil
}

func (o *Ops) GetVersion(ctx context.Context, secret string, version int64) (store.SecretVersion, error) {
	var v store.SecretVersion
	err := o.r().QueryRowContext(ctx, o.q.getVersion, secret, version).Scan(versionDest(&v)...)
	if err != nil {
		return store.SecretVersion{}, fmt.Errorf("get version: secret %q version %d: %w", secret, version, o.translate(err))
	}
	return v, nil
}

func (o *Ops) ListVersions(ctx context.Context, secret string, withEnvelope bool) ([]store.SecretVersion, error) {
	q := o.q.listVersionsNoEnvelope
	if withEnvelope {
		q = o.q.listVersions
	}
	rows, err := o.r().QueryContext(ctx, q, secret)
	if err != nil {
		return nil, fmt.Errorf("list versions %q: %w", secret, o.translate(err))
	}
	return Collect(o.d, rows, "list versions", versionDest)
}

func (o *Ops) DeleteVersion(ctx context.Context, secret string, version int64) error {
	return o.atomic(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, `DELETE FROM secret_versions WHERE secret = ? AND version = ?
			AND NOT EXISTS (SELECT 1 FROM secret_stages WHERE secret = ? AND version = ?)`,
			secret, version, secret, version)
		if o.d.IsForeignKey(err) {
			return fmt.Errorf("delete version: secret %q version %d holds a stage: %w", secret, version, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("delete version: secret %q version %d: %w", secret, version, o.translate(err))
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

func (o *Ops) versionExists(ctx context.Context, q Querier, secret string, version int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM secret_versions WHERE secret = ? AND version = ?`, secret, version).Scan(&one)
	if err != nil {
		return fmt.Errorf("secret %q version %d: %w", secret, version, o.translate(err))
	}
	return nil
}

func (o *Ops) SwapEnvelope(ctx context.Context, p store.SwapEnvelopeParams) error {
	return o.atomic(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, `UPDATE secret_versions SET envelope = ?, key_version = ?
			WHERE secret = ? AND version = ? AND envelope IS NOT DISTINCT FROM ?`,
			bytesArg(p.New), p.NewKeyVersion, p.Secret, p.Version, bytesArg(p.Old))
		if err != nil {
			return fmt.Errorf("swap envelope: secret %q version %d: %w", p.Secret, p.Version, o.translate(err))
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

func (o *Ops) VersionsNotOnKeyVersion(ctx context.Context, p store.StaleVersionsParams) ([]store.SecretVersion, error) {
	rows, err := o.r().QueryContext(ctx, o.q.versionsNotOnKeyVersion,
		p.KeyID, p.KeyVersion, p.AfterSecret, p.AfterVersion, o.d.Limit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("versions not on key %q version %d: %w", p.KeyID, p.KeyVersion, o.translate(err))
	}
	return Collect(o.d, rows, "versions not on key version", versionDest)
}

// --- stages ---

func (o *Ops) SetStage(ctx context.Context, secret, stage string, version int64) error {
	_, err := o.w().ExecContext(ctx, `INSERT INTO secret_stages (secret, stage, version) VALUES (?, ?, ?)
		ON CONFLICT (secret, stage) DO UPDATE SET version = excluded.version`, secret, stage, version)
	if o.d.IsForeignKey(err) {
		return fmt.Errorf("set stage %q: secret %q version %d: %w", stage, secret, version, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set stage %q: secret %q version %d: %w", stage, secret, version, o.translate(err))
	}
	return nil
}

func (o *Ops) ClearStage(ctx context.Context, secret, stage string) error {
	_, err := o.w().ExecContext(ctx, `DELETE FROM secret_stages WHERE secret = ? AND stage = ?`, secret, stage)
	if err != nil {
		return fmt.Errorf("clear stage %q: secret %q: %w", stage, secret, o.translate(err))
	}
	return nil
}

func (o *Ops) GetStages(ctx context.Context, secret string) (map[string]int64, error) {
	rows, err := o.r().QueryContext(ctx, `SELECT stage, version FROM secret_stages WHERE secret = ?`, secret)
	if err != nil {
		return nil, fmt.Errorf("get stages %q: %w", secret, o.translate(err))
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
		return nil, fmt.Errorf("get stages %q: %w", secret, o.translate(err))
	}
	return m, nil
}
