package sqlite

// Backups.
//
// Snapshot copies the database with VACUUM INTO, which reads the source
// inside one read transaction: the copy is exactly the committed state at
// the moment the transaction began, however many writers commit while it
// runs (WAL readers never block the writer, nor the writer them). The copy
// is written into a fresh 0700 folder beside the database, as a file
// created 0600 before SQLite opens it (SQLite keeps the mode of a file it
// did not create), opened, and unlinked at once: the caller holds the only
// reference, and nothing is left on disk when it closes the file or the
// process dies after Snapshot returned. A process killed inside VACUUM INTO
// leaves the folder; the next Snapshot removes such leftovers once they are
// an hour old.
//
// VerifySnapshot checks a snapshot file without the root key: the SQLite
// header (a truncated file is named as such), PRAGMA integrity_check, the
// schema version against this binary's migrations, the tables and the
// root key check value a daemon's store has, and that every audit chain
// has its records 1..head and nothing past its head. Whether the records'
// hashes are right needs the key derived from the root key: `rotary audit
// verify` on a daemon started on the restored file checks that.

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/store/internal/sqlcol"
)

// backupDirPattern names Snapshot's temporary folders (beside the
// database, hidden).
func backupDirPattern(db string) string { return "." + filepath.Base(db) + ".backup-" }

// staleBackupAge is how old a leftover snapshot folder must be before a
// later Snapshot removes it (a snapshot of a large store may take a while).
const staleBackupAge = time.Hour

