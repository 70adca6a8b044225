package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
	"github.com/rotary-secrets/rotary/store/internal/sqlcol"
	"github.com/rotary-secrets/rotary/store/internal/sqlops"
)

// PostgreSQL error codes the backend acts on.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// maxTxAttempts bounds how often InTx runs fn when PostgreSQL reports a
// serialization failure or a deadlock.
const maxTxAttempts = 5

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	*ops
	db       *sql.DB
	dsn      string    // for the change listener's own connection (notify.go)
	notifier *notifier // sends the change notices of committed transactions (notifier.go)
}

var _ store.Store = (*Store)(nil)

// ops is store.Ops, written once for both SQL backends over this
// backend's dialect.
type ops = sqlops.Ops

// Open connects to PostgreSQL with a lib/pq DSN (URL or key=value form)
// and applies pending migrations to the first schema on the search_path.
// Unknown DSN parameters such as search_path are passed to the server as
// run-time parameters.
//
// Errors never contain the DSN's password: lib/pq and net/url quote the
// DSN when it does not parse.
func Open(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", sensitive.Sanitize(err, dsnSecrets(dsn)...))
	}
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: open: %w", sensitive.Sanitize(err, dsnSecrets(dsn)...))
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, dsn: dsn}
	s.notifier = newNotifier(db, func() []sensitive.Bytes { return dsnSecrets(dsn) })
	s.ops = sqlops.New(dialect{}, pool{db: db, n: s.notifier})
	return s, nil
}

var (
	urlPassword = regexp.MustCompile(`^[a-zA-Z]+://[^:/@]*:([^@]*)@`)
	kvPassword  = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
)

// dsnSecrets returns what an error about dsn must not show: the DSN as a
// whole and its password, in URL or key=value form.
func dsnSecrets(dsn string) []sensitive.Bytes {
	out := []sensitive.Bytes{sensitive.Bytes(dsn)}
	if m := urlPassword.FindStringSubmatch(dsn); m != nil {
		out = append(out, sensitive.Bytes(m[1]))
		if u, err := url.PathUnescape(m[1]); err == nil && u != m[1] {
			out = append(out, sensitive.Bytes(u))
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		out = append(out, sensitive.Bytes(m[1]), sensitive.Bytes(strings.Trim(m[1], "'")))
	}
	return out
}

// Dialect reports "postgres".
func (s *Store) Dialect() string { return "postgres" }

// SetLogger sets where the store logs what it cannot report to a caller
// (a change notice that failed to go out after its commit).
func (s *Store) SetLogger(l *slog.Logger) {
	if l != nil {
		s.notifier.mu.Lock()
		s.notifier.log = l
		s.notifier.mu.Unlock()
	}
}

// Close sends the change notices still queued and closes the connection
// pool. A nil *Store (what a failed Open returns) closes as a no-op.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	s.notifier.close()
	return s.db.Close()
}

// InTx runs fn in one READ COMMITTED transaction. It rolls back when fn
// returns an error or panics (and re-panics). When PostgreSQL aborts the
// transaction with a serialization failure or a deadlock, InTx rolls back
// and runs fn again, up to maxTxAttempts times, so fn must be safe to
// repeat: it should only touch the database through tx.
func (s *Store) InTx(ctx context.Context, fn func(tx store.Ops) error) error {
	for attempt := 1; ; attempt++ {
		err := s.inTx(ctx, fn)
		if err == nil || attempt >= maxTxAttempts || !retryable(err) {
			return err
		}
		backoff := time.Duration(attempt*attempt)*5*time.Millisecond + rand.N(5*time.Millisecond)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

func (s *Store) inTx(ctx context.Context, fn func(tx store.Ops) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tx.Rollback()
		}
	}()
	var changes []change
	if err := fn(sqlops.WithTx(s.ops, txQuerier{tx: tx, changes: &changes})); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit: %w", translate(err))
	}
	// Committed: the other daemons learn of it by the notice, sent by
	// the notifier in a batch with other transactions' (see notifier.go).
	s.notifier.sendAndWait(ctx, changes)
	return nil
}

func retryable(err error) bool {
	return pq.As(err, codeSerializationFailure, codeDeadlockDetected) != nil
}

// translate maps driver errors to store sentinels. A unique violation's
// message names only the constraint (values are in the detail, which is
// never used), but it is replaced by ErrConflict anyway.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case pq.As(err, codeUniqueViolation) != nil:
		return store.ErrConflict
	}
	return err
}

// isFK reports a foreign-key violation.
func isFK(err error) bool {
	return pq.As(err, codeForeignKeyViolation) != nil
}

// --- migrations ---

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrate applies pending migrations to current_schema(). A session-level
// advisory lock keyed on the schema name serializes daemons that start at
// the same time; each migration commits with its schema_migrations row.
func migrate(ctx context.Context, db *sql.DB) (err error) {
	ms, err := sqlcol.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Close()

	var schema sql.NullString
	if err := conn.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if !schema.Valid {
		return errors.New("postgres: migrate: no existing schema on the search_path")
	}
	const lockKey = `hashtextextended('rotary.migrate.' || current_schema(), 0)`
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+lockKey+`)`); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		// Unlock even if ctx is done; closing the session would release it too.
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, `SELECT pg_advisory_unlock(`+lockKey+`)`); uerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // drop the session, releasing the lock
			err = errors.Join(err, fmt.Errorf("postgres: migrate: unlock: %w", uerr))
		}
	}()

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	var cur int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if latest := ms[len(ms)-1].Version; cur > latest {
		return fmt.Errorf("postgres: migrate: schema %s is at version %d, newer than this binary's %d", schema.String, cur, latest)
	}
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("postgres: migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("postgres: migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			tx.Rollback()
			return fmt.Errorf("postgres: migrate: %s: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("postgres: migrate: %s: %w", m.Name, err)
		}
	}
	return nil
}

// --- value helpers ---

// ta converts a time to its column value: UTC, truncated to microseconds
// (PostgreSQL would round).
func ta(t time.Time) any { return t.Truncate(time.Microsecond).UTC() }

// lim converts a limit where 0 (or less) means none: LIMIT NULL.
func lim(n int) any {
	if n <= 0 {
		return nil
	}
	return n
}
