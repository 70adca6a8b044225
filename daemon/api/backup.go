package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/store"
)

// snapshotter is a store that can copy itself consistently while the
// daemon runs: store/sqlite.
type snapshotter interface {
	// Snapshot returns an unlinked file holding a consistent copy of the
	// store, positioned at its start; the caller closes it.
	Snapshot(ctx context.Context) (*os.File, error)
}

// dumpAdviser is a store that rotary does not copy itself but can say
// how to (store/postgres: the pg_dump command line, without credentials).
type dumpAdviser interface {
	DumpCommand(ctx context.Context) (string, error)
}

func (s *Server) backupRoutes() {
	s.handle("GET /v1/backup", s.backup)
}

// backup streams a consistent snapshot of the SQLite store (GET
// /v1/backup). It needs admin on system "backup", which only the root
// policy and explicit grants give. The request is audited, with the
// snapshot's size and SHA-256, before the first byte is sent; the
// snapshot's contents never reach the log. Content-Length and the
// X-Rotary-Backup-Sha256 header let the client prove it got every byte.
// On PostgreSQL the answer is 501 with the pg_dump command to run.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, auth.SystemBackup, "snapshot"); err != nil {
		return err
	}
	ri := info(r)
	sn, ok := s.st.(snapshotter)
	if !ok {
		return s.noSnapshot(r)
	}
	f, err := sn.Snapshot(r.Context())
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("backup: read snapshot: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: read snapshot: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	// Record the request before streaming: the stream is the answer.
	ri.detail = fmt.Sprintf("%d bytes, sha256 %s", size, sum)
	if err := s.audit.Append(r.Context(), store.AuditRecord{
		Time: s.now().UTC(), TokenID: ri.tokenID, Action: ri.action, Target: ri.target,
		Result: "ok", RequestID: ri.id, Detail: ri.detail,
	}); err != nil {
		return err
	}
	ri.audited = true
	hd := w.Header()
	hd.Set("Content-Type", client.BackupContentType)
	hd.Set("Content-Length", strconv.FormatInt(size, 10))
	hd.Set(client.BackupSHA256Header, sum)
	hd.Set("Content-Disposition", `attachment; filename="rotary-`+s.now().UTC().Format("20060102T150405Z")+`.db"`)
	hd.Set("Cache-Control", "no-store")
	out := w.(*bufferedWriter).beginStream(http.StatusOK)
	// The server's write timeout bounds ordinary answers; a large
	// snapshot gets a fresh deadline for every chunk instead.
	rc := http.NewResponseController(out)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
			if _, err := out.Write(buf[:n]); err != nil {
				s.log.Warn("backup: client went away during the stream", "request_id", ri.id, "err", err)
				return nil
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			// The client sees a short body against Content-Length.
			s.log.Error("backup: read snapshot", "request_id", ri.id, "err", rerr)
			return nil
		}
	}
}

// noSnapshot answers a backup request on a store rotary cannot copy
// itself: 501, with the command that backs it up.
func (s *Server) noSnapshot(r *http.Request) error {
	msg := fmt.Sprintf("the %s store is not copied by rotary backup", s.st.Dialect())
	if da, ok := s.st.(dumpAdviser); ok {
		cmd, err := da.DumpCommand(r.Context())
		if err != nil {
			return err
		}
		msg = "the store is PostgreSQL, which rotary backup does not copy: back it up with " + cmd +
			" (one consistent snapshot, taken while daemons run; add the password the way you give it to psql) and keep the root key with it; see the README, Backup and restore"
	}
	return &httpError{status: http.StatusNotImplemented, msg: msg}
}
