package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
)

// TestCrossDaemonReadAfterWrite: two daemons on one PostgreSQL. B holds
// a secret in its read cache (shown by reading it while the secrets table
// is locked: the read answers without the store). Then, eight times, a
// put or a rotation on A is followed at once by `secret get` on B, which
// returns the new version: A's change notice, sent after its commit and
// before A answered, invalidated B's cache through LISTEN/NOTIFY. Without it B would answer the cached version for up to
// its cache TTL (secrets.TestOtherDaemonCacheInvalidated has the negative
// control). The time until B serves the new version over HTTP, polled
// from the moment A's command returned, is logged with the number of
// stale answers: the notice is handled some tens of microseconds after
// the commit on an idle machine, but on this loaded 2-core machine with
// race-built daemons an HTTP read issued within a few milliseconds of the
// commit has been seen to answer the version before (a CLI started after
// the write has not).
func TestCrossDaemonReadAfterWrite(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	a := startPGServer(t, fx, "")
	b := startPGServer(t, fx, "")
	ca, cb := a.root(t), b.root(t)
	name := uniq("xd/hot")
	ca.ok("secret", "create", name, "--value", "v1")
	ca.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
	if got := okJSON[client.SecretValue](cb, "secret", "get", name); got.Version != 1 || got.Value != "v1" {
		t.Fatalf("B reads version %d %q, want 1 v1", got.Version, got.Value)
	}
	db, err := sql.Open("postgres", fx.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	servedFromCache(t, db, fx.schema, cb, name, 1)

	var lat []time.Duration
	stale := 0 // reads on B that answered the version before
	for v := int64(2); v <= 9; v++ {
		var start time.Time
		want := ""
		if v%2 == 0 {
			want = "v" + strconv.FormatInt(v, 10)
			ca.ok("secret", "put", name, "--value", want)
			start = time.Now()
		} else {
			ca.ok("rotate", name, "--wait")
			start = time.Now()
		}
		// Over HTTP, polled: how long until B serves it.
		var got client.SecretValue
		for {
			code, body := b.httpDo(t, http.MethodGet, "/v1/secrets/"+url.PathEscape(name)+"/value", b.rootToken, "", nil)
			if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
				t.Fatalf("GET value on B: %d %s", code, body)
			}
			if got.Version == v {
				lat = append(lat, time.Since(start))
				break
			}
			stale++
			t.Logf("round %d: B answered version %d %s after A's command returned", v, got.Version, time.Since(start))
			if time.Since(start) > 500*time.Millisecond {
				t.Fatalf("B still serves version %d %s after A's write of version %d", got.Version, time.Since(start), v)
			}
		}
		// And as a user types it, right after.
		got = okJSON[client.SecretValue](cb, "secret", "get", name)
		if got.Version != v || (want != "" && got.Value != want) || !slices.Contains(got.Stages, "current") {
			t.Fatalf("round %d: B's secret get = version %d %q %v, want version %d %q current", v, got.Version, got.Value, got.Stages, v, want)
		}
	}
	slices.Sort(lat)
	t.Logf("B served A's new version over HTTP %s (median) / %s (max) after A's command returned (each a whole audited request), %d rounds, %d stale answers", lat[len(lat)/2], lat[len(lat)-1], len(lat), stale)
	// B caches again after all that (so the reads above were not simply
	// uncached).
	servedFromCache(t, db, fx.schema, cb, name, 9)
	// B's metrics: its cache was invalidated by notices (one per put,
	// two per rotation at least), and never reset: the connection held.
	m := metricsText(t, b)
	if metricValue(t, m, "rotary_read_cache_current") != 1 || metricValue(t, m, "rotary_read_cache_resets_total") != 1 ||
		metricValue(t, m, "rotary_read_cache_invalidations_total") < 12 {
		t.Errorf("B's read cache metrics:\n%s\nwant current 1, resets 1, invalidations at least 12", grepLines(m, "rotary_read_cache"))
	}
	// A SQLite daemon has no listener, hence none of these metrics.
	if m := metricsText(t, startDev(t)); strings.Contains(m, "rotary_read_cache_") {
		t.Errorf("a SQLite daemon exports listener metrics:\n%s", grepLines(m, "rotary_read_cache"))
	}
}

