// Package sqlite is the embedded store.Store backend, built on
// modernc.org/sqlite (pure Go, no cgo).
//
// One database file holds everything. The file is opened in WAL mode with
// two connection pools: a single-connection write pool whose transactions
// are IMMEDIATE (they take SQLite's write lock when they begin, so
// read-then-write sequences such as claims and audit appends serialize
// without SQLITE_BUSY upgrades), and a read pool of several query-only
// connections that read concurrently from WAL snapshots. Every method of
// Store outside InTx that writes runs on the write pool; plain reads go to
// the read pool. Inside InTx every operation, reads included, runs on the
// transaction.
//
// Times are stored as INTEGER unix microseconds in UTC and come back as UTC
// time.Time values exact to the microsecond (finer digits are dropped);
// durations are INTEGER nanoseconds. Names sort in byte order (BINARY
// collation).
//
// Because the write pool has one connection, fn passed to InTx must use the
// tx it is given: a write through the Store itself from inside fn would
// wait for the connection fn is holding.
//
// The operations are written once for both SQL backends in
// store/internal/sqlops; this package has the connections, transactions,
// migrations, the statement cache and SQLite's dialect (dialect.go): the
// time encoding, GLOB and byte-range matches, and the claims, each one
// UPDATE statement under the single write lock.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlcol"
	"github.com/rotary-secrets/rotary/store/internal/sqlops"
)

// busyTimeout is how long a connection waits for another process's write
// lock before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a store.Store on one SQLite database file.
type Store struct {
	*ops
	path string  // the database file (Snapshot writes beside it)
	wdb  *sql.DB // one connection, IMMEDIATE transactions
	rdb  *sql.DB // several query-only connections

	wstmts, rstmts *stmtCache

	// The checkpointer copies the WAL back into the database file in the
	// background, so that no commit pays for a checkpoint's fsyncs.
	cdb       *sql.DB
	stopCkpt  chan struct{}
	closeOnce sync.Once
	ckptDone  chan struct{}
}

// checkpointEvery is how often the background checkpointer runs.
const checkpointEvery = 250 * time.Millisecond

var _ store.Store = (*Store)(nil)

// ops is store.Ops, written once for both SQL backends over this
// backend's dialect.
type ops = sqlops.Ops

// Open opens (creating it with mode 0600 if needed) the SQLite database at
// path and applies pending migrations. path is a file name; ":memory:" and
// names containing '?' are refused because the read and write pools must
// reach the same file.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: open %q: need a plain file path", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	bt := strconv.FormatInt(busyTimeout.Milliseconds(), 10)
	wdsn := path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(" + bt + ")" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=wal_autocheckpoint(0)"
	wdb, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)

	if err := migrateWhenFree(ctx, wdb); err != nil {
		wdb.Close()
		return nil, err
	}

	rdsn := path + "?_pragma=busy_timeout(" + bt + ")" +
		"&_pragma=foreign_keys(1)" +
		"&_query_only=1"
	rdb, err := sql.Open("sqlite", rdsn)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	if err := rdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	cdb, err := sql.Open("sqlite", path+"?_pragma=busy_timeout("+bt+")")
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	cdb.SetMaxOpenConns(1)

	s := &Store{path: path, wdb: wdb, rdb: rdb, cdb: cdb, wstmts: newStmtCache(wdb), rstmts: newStmtCache(rdb),
		stopCkpt: make(chan struct{}), ckptDone: make(chan struct{})}
	s.ops = sqlops.New(dialect{}, pools{s})
	go s.checkpointer()
	return s, nil
}

// checkpointer runs passive WAL checkpoints: they never block readers or
// the writer, and a commit never has to run one itself (the write
// connection's automatic checkpoints are off).
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopCkpt:
			_, _ = s.cdb.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
			return
		case <-t.C:
			_, _ = s.cdb.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// Dialect reports "sqlite".
func (s *Store) Dialect() string { return "sqlite" }

// Close closes both connection pools.
func (s *Store) Close() error {
	if s == nil {
		return nil // what a failed Open returns
	}
	s.closeOnce.Do(func() {
		close(s.stopCkpt)
		<-s.ckptDone
	})
	s.rstmts.close()
	s.wstmts.close()
	return errors.Join(s.rdb.Close(), s.wdb.Close(), s.cdb.Close())
}

// InTx runs fn in one IMMEDIATE transaction on the write connection. It
// rolls back when fn returns an error or panics (and re-panics).
func (s *Store) InTx(ctx context.Context, fn func(tx store.Ops) error) (err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tx.Rollback()
		}
		s.wstmts.preparePending(ctx)
	}()
	if err := fn(sqlops.WithTx(s.ops, txQuerier{tx: tx, c: s.wstmts})); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", translate(err))
	}
	return nil
}

// translate maps driver errors to store sentinels. Constraint errors carry
// only table and column names, never values, but are replaced anyway.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case isCode(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
		return store.ErrConflict
	}
	return err
}

// isFK reports a foreign-key violation.
func isFK(err error) bool {
	return isCode(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY)
}

func isCode(err error, codes ...int) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.Code() == c {
			return true
		}
	}
	return false
}

// --- migrations ---

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrateWhenFree runs migrate, trying again for up to busyTimeout while
// another process holds the file. SQLite does not always wait by itself: a
// connection that meets the file while another one turns it to WAL mode gets
// SQLITE_BUSY at once, whatever its busy timeout.
func migrateWhenFree(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := migrate(ctx, db)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// migrate applies pending migrations in one IMMEDIATE transaction, so two
// processes opening the same file at once apply them once.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := sqlcol.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if latest := ms[len(ms)-1].Version; cur > latest {
		return fmt.Errorf("sqlite: migrate: database schema version %d is newer than this binary's %d", cur, latest)
	}
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("sqlite: migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("sqlite: migrate: %s: %w", m.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate: commit: %w", err)
	}
	return nil
}

// --- value helpers ---

// ta converts a time to its column value: unix microseconds.
func ta(t time.Time) any { return t.UnixMicro() }
