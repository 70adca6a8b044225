package postgres

import "testing"

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c > ?`, `SELECT a FROM t WHERE b = $1 AND c > $2`},
		{`SELECT a FROM t WHERE b LIKE ? ESCAPE '\' AND c = '?' AND d = ?`, `SELECT a FROM t WHERE b LIKE $1 ESCAPE '\' AND c = '?' AND d = $2`},
		{`SELECT a FROM t WHERE b = $1 OR c = $1`, `SELECT a FROM t WHERE b = $1 OR c = $1`},
	} {
		for range 2 { // the second call is answered from the cache
			if got := rebind(tc.in); got != tc.want {
				t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
	}
}

// BenchmarkRebind is the cost the shared ? placeholders add to a
// PostgreSQL query once its rewrite is cached (GetVersion's query).
func BenchmarkRebind(b *testing.B) {
	q := `SELECT v.secret, v.version, v.envelope, v.key_id, v.key_version, v.fingerprint,
	v.created_at, v.created_by, v.reason,
	(SELECT string_agg(st.stage, chr(31) ORDER BY st.stage) FROM secret_stages st WHERE st.secret = v.secret AND st.version = v.version) FROM secret_versions v
		WHERE v.secret = ? AND v.version = ?`
	rebind(q)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rebind(q)
		}
	})
}