// servedFromCache locks the secrets table and checks that `secret get`
// on c still answers version want, which only its read cache can do. The
// control: an uncached read (describe) waits on the lock until it goes.
func servedFromCache(t *testing.T, db *sql.DB, schema string, c cli, name string, want int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(fmt.Sprintf(`LOCK TABLE %q.secrets IN ACCESS EXCLUSIVE MODE`, schema)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out, errOut string
		code        int
	}
	got := make(chan result, 1)
	go func() {
		out, errOut, code := c.run("secret", "get", name, "-o", "json")
		got <- result{out, errOut, code}
	}()
	described := make(chan int, 1)
	go func() {
		_, _, code := c.run("secret", "describe", name)
		described <- code
	}()
	// The control: describe reaches the store and waits on the lock.
	waitFor(t, 30*time.Second, "describe to wait on the lock", func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass`,
			fmt.Sprintf("%q.secrets", schema)).Scan(&n)
		return err == nil && n > 0
	})
	select {
	case r := <-got:
		var v client.SecretValue
		if r.code != 0 || json.Unmarshal([]byte(r.out), &v) != nil || v.Version != want {
			t.Fatalf("secret get under the lock: exit %d %q %q, want version %d", r.code, r.out, r.errOut, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("secret get waited on the locked secrets table: not served from the read cache")
	}
	select {
	case <-described:
		t.Fatalf("describe finished while the secrets table was locked; the lock proves nothing")
	default:
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if code := <-described; code != 0 {
		t.Fatalf("describe after the lock: exit %d", code)
	}
}

// TestCrossDaemonCrashBeforeNotice: the crash gap of change notices sent
// after commit. Daemon A (a failpoints build) holds its notifier before
// its NOTIFY and is killed there (kill -9): its put committed, its
// notice never went out. Daemon B, which had the secret in its read
// cache, still serves the new version within its listener's MaxLag (1 s)
// of the commit, found by its periodic check of secret_changes (its
// rotary_read_cache_check_invalidations_total counts it) while its cache
// stayed in use (current all along: not a bypass). Without that check B
// would serve the old version for its cache TTL (5 minutes).
func TestCrossDaemonCrashBeforeNotice(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	a := startPGServer(t, fx, "", withEnv("ROTARY_FAILPOINTS=notify-before-send"))
	b := startPGServer(t, fx, "")
	ca, cb := a.root(t), b.root(t)
	name := uniq("xd/gap")
	cb.ok("secret", "create", name, "--value", "v1") // on B: A's notifier must not be held yet
	if got := okJSON[client.SecretValue](cb, "secret", "get", name); got.Version != 1 {
		t.Fatalf("B reads version %d, want 1", got.Version)
	}
	db, err := sql.Open("postgres", fx.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	servedFromCache(t, db, fx.schema, cb, name, 1)
	found0 := metricValue(t, metricsText(t, b), "rotary_read_cache_check_invalidations_total")

	// The put commits, A's notifier stops at the failpoint, and A dies
	// there, before it answered the put (which waits for the notice).
	putDone := make(chan struct{})
	go func() { defer close(putDone); ca.run("secret", "put", name, "--value", "v2") }()
	a.waitLog("FAILPOINT notify-before-send", 30*time.Second)
	committed := time.Now() // the commit came before the failpoint
	a.kill9()
	<-putDone
	const maxLag = time.Second
	stale := 0
	for {
		start := time.Now()
		code, body := b.httpDo(t, http.MethodGet, "/v1/secrets/"+url.PathEscape(name)+"/value", b.rootToken, "", nil)
		var got client.SecretValue
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Fatalf("GET value on B: %d %s", code, body)
		}
		if got.Version == 2 && got.Value == "v2" {
			t.Logf("B served version 2 %s after the failpoint (%d stale answers before)", time.Since(committed), stale)
			break
		}
		if start.Sub(committed) > maxLag {
			t.Fatalf("a read on B started %s after A's commit answered version %d: past the MaxLag of %s", start.Sub(committed), got.Version, maxLag)
		}
		stale++
		time.Sleep(5 * time.Millisecond)
	}
	m := metricsText(t, b)
	if metricValue(t, m, "rotary_read_cache_check_invalidations_total") <= found0 ||
		metricValue(t, m, "rotary_read_cache_current") != 1 || metricValue(t, m, "rotary_read_cache_resets_total") != 1 {
		t.Errorf("B's read cache metrics:\n%s\nwant check invalidations above %v (the check found A's change), current 1, resets 1", grepLines(m, "rotary_read_cache"), found0)
	}
	servedFromCache(t, db, fx.schema, cb, name, 2)
}
