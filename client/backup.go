package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// The answer of GET /v1/backup: a SQLite database file, its length in
// Content-Length and its SHA-256 (hex) in BackupSHA256Header.
const (
	BackupContentType  = "application/vnd.sqlite3"
	BackupSHA256Header = "X-Rotary-Backup-Sha256"
)

// BackupInfo describes a snapshot Backup received whole.
type BackupInfo struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ErrBackupIncomplete: the snapshot stream ended early or its bytes do not
// match the SHA-256 the server announced. What was written is unusable.
var ErrBackupIncomplete = errors.New("backup incomplete")

// Backup asks the daemon for a consistent snapshot of its store (GET
// /v1/backup; admin on system "backup") and writes it to w. It returns
// only once every byte arrived and the SHA-256 matched; otherwise the error
// wraps ErrBackupIncomplete and w holds an unusable partial copy. A daemon
// on PostgreSQL answers 501 (an *APIError whose message gives the pg_dump
// command). The client's overall timeout does not apply: a large snapshot
// takes as long as it takes; cancel ctx to stop.
func (c *Client) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/backup", nil, nil)
	if err != nil {
		return BackupInfo{}, err
	}
	req.Header.Set("Accept", BackupContentType)
	hc := *c.hc
	hc.Timeout = 0
	resp, err := c.sendWith(&hc, req)
	if err != nil {
		return BackupInfo{}, err
	}
	defer resp.Body.Close()
	want := resp.Header.Get(BackupSHA256Header)
	if resp.ContentLength < 0 || want == "" {
		return BackupInfo{}, fmt.Errorf("%w: the server sent no length or checksum (is %s a rotary daemon?)", ErrBackupIncomplete, c.addr)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return BackupInfo{}, ctxErr
	}
	if err != nil { // the stream broke, or w refused a write
		return BackupInfo{}, fmt.Errorf("%w: after %d of %d bytes: %v", ErrBackupIncomplete, n, resp.ContentLength, err)
	}
	if n != resp.ContentLength {
		return BackupInfo{}, fmt.Errorf("%w: the stream ended after %d of %d bytes", ErrBackupIncomplete, n, resp.ContentLength)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return BackupInfo{}, fmt.Errorf("%w: SHA-256 of what arrived is %s, the server announced %s", ErrBackupIncomplete, got, want)
	}
	return BackupInfo{Bytes: n, SHA256: got}, nil
}
