package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

func TestAuditListAndVerify(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		name := uniq("aud") + "/s"
		c.ok("secret", "create", name, "--value", "v")
		c.ok("secret", "get", name)
		c.fail(exitNotFound, nil, "secret", "get", name+"-missing")

		all := okJSON[client.AuditList](c, "audit", "list", "--since", "1h")
		if len(all.Records) < 2 {
			t.Fatalf("audit list --since 1h: %d records, want at least 2", len(all.Records))
		}
		for _, r := range all.Records {
			if r.Seq == 0 || r.Time.IsZero() || r.Action == "" || r.Hash == "" {
				t.Errorf("audit record lacks fields: %+v", r)
			}
		}
		mine := okJSON[client.AuditList](c, "audit", "list", "--secret", name)
		if len(mine.Records) < 2 {
			t.Errorf("audit list --secret %s: %d records, want the create and the read: %+v", name, len(mine.Records), mine)
		}
		for _, r := range mine.Records {
			if r.Target != name {
				t.Errorf("audit list --secret %s returned a record for %q", name, r.Target)
			}
		}
		one := okJSON[client.AuditList](c, "audit", "list", "--limit", "1")
		if len(one.Records) != 1 {
			t.Errorf("audit list --limit 1: %d records", len(one.Records))
		}
		future := okJSON[client.AuditList](c, "audit", "list", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		if len(future.Records) != 0 {
			t.Errorf("audit list --since <an hour from now>: %d records, want 0", len(future.Records))
		}
		out := c.ok("audit", "list", "--secret", name)
		if !strings.HasPrefix(out, "SEQ") || !strings.Contains(out, name) {
			t.Errorf("audit list text:\n%s", out)
		}

		out = c.ok("audit", "verify")
		if !strings.Contains(out, "intact") {
			t.Errorf("audit verify printed %q", out)
		}
		v := okJSON[client.AuditVerify](c, "audit", "verify")
		if !v.OK || v.Records < 2 {
			t.Errorf("audit verify -o json = %+v", v)
		}
	})
}

// TestAuditTampering alters and deletes audit rows in the SQLite file
// under a running daemon; audit verify must fail and name the record.
func TestAuditTampering(t *testing.T) {
	t.Parallel()
	for _, tamper := range []string{"update", "delete", "delete-tail"} {
		t.Run(tamper, func(t *testing.T) {
			t.Parallel()
			s := startDev(t)
			c := s.root(t)
			name := uniq("tamper") + "/s"
			c.ok("secret", "create", name, "--value", "v")
			for range 5 {
				c.ok("secret", "get", name)
			}
			c.ok("audit", "verify")
			recs := okJSON[client.AuditList](c, "audit", "list", "--secret", name)
			if len(recs.Records) < 3 {
				t.Fatalf("want at least 3 audit records for %s, got %d", name, len(recs.Records))
			}
			seq, chain := recs.Records[1].Seq, recs.Records[1].Chain
			db := s.sqliteDB(t)
			var q string
			switch tamper {
			case "update":
				q = "UPDATE audit SET result = 'denied', detail = 'tampered' WHERE seq = ? AND chain = ?"
			case "delete":
				q = "DELETE FROM audit WHERE seq = ? AND chain = ?"
			case "delete-tail":
				// The newest record: the chain still links up, but ends
				// before the head the store keeps.
				if err := db.QueryRow("SELECT MAX(seq) FROM audit WHERE chain = ?", chain).Scan(&seq); err != nil {
					t.Fatal(err)
				}
				q = "DELETE FROM audit WHERE seq = ? AND chain = ?"
			}
			res, err := db.Exec(q, seq, chain)
			if err != nil {
				t.Fatalf("%s audit row %d: %v", tamper, seq, err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%s audit row %d: %d rows affected", tamper, seq, n)
			}
			errOut := c.fail(exitFailure, []string{"audit"}, "audit", "verify")
			// the first bad record is the altered one, or for a deleted
			// row the one after it (whose prev_hash no longer matches)
			if !strings.Contains(errOut, fmt.Sprint(seq)) && !strings.Contains(errOut, fmt.Sprint(seq+1)) {
				t.Errorf("audit verify after %s of record %d: %q does not name it", tamper, seq, errOut)
			}
			stdout, _, code := c.run("audit", "verify", "-o", "json")
			if code == 0 || !strings.Contains(stdout, `"ok": false`) {
				t.Errorf("audit verify -o json after tampering: exit %d, stdout %q", code, stdout)
			}
		})
	}
}
