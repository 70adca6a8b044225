package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/store/sqlite"
)

// backupResult is what backup and its subcommands print with -o json.
type backupResult struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256,omitempty"`
	sqlite.SnapshotInfo
}

func (a *app) backupCmd() *cobra.Command {
	var (
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "backup --out FILE [--force]",
		Short: "Save a consistent snapshot of the daemon's store; verify or restore one",
		Long: `rotary backup --out FILE asks the daemon for a consistent snapshot of its
SQLite store (GET /v1/backup; the token needs admin on system "backup", which
the root token has) and writes it to FILE: mode 0600, through a temporary file
that is synced, checked (rotary backup verify) and renamed into place, so FILE
is either a whole, verified snapshot or not there. An existing FILE is refused
unless --force. Writes go on while the snapshot is taken; it is the state of
one instant.

The snapshot holds secrets only sealed under master keys that the root key
wraps, so it is useless without the root key, and the two together open every
secret: keep the root key as safely as the backup, but not in the same place.

On PostgreSQL the daemon answers with the pg_dump command that backs it up.

Restore: stop the daemon, "rotary backup restore FILE --data-dir DIR" (or
--to PATH, the config's store.sqlite), put the root key in place, start.`,
		Example: `  rotary backup --out /var/backups/rotary/rotary-$(date +%F).db
  rotary backup verify /var/backups/rotary/rotary-2026-01-02.db
  rotary backup restore rotary-2026-01-02.db --to /var/lib/rotary/rotary.db`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("--out: required: the file to write the snapshot to")
			}
			return a.backup(cmd.Context(), out, force)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the snapshot to (mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	cmd.AddCommand(a.backupVerifyCmd(), a.backupRestoreCmd())
	return cmd
}

func (a *app) backup(ctx context.Context, out string, force bool) error {
	if fi, err := os.Stat(out); err == nil {
		if fi.IsDir() {
			return usageErrorf("--out: %s is a folder; name the file to write", out)
		}
		if !force {
			return usageErrorf("--out: %s exists; give --force to replace it", out)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return usageErrorf("--out: %v", err)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	var info client.BackupInfo
	res, err := placeSnapshot(ctx, out, force, func(w io.Writer) error {
		info, err = c.Backup(ctx, w)
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotImplemented {
			return exitError{code: exitFailure, msg: "backup: " + ae.Message}
		}
		return err
	})
	if err != nil {
		return err
	}
	res.SHA256 = info.SHA256
	if a.json() {
		return printJSON(a.stdout, res)
	}
	fmt.Fprintf(a.stdout, "Wrote %s (%d bytes, sha256 %s): %s.\n", out, res.Bytes, res.SHA256, snapshotSummary(res.SnapshotInfo))
	fmt.Fprintln(a.stdout, "It opens only with this daemon's root key: keep the key safe, and apart from the backup.")
	return nil
}

// placeSnapshot writes a snapshot through fill into a temporary 0600 file
// beside path, syncs and verifies it, and moves it to path: replacing
// path only when replace is set (otherwise a file that appeared meanwhile
// is not touched), then syncs the folder. On any error path is as it was.
func placeSnapshot(ctx context.Context, path string, replace bool, fill func(io.Writer) error) (backupResult, error) {
	res := backupResult{File: path}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return res, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return res, err
	}
	if err := fill(f); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	info, err := sqlite.VerifySnapshot(ctx, tmp)
	if err != nil {
		return res, fmt.Errorf("the snapshot received does not verify, nothing written to %s: %w", path, err)
	}
	res.SnapshotInfo = info
	if replace {
		err = os.Rename(tmp, path)
	} else {
		// A hard link never replaces what is there.
		if err = os.Link(tmp, path); err == nil {
			err = os.Remove(tmp)
		} else if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%s appeared while the snapshot was written; not replaced", path)
		}
	}
	if err != nil {
		return res, err
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return res, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return res, fmt.Errorf("sync %s: %w", dir, err)
	}
	return res, nil
}

func snapshotSummary(i sqlite.SnapshotInfo) string {
	return fmt.Sprintf("schema version %d, %d secrets (%d more scheduled for deletion), %d versions, %d master keys, %d tokens, %d audit records in %d chains",
		i.SchemaVersion, i.Secrets, i.DeletedSecrets, i.Versions, i.Keys, i.Tokens, i.AuditRecords, i.AuditChains)
}

func (a *app) backupVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a snapshot file without a daemon or the root key",
		Long: `Check a snapshot made by rotary backup, read only, without a daemon and
without the root key: that it is a whole SQLite file (a truncated copy is
named as such), SQLite's integrity check, a schema version this binary can
run, every table of a rotary store, the root key check value, and every audit
chain complete up to its head. Exit 0 when it passes, 1 naming the problem
otherwise. The audit records' keyed hashes need the root key: run
"rotary audit verify" on a daemon started on the restored file.`,
		Example: `  rotary backup verify rotary-2026-01-02.db`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := verifySnapshotFile(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, backupResult{File: args[0], SnapshotInfo: info})
			}
			fmt.Fprintf(a.stdout, "%s: ok: %s.\n", args[0], snapshotSummary(info))
			return nil
		},
	}
}

