package postgres_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDumpCommand runs the pg_dump command the store advises, as given,
// and checks that the dump holds the store's schema; the DSN's password is
// never part of the command.
func TestDumpCommand(t *testing.T) {
	if _, err := exec.LookPath("pg_dump"); err != nil {
		t.Fatalf("pg_dump is needed for this test (Debian: postgresql-client): %v", err)
	}
	schema, dsn := freshSchema(t)
	const password = "pw-never-in-the-command"
	withPW := strings.Replace(dsn, "postgres@", "postgres:"+password+"@", 1)
	if withPW == dsn {
		withPW = dsn + " password=" + password
	}
	s := open(t, withPW)
	ctx := t.Context()
	if err := s.PutMetaIfAbsent(ctx, "backup.test", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	cmd, err := s.DumpCommand(ctx)
	if err != nil {
		t.Fatalf("DumpCommand err = %v", err)
	}
	t.Logf("advised: %s", cmd)
	if strings.Contains(cmd, password) {
		t.Fatalf("DumpCommand = %q holds the DSN's password", cmd)
	}
	for _, want := range []string{"--schema=" + schema, "--dbname=", "--username=", "--format=custom"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("DumpCommand = %q, want it to contain %q", cmd, want)
		}
	}
	dir := t.TempDir()
	run := exec.CommandContext(t.Context(), "sh", "-c", cmd)
	run.Dir = dir
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pgdump"))
	if len(files) != 1 {
		t.Fatalf("the command wrote %v, want one .pgdump file", files)
	}
	list, err := exec.CommandContext(t.Context(), "pg_restore", "--list", files[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore --list: %v\n%s", err, list)
	}
	for _, table := range []string{"secret_versions", "audit_heads", "schema_migrations"} {
		if !strings.Contains(string(list), "TABLE "+schema+" "+table) {
			t.Errorf("dump lacks table %s.%s", schema, table)
		}
	}
	if st, _ := os.Stat(files[0]); st != nil && st.Size() == 0 {
		t.Errorf("dump is empty")
	}

	// The restore the README gives: the schema emptied (here: dropped and
	// made again), pg_restore into it, and the store reads as before.
	s.Close()
	db := admin(t)
	if _, err := db.Exec(`DROP SCHEMA ` + schema + ` CASCADE; CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	restore := strings.Replace(strings.Replace(cmd, "pg_dump --format=custom", "pg_restore --no-owner", 1),
		"--file=", "", 1)
	run = exec.CommandContext(ctx, "sh", "-c", restore)
	run.Dir = dir
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", restore, err, out)
	}
	got, err := open(t, dsn).GetMeta(ctx, "backup.test")
	if err != nil || string(got) != "kept" {
		t.Errorf("after pg_restore: GetMeta(backup.test) = %q, %v; want kept", got, err)
	}
}
