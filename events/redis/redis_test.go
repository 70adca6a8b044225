package redis_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/events"
	rsink "github.com/rotary-secrets/rotary/events/redis"
	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
	"github.com/rotary-secrets/rotary/store"
)

func sharedAddr() string {
	if v := os.Getenv("ROTARY_TEST_REDIS_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// shared connects to the machine's Redis, waiting until it answers.
func shared(t *testing.T) *goredis.Client { return sharedB(t) }

func sharedB(t testing.TB) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: sharedAddr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	waitPing(t, rdb)
	return rdb
}

func waitPing(t testing.TB, rdb *goredis.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis at %s does not answer (scripts/services.sh starts it)", rdb.Options().Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func event(id int64, typ, secret string, version int64, stages ...string) store.OutboxEvent {
	e := events.Event{Event: typ, Secret: secret, Version: version, Stages: stages, Reason: "scheduled", At: time.Unix(1_700_000_000, 0).UTC()}
	return store.OutboxEvent{ID: id, Type: typ, Secret: secret, Version: version, Payload: e.Marshal()}
}

func TestDeliverWritesStreamChannelAndVersion(t *testing.T) {
	t.Parallel()
	rdb := shared(t)
	prefix := testenv.Unique("rt") + ":"
	s := rsink.NewWithClient(rdb, prefix, 0)
	name := "prod/app-db"
	sub := rdb.Subscribe(ctx(t), s.Channel(name))
	defer sub.Close()
	if _, err := sub.Receive(ctx(t)); err != nil { // the subscription is live
		t.Fatal(err)
	}
	evs := []store.OutboxEvent{
		event(11, events.VersionCreated, name, 1, "current"),
		event(12, events.Rotated, name, 2, "current"),
	}
	if err := s.Deliver(ctx(t), evs); err != nil {
		t.Fatal(err)
	}
	entries, err := rdb.XRange(ctx(t), prefix+"events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("stream has %d entries, want 2", len(entries))
	}
	for i, e := range entries {
		want := evs[i]
		if e.Values["id"] != strconv.FormatInt(want.ID, 10) || e.Values["secret"] != name ||
			e.Values["type"] != want.Type || e.Values["version"] != strconv.FormatInt(want.Version, 10) ||
			e.Values["event"] != string(want.Payload) {
			t.Fatalf("entry %d = %v, want the fields of %+v", i, e.Values, want)
		}
	}
	for i := range evs {
		msg, err := sub.ReceiveMessage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Channel != prefix+"secret:"+name || msg.Payload != string(evs[i].Payload) {
			t.Fatalf("message %d = %s %s", i, msg.Channel, msg.Payload)
		}
	}
	if v, err := rdb.Get(ctx(t), prefix+"version:"+name).Result(); err != nil || v != "2" {
		t.Fatalf("version key = %q, %v; want 2", v, err)
	}
}

func TestVersionNeverMovesBack(t *testing.T) {
	t.Parallel()
	rdb := shared(t)
	prefix := testenv.Unique("rt") + ":"
	s := rsink.NewWithClient(rdb, prefix, 0)
	name := "svc/" + testenv.Unique("v")
	key := s.VersionKey(name)
	get := func() string {
		v, err := rdb.Get(ctx(t), key).Result()
		if err != nil && err != goredis.Nil {
			t.Fatal(err)
		}
		return v
	}
	// A version that is only pending does not move the key.
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(1, events.VersionCreated, name, 4, "pending")}); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "" {
		t.Fatalf("a pending version set the version key to %q", v)
	}
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(2, events.Rotated, name, 7, "current")}); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "7" {
		t.Fatalf("version = %q, want 7", v)
	}
	// A late redelivery of an older event, then a failure and a deletion
	// (no version): the key stays at 7.
	late := []store.OutboxEvent{
		event(1, events.VersionCreated, name, 5, "current"),
		event(3, events.RotationFailed, name, 0),
		event(4, events.Deleted, name, 0),
	}
	if err := s.Deliver(ctx(t), late); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "7" {
		t.Fatalf("a late redelivery moved the version to %q", v)
	}
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(5, events.Rotated, name, 8, "current")}); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "8" {
		t.Fatalf("version = %q, want 8", v)
	}
	// Purged, then created again under the same name: the key follows the
	// new secret from version 1.
	purged := event(6, events.Deleted, name, 0)
	purged.Payload = events.Event{Event: events.Deleted, Secret: name, Reason: events.ReasonPurge}.Marshal()
	if err := s.Deliver(ctx(t), []store.OutboxEvent{purged}); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "" {
		t.Fatalf("the version key of a purged secret holds %q", v)
	}
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(7, events.VersionCreated, name, 1, "current")}); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "1" {
		t.Fatalf("the version key of the secret created again = %q, want 1", v)
	}
}

