package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/client"
)

// ownRedis is a redis-server of the test's own, which it may stop and
// start again on the same port.
type ownRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	r := &ownRedis{t: t, port: freePort(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *ownRedis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }
func (r *ownRedis) url() string  { return "redis://" + r.addr() }

func (r *ownRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server (scripts/services.sh installs it): %v", err)
	}
	rdb := r.client()
	defer rdb.Close()
	waitFor(r.t, 30*time.Second, "the test's redis-server to answer", func() bool {
		return rdb.Ping(context.Background()).Err() == nil
	})
}

func (r *ownRedis) kill() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *ownRedis) client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: r.addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
}

// backlog reads rotary_outbox_backlog from /metrics.
func backlog(t *testing.T, s *server) float64 {
	t.Helper()
	_, body := s.httpDo(t, "GET", "/metrics", "", "", nil)
	return metricValue(t, string(body), "rotary_outbox_backlog")
}

// A rotation reaches Redis: the real redis-cli sees it on the secret's
// channel and in the version key, and a client following Redis has the
// new value.
func TestRedisPublishesRotations(t *testing.T) {
	t.Parallel()
	r := startOwnRedis(t)
	s := startDev(t, withArgs("--redis", r.url()))
	c := s.root(t)
	name := uniq("rd/db")
	c.ok("secret", "create", name, "--value", "first")
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")

	sub := exec.Command("redis-cli", "-p", strconv.Itoa(r.port), "SUBSCRIBE", "rotary:secret:"+name)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatalf("redis-cli: %v", err)
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// redis-cli prints the subscription's confirmation first.
	waitFor(t, 10*time.Second, "redis-cli to subscribe", func() bool {
		select {
		case l := <-lines:
			return l == "1"
		default:
			return false
		}
	})

	rdb := r.client()
	defer rdb.Close()
	cc := newCacheClient(t, s, client.WithRedis(rdb, ""), client.WithPollInterval(0))
	if cur, err := cc.Get(bg(t), name); err != nil || cur.Version != 1 {
		t.Fatalf("Get = %d, %v", cur.Version, err)
	}
	if err := cc.WaitConnected(bg(t)); err != nil {
		t.Fatal(err)
	}
	c.ok("rotate", name, "--wait")

	deadline := time.After(30 * time.Second)
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("redis-cli ended")
			}
			seen = strings.Contains(l, `"event":"rotated"`) && strings.Contains(l, `"version":2`)
			if strings.Contains(l, "first") {
				t.Fatalf("a value reached Redis: %s", l)
			}
		case <-deadline:
			t.Fatal("redis-cli SUBSCRIBE never saw the rotated event")
		}
	}
	got, err := exec.Command("redis-cli", "-p", strconv.Itoa(r.port), "GET", "rotary:version:"+name).Output()
	if err != nil || strings.TrimSpace(string(got)) != "2" {
		t.Fatalf("redis-cli GET rotary:version:%s = %q, %v", name, got, err)
	}
	waitFor(t, 30*time.Second, "the Redis-following client to hold version 2", func() bool {
		cur, err := cc.Get(bg(t), name)
		return err == nil && cur.Version == 2
	})
}

// Redis goes down during a burst of rotations: the daemon and its
// rotations go on, the backlog shows in the metrics, and when Redis comes
// back every event is delivered and every version key ends at the latest.
func TestRedisOutageLosesNothing(t *testing.T) {
	t.Parallel()
	r := startOwnRedis(t)
	s := startDev(t, withArgs("--redis", r.url()))
	c := s.root(t)
	const n = 6
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s/%d", uniq("out"), i)
		names = append(names, name)
		c.ok("secret", "create", name, "--value", "v1")
		c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
	}
	rdb := r.client()
	defer rdb.Close()
	waitFor(t, 30*time.Second, "the creations to reach Redis", func() bool {
		v, err := rdb.Get(context.Background(), "rotary:version:"+names[n-1]).Result()
		return err == nil && v == "1"
	})
	r.kill()
	for round := range 2 {
		for _, name := range names {
			c.ok("rotate", name, "--wait")
		}
		if round == 0 {
			waitFor(t, 30*time.Second, "the backlog to show in the metrics", func() bool {
				return backlog(t, s) > 0
			})
		}
	}
	r.start() // an empty Redis: what it had is gone too
	waitFor(t, 90*time.Second, "every event to be delivered after Redis came back", func() bool {
		return backlog(t, s) == 0
	})
	for _, name := range names {
		v, err := rdb.Get(context.Background(), "rotary:version:"+name).Result()
		if err != nil || v != "3" {
			t.Fatalf("version key of %s = %q, %v; want 3", name, v, err)
		}
	}
	ents, err := rdb.XRange(context.Background(), "rotary:events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	rotated := map[string]int{}
	for _, e := range ents {
		if e.Values["type"] == "rotated" {
			rotated[e.Values["secret"].(string)]++
		}
	}
	for _, name := range names {
		if rotated[name] < 2 {
			t.Fatalf("the stream holds %d rotated events of %s, want 2 (the outage's)", rotated[name], name)
		}
	}
}