// verifySnapshotFile runs sqlite.VerifySnapshot with errors that name the
// file once.
func verifySnapshotFile(ctx context.Context, path string) (sqlite.SnapshotInfo, error) {
	info, err := sqlite.VerifySnapshot(ctx, path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return info, usageErrorf("%s: no such file", path)
	case errors.Is(err, sqlite.ErrBadSnapshot):
		return info, fmt.Errorf("%s: %w", path, err)
	case err != nil:
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

func (a *app) backupRestoreCmd() *cobra.Command {
	var to, dataDir string
	cmd := &cobra.Command{
		Use:   "restore FILE (--to PATH | --data-dir DIR)",
		Short: "Put a verified snapshot in place as a store, for a stopped daemon",
		Long: `Verify FILE (as rotary backup verify does), then copy it to PATH (the
config's store.sqlite) or DIR/rotary.db (the store of "rotary server --dev
--data-dir DIR"): mode 0600, through a synced temporary file renamed into
place. It never replaces a store: if PATH (or its -wal or -shm file) exists it
refuses, so a live store is never overwritten; stop its daemon and move the
old files away first. It works on files only and needs no daemon.

Then give the daemon the root key of the daemon the backup came from (the
config's root_key, or DIR/root.key for --dev) and start it. A daemon started
with another root key refuses to start ("root key: …") and changes nothing.`,
		Example: `  rotary backup restore rotary-2026-01-02.db --to /var/lib/rotary/rotary.db
  rotary backup restore rotary-2026-01-02.db --data-dir .rotary-dev
  cp saved/root.key .rotary-dev/root.key && rotary server --dev --data-dir .rotary-dev`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case to == "" && dataDir == "":
				return usageErrorf("restore: give --to PATH (the store file) or --data-dir DIR (a --dev data folder)")
			case to != "" && dataDir != "":
				return usageErrorf("--to and --data-dir are mutually exclusive")
			case dataDir != "":
				if err := os.MkdirAll(dataDir, 0o700); err != nil {
					return usageErrorf("--data-dir: %v", err)
				}
				to = filepath.Join(dataDir, "rotary.db")
			}
			for _, p := range []string{to, to + "-wal", to + "-shm"} {
				if _, err := os.Lstat(p); err == nil {
					return exitError{code: exitFailure, msg: fmt.Sprintf("restore: %s exists: rotary never replaces a store; stop its daemon and move %s (and its -wal and -shm files) away first", p, to)}
				} else if !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			if _, err := verifySnapshotFile(cmd.Context(), args[0]); err != nil {
				return err
			}
			src, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			res, err := placeSnapshot(cmd.Context(), to, false, func(w io.Writer) error {
				_, err := io.Copy(w, src)
				return err
			})
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "Restored %s to %s: %s.\n", args[0], to, snapshotSummary(res.SnapshotInfo))
			if dataDir != "" {
				key := filepath.Join(dataDir, "root.key")
				if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
					fmt.Fprintf(a.stdout, "Now copy the root key of the daemon the backup came from to %s (chmod 600): without it --dev makes a new key, which cannot open this store.\n", key)
				}
				fmt.Fprintf(a.stdout, "Start: rotary server --dev --data-dir %s\n", dataDir)
			} else {
				fmt.Fprintln(a.stdout, "Start the daemon with store.sqlite set to it and the root key of the daemon the backup came from.")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the store file to create (the config's store.sqlite)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a --dev data folder: the store becomes DIR/rotary.db")
	return cmd
}