// Snapshot returns a consistent copy of the database as an open, already
// unlinked file positioned at its start (mode 0600 while it had a name).
// The caller reads it and closes it. The copy holds what the database
// holds: secrets only as envelopes sealed under master keys that the root
// key wraps, but token hashes, metadata and the audit log in the clear.
func (s *Store) Snapshot(ctx context.Context) (*os.File, error) {
	dir := filepath.Dir(s.path)
	removeStaleBackups(dir, backupDirPattern(s.path))
	tmp, err := os.MkdirTemp(dir, backupDirPattern(s.path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "snapshot.db")
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	// A connection of its own (the read pool's are query-only, which
	// refuses VACUUM INTO): it only reads the database, so the writer and
	// the checkpointer go on meanwhile.
	db, err := sql.Open("sqlite", s.path+"?_pragma=busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, dst)
	db.Close()
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: vacuum into: %w", err)
	}
	f, err = os.Open(dst)
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	if err := os.Remove(dst); err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	return f, nil
}

func removeStaleBackups(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleBackupAge {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// SnapshotInfo is what VerifySnapshot found in a snapshot.
type SnapshotInfo struct {
	Bytes          int64 `json:"bytes"`
	SchemaVersion  int   `json:"schema_version"`
	BinarySchema   int   `json:"binary_schema_version"` // the newest this binary knows
	Secrets        int64 `json:"secrets"`
	DeletedSecrets int64 `json:"deleted_secrets"` // scheduled for deletion, restorable
	Versions       int64 `json:"versions"`
	Keys           int64 `json:"keys"`
	Tokens         int64 `json:"tokens"`
	AuditChains    int64 `json:"audit_chains"`
	AuditRecords   int64 `json:"audit_records"`
}

// ErrBadSnapshot is the error of every snapshot VerifySnapshot rejects;
// the message says what is wrong with it.
var ErrBadSnapshot = errors.New("not a usable rotary backup")

func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
}

// snapshotTables are the tables every rotary store has.
var snapshotTables = []string{
	"schema_migrations", "meta", "regions", "master_keys", "key_versions", "secrets", "secret_versions",
	"secret_stages", "rotations", "tokens", "policies", "audit", "audit_heads",
}

// metaRootCheck is the meta row of the root key's check value (package
// kms, MetaRootCheck; the store does not import kms).
const metaRootCheck = "kms.root_check"

// VerifySnapshot checks the SQLite file at path as a rotary store, read
// only, without the root key (see the comment at the top of this file).
// Errors about the file wrap ErrBadSnapshot.
func VerifySnapshot(ctx context.Context, path string) (SnapshotInfo, error) {
	var info SnapshotInfo
	fi, err := os.Stat(path)
	if err != nil {
		return info, err
	}
	if !fi.Mode().IsRegular() {
		return info, badSnapshot("%s is not a regular file", path)
	}
	info.Bytes = fi.Size()
	// A snapshot is one self-contained file. Beside a -wal file it is a
	// live store, or a copy made without its WAL, which lacks the newest
	// commits: read alone, it would look fine.
	if wal, err := os.Stat(path + "-wal"); err == nil && wal.Size() > 0 {
		return info, badSnapshot("%s-wal exists: %s is a live store or a copy without its write-ahead log; take a snapshot with rotary backup", path, path)
	}
	if err := checkHeader(path, fi.Size()); err != nil {
		return info, err
	}
	ms, err := sqlcol.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return info, err
	}
	info.BinarySchema = ms[len(ms)-1].Version

	// immutable: no locks, no -wal or -shm files, nothing written.
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: "mode=ro&immutable=1"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return info, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check(20)`)
	if err != nil {
		return info, badSnapshot("integrity check: %v", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return info, badSnapshot("integrity check: %v", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Close(); err != nil {
		return info, badSnapshot("integrity check: %v", err)
	}
	if err := rows.Err(); err != nil {
		return info, badSnapshot("integrity check: %v", err)
	}
	if len(problems) > 0 {
		return info, badSnapshot("integrity check failed: %s", strings.Join(problems, "; "))
	}

	for _, t := range snapshotTables {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, t).Scan(&n); err != nil {
			return info, badSnapshot("read schema: %v", err)
		}
		if n == 0 {
			return info, badSnapshot("table %s is missing: not a rotary store", t)
		}
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&info.SchemaVersion); err != nil {
		return info, badSnapshot("schema version: %v", err)
	}
	if info.SchemaVersion > info.BinarySchema {
		return info, badSnapshot("schema version %d is newer than this binary's %d: restore it with the rotary that wrote it", info.SchemaVersion, info.BinarySchema)
	}
	var check []byte
	switch err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, metaRootCheck).Scan(&check); {
	case errors.Is(err, sql.ErrNoRows):
		return info, badSnapshot("no root key check value: no daemon ever started on this store")
	case err != nil:
		return info, badSnapshot("meta: %v", err)
	}

	counts := []struct {
		q   string
		dst *int64
	}{
		{`SELECT count(*) FROM secrets WHERE deleted_at IS NULL`, &info.Secrets},
		{`SELECT count(*) FROM secrets WHERE deleted_at IS NOT NULL`, &info.DeletedSecrets},
		{`SELECT count(*) FROM secret_versions`, &info.Versions},
		{`SELECT count(*) FROM master_keys`, &info.Keys},
		{`SELECT count(*) FROM tokens`, &info.Tokens},
		{`SELECT count(*) FROM audit_heads`, &info.AuditChains},
		{`SELECT count(*) FROM audit`, &info.AuditRecords},
	}
	for _, c := range counts {
		if err := db.QueryRowContext(ctx, c.q).Scan(c.dst); err != nil {
			return info, badSnapshot("count: %v", err)
		}
	}
	if err := checkAuditShape(ctx, db); err != nil {
		return info, err
	}
	return info, nil
}

// checkHeader reads the 100-byte SQLite header: the magic string, and the
// page size times the page count against the file's size, which catches a
// truncated copy before SQLite reads it.
func checkHeader(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var h [100]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return badSnapshot("%s has %d bytes, less than a SQLite header", path, size)
	}
	if string(h[:16]) != "SQLite format 3\x00" {
		return badSnapshot("%s is not a SQLite database (no SQLite header)", path)
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(binary.BigEndian.Uint32(h[28:32]))
	// The page count is valid when the "version valid for" number equals
	// the change counter (every SQLite since 3.7.0 keeps them equal).
	if binary.BigEndian.Uint32(h[92:96]) == binary.BigEndian.Uint32(h[24:28]) && pages > 0 {
		if want := pages * pageSize; size < want {
			return badSnapshot("%s is truncated: %d bytes, its header says %d pages of %d bytes (%d bytes)", path, size, pages, pageSize, want)
		}
	}
	return nil
}

// checkAuditShape checks that every chain with a head row has exactly its
// records 1..head, and that no record belongs to a chain without a head:
// the structure of the log, which needs no key.
func checkAuditShape(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `
		SELECT h.chain, h.seq, COUNT(a.seq), COALESCE(MIN(a.seq), 0), COALESCE(MAX(a.seq), 0)
		FROM audit_heads h LEFT JOIN audit a ON a.chain = h.chain
		GROUP BY h.chain, h.seq ORDER BY h.chain`)
	if err != nil {
		return badSnapshot("audit heads: %v", err)
	}
	defer rows.Close()
	anchors := false
	for rows.Next() {
		var chain, head, n, lo, hi int64
		if err := rows.Scan(&chain, &head, &n, &lo, &hi); err != nil {
			return badSnapshot("audit heads: %v", err)
		}
		if n != head || (n > 0 && (lo != 1 || hi != head)) {
			return badSnapshot("audit chain %d: its head says %d records, the file has %d (seq %d..%d)", chain, head, n, lo, hi)
		}
		if chain == 1 {
			anchors = true
		}
	}
	if err := rows.Err(); err != nil {
		return badSnapshot("audit heads: %v", err)
	}
	if !anchors {
		return badSnapshot("audit: the anchor chain's head row is missing")
	}
	var orphan int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM audit WHERE chain NOT IN (SELECT chain FROM audit_heads)`).Scan(&orphan); err != nil {
		return badSnapshot("audit: %v", err)
	}
	if orphan > 0 {
		return badSnapshot("audit: %d records belong to chains without a head row", orphan)
	}
	return nil
}
