// Package sqlcol holds what both SQL store backends share: column
// scanners and argument helpers (blobs, nullable text, the stage list,
// JSON columns, times) and the loading of versioned
// migrations. Times are written differently by the backends (SQLite keeps
// INTEGER unix microseconds, PostgreSQL timestamptz; see each Dialect),
// and the time scanners read both.
package sqlcol

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/store"
)

// MustAffect turns "no row changed" into ErrNotFound.
func MustAffect(res sql.Result, format string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	if n == 0 {
		return fmt.Errorf(format+": %w", append(args, store.ErrNotFound)...)
	}
	return nil
}

// AliasArg passes an alias; "" is NULL (no alias).
func AliasArg(a string) any {
	if a == "" {
		return nil
	}
	return a
}

// NullString scans a nullable text column into a string ("" for NULL).
type NullString struct{ P *string }

func (c NullString) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.P = ""
	case string:
		*c.P = v
	case []byte:
		*c.P = string(v)
	default:
		return fmt.Errorf("text column: unexpected %T", src)
	}
	return nil
}

// Stages scans the char(31)-joined stage list, sorted.
type Stages struct{ P *[]string }

func (c Stages) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case nil:
		*c.P = nil
		return nil
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("stages column: unexpected %T", src)
	}
	st := strings.Split(s, "\x1f")
	sort.Strings(st)
	*c.P = st
	return nil
}

// JSON scans a JSON text column into a map or slice; NULL or an empty
// document leaves the zero value.
type JSON[T any] struct{ P *T }

func (c JSON[T]) Scan(src any) error {
	var zero T
	var b []byte
	switch v := src.(type) {
	case nil:
		*c.P = zero
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("json column: unexpected %T", src)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("json column: %w", err)
	}
	*c.P = v
	return nil
}

// JSONArg encodes v, or NULL when empty.
func JSONArg(v any, empty bool) (any, error) {
	if empty {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// SecretJSON encodes a secret's tags and metadata.
func SecretJSON(s store.Secret) (tags, meta any, err error) {
	if tags, err = JSONArg(s.Tags, len(s.Tags) == 0); err != nil {
		return nil, nil, err
	}
	if meta, err = JSONArg(s.Metadata, len(s.Metadata) == 0); err != nil {
		return nil, nil, err
	}
	return tags, meta, nil
}

// Bytes scans a blob column, leaving nil for NULL and copying the bytes.
type Bytes struct{ P *[]byte }

func (c Bytes) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		*c.P = append([]byte(nil), v...)
		return nil
	case string:
		*c.P = []byte(v)
		return nil
	case nil:
		*c.P = nil
		return nil
	}
	return fmt.Errorf("blob column: unexpected %T", src)
}

// BytesArg passes a blob; nil stays NULL.
func BytesArg(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// Time scans a NOT NULL time column as UTC: SQLite's INTEGER unix
// microseconds or PostgreSQL's timestamptz. NULL is the zero time.
type Time struct{ P *time.Time }

func (c Time) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*c.P = time.UnixMicro(v).UTC()
		return nil
	case time.Time:
		*c.P = v.UTC()
		return nil
	case nil:
		*c.P = time.Time{}
		return nil
	}
	return fmt.Errorf("time column: unexpected %T", src)
}

// NullTime scans a nullable time column like Time; NULL is nil.
type NullTime struct{ P **time.Time }

func (c NullTime) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		t := time.UnixMicro(v).UTC()
		*c.P = &t
		return nil
	case time.Time:
		t := v.UTC()
		*c.P = &t
		return nil
	case nil:
		*c.P = nil
		return nil
	}
	return fmt.Errorf("time column: unexpected %T", src)
}