func TestStreamIsBounded(t *testing.T) {
	t.Parallel()
	rdb := shared(t)
	prefix := testenv.Unique("rt") + ":"
	s := rsink.NewWithClient(rdb, prefix, 50)
	var evs []store.OutboxEvent
	for i := range 1000 {
		evs = append(evs, event(int64(i+1), events.Rotated, fmt.Sprintf("s/%d", i%7), int64(i+1), "current"))
	}
	for i := 0; i < len(evs); i += 100 {
		if err := s.Deliver(ctx(t), evs[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rdb.XLen(ctx(t), s.Stream()).Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole radix-tree nodes (100 entries by default).
	if n < 50 || n > 250 {
		t.Fatalf("stream length %d after 1000 events with max_len 50", n)
	}
	last, err := rdb.XRevRangeN(ctx(t), s.Stream(), "+", "-", 1).Result()
	if err != nil || len(last) != 1 || last[0].Values["id"] != "1000" {
		t.Fatalf("newest entry = %v, %v; want id 1000", last, err)
	}
}

// privateRedis starts a redis-server of the test's own on a free port; the
// returned stop and start end and restart it on the same port.
type private struct {
	t    *testing.T
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

func newPrivate(t *testing.T, args ...string) *private {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &private{t: t, port: ln.Addr().(*net.TCPAddr).Port, dir: t.TempDir(), args: args}
	ln.Close()
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *private) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *private) start() {
	p.t.Helper()
	args := append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--daemonize", "no", "--logfile", filepath.Join(p.dir, "redis.log")}, p.args...)
	p.cmd = exec.Command("redis-server", args...)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start redis-server (installed by scripts/services.sh): %v", err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: p.addr(), Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	waitPing(p.t, rdb)
}

func (p *private) stop() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

func TestRedisDownThenBack(t *testing.T) {
	t.Parallel()
	p := newPrivate(t)
	s, err := rsink.New(rsink.Config{URL: "redis://" + p.addr(), Prefix: "rotary:"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(1, events.Rotated, "a", 1, "current")}); err != nil {
		t.Fatal(err)
	}
	p.stop()
	down, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Deliver(down, []store.OutboxEvent{event(2, events.Rotated, "a", 2, "current")}); err == nil {
		t.Fatal("Deliver to a stopped Redis reported success")
	}
	p.start() // empty: scripts and data are gone
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(2, events.Rotated, "a", 2, "current")}); err != nil {
		t.Fatalf("Deliver after Redis came back: %v", err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: p.addr(), Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	if v, err := rdb.Get(ctx(t), "rotary:version:a").Result(); err != nil || v != "2" {
		t.Fatalf("version after restart = %q, %v", v, err)
	}
}

func TestACLUserFromURLAndFields(t *testing.T) {
	t.Parallel()
	p := newPrivate(t)
	root := goredis.NewClient(&goredis.Options{Addr: p.addr(), Protocol: 2, DisableIdentity: true})
	defer root.Close()
	const canary = "canary-Redis-pw-7f3a91"
	// The user may only do what the sink needs, under its prefix.
	if err := root.ACLSetUser(ctx(t), "relay", "reset", "on", ">"+canary, "~app:*", "&app:*", "+xadd", "+publish", "+eval", "+get", "+set", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	// The default user needs a password now, so a sink that silently
	// fell back to it would fail.
	if err := root.ACLSetUser(ctx(t), "default", "resetpass", ">"+canary+"-default").Err(); err != nil {
		t.Fatal(err)
	}
	root = goredis.NewClient(&goredis.Options{Addr: p.addr(), Username: "default", Password: canary + "-default", Protocol: 2, DisableIdentity: true})
	defer root.Close()
	evs := []store.OutboxEvent{event(1, events.Rotated, "x", 3, "current")}
	for _, c := range []rsink.Config{
		{URL: "redis://relay:" + canary + "@" + p.addr(), Prefix: "app:"},
		{URL: "redis://" + p.addr(), Username: "relay", Password: canary, Prefix: "app:"},
	} {
		s, err := rsink.New(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Deliver(ctx(t), evs); err != nil {
			t.Fatalf("Deliver as relay: %v", err)
		}
		s.Close()
	}
	if v, err := root.Get(ctx(t), "app:version:x").Result(); err != nil || v != "3" {
		t.Fatalf("version = %q, %v", v, err)
	}
	// Negative controls: a wrong password, and a prefix the user may not
	// write, fail, and no error shows the password.
	for _, c := range []rsink.Config{
		{URL: "redis://relay:wrong-" + canary + "@" + p.addr(), Prefix: "app:"},
		{URL: "redis://relay:" + canary + "@" + p.addr(), Prefix: "other:"},
	} {
		s, err := rsink.New(c)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Deliver(ctx(t), evs)
		s.Close()
		if err == nil {
			t.Fatalf("Deliver with %q/%s succeeded", c.Prefix, "a wrong password or prefix")
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("the error shows the password: %v", err)
		}
	}
	if _, err := rsink.New(rsink.Config{URL: "redis://relay:" + canary + "@[::1"}); err == nil || strings.Contains(err.Error(), canary) {
		t.Fatalf("a bad URL: %v", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	shared(t)
	proxy := rotatortest.StartTLSProxy(t, sharedAddr(), nil)
	prefix := testenv.Unique("rt") + ":"
	good := &tls.Config{RootCAs: proxy.CA.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	s, err := rsink.New(rsink.Config{URL: "redis://localhost:" + strconv.Itoa(proxy.Port), TLS: good, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Deliver(ctx(t), []store.OutboxEvent{event(1, events.Rotated, "t", 1, "current")}); err != nil {
		t.Fatalf("Deliver over TLS: %v", err)
	}
	if proxy.Handshakes.Load() == 0 || proxy.Plaintext.Load() != 0 {
		t.Fatalf("handshakes %d, plaintext %d", proxy.Handshakes.Load(), proxy.Plaintext.Load())
	}
	other := rotatortest.NewCA(t)
	bad, err := rsink.New(rsink.Config{URL: "redis://localhost:" + strconv.Itoa(proxy.Port), Prefix: prefix,
		TLS: &tls.Config{RootCAs: other.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	short, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bad.Deliver(short, []store.OutboxEvent{event(2, events.Rotated, "t", 2, "current")}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Deliver to a server signed by another CA = %v; want a certificate error", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    rsink.Config
		want string
	}{
		{rsink.Config{}, "exactly one of url and addrs"},
		{rsink.Config{URL: "redis://a:1", Addrs: []string{"b:2"}}, "exactly one of url and addrs"},
		{rsink.Config{URL: "redis://a:1", MasterName: "m"}, "master_name needs addrs"},
		{rsink.Config{Addrs: []string{"nohost"}}, `address "nohost"`},
		{rsink.Config{URL: "http://a:1"}, "url"},
		{rsink.Config{URL: "redis://a:1", MaxLen: -1}, "max_len"},
	} {
		if _, err := tc.c.Options(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.c, err, tc.want)
		}
	}
	o, err := rsink.Config{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster"}.Options()
	if err != nil || o.MasterName != "mymaster" || len(o.Addrs) != 2 {
		t.Fatalf("sentinel options = %+v, %v", o, err)
	}
}
