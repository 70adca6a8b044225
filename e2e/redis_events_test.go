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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotary-secrets/rotary/client"
)

// ownRedis is a redis-server of the test's own, which it may stop and
// start again on the same port.
type ownRedis struct {
	t     *testing.T
	port  int
	dir   string
	extra []string
	cmd   *exec.Cmd
}

// startOwnRedis starts it with extra redis-server arguments (persistence).
func startOwnRedis(t *testing.T, extra ...string) *ownRedis {
	r := &ownRedis{t: t, port: freePort(t), dir: t.TempDir(), extra: extra}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *ownRedis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }
func (r *ownRedis) url() string  { return "redis://" + r.addr() }

func (r *ownRedis) start() {
	r.t.Helper()
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log")}
	r.cmd = exec.Command("redis-server", append(args, r.extra...)...)
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

	// Deleted for good and created again: the version key follows the new
	// secret from version 1 (a raise-only key would stay at 2).
	c.ok("secret", "delete", name, "--force")
	waitFor(t, 30*time.Second, "the purge to clear the version key", func() bool {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(r.port), "EXISTS", "rotary:version:"+name).Output()
		return err == nil && strings.TrimSpace(string(out)) == "0"
	})
	// The client dropped the value of the deleted secret.
	waitFor(t, 30*time.Second, "the client to stop answering the deleted secret", func() bool {
		_, err := cc.Get(bg(t), name)
		return err != nil
	})
	c.ok("secret", "create", name, "--value", "again")
	waitFor(t, 30*time.Second, "the version key of the secret created again to read 1", func() bool {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(r.port), "GET", "rotary:version:"+name).Output()
		return err == nil && strings.TrimSpace(string(out)) == "1"
	})
	if cur, err := cc.Get(bg(t), name); err != nil || cur.Version != 1 || string(cur.Value) != "again" {
		t.Fatalf("the client's Get of the secret created again = version %d, %v", cur.Version, err)
	}
}

// A burst of 200 rotations while the test's redis-server is killed (-9)
// and started again twice: the daemon and its rotations go on, the backlog
// shows in the metrics, and once Redis is back every rotation's event is
// in the stream, every version key ends at the latest version, and clients
// connected throughout (one following Redis, one following GET /v1/events,
// neither polling) end with every latest value. Redis keeps its data with
// an fsync per write here, so that "every event reached the stream" can be
// checked event by event across the kills.
func TestRedisBurstSurvivesTwoKills(t *testing.T) {
	t.Parallel()
	r := startOwnRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	s := startDev(t, withArgs("--redis", r.url()))
	c := s.root(t)
	const secrets, rounds = 20, 10
	api := newCacheClient(t, s, client.WithoutEvents(), client.WithPollInterval(0))
	var names []string
	for i := range secrets {
		name := fmt.Sprintf("%s/%d", uniq("burst"), i)
		names = append(names, name)
		c.ok("secret", "create", name, "--value", "v1")
		c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
	}
	rdb := r.client()
	defer rdb.Close()
	viaRedis := newCacheClient(t, s, client.WithRedis(r.client(), ""), client.WithPollInterval(0))
	viaSSE := newCacheClient(t, s, client.WithPollInterval(0))
	for _, cc := range []*client.Client{viaRedis, viaSSE} {
		if err := cc.WaitConnected(bg(t)); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if cur, err := cc.Get(bg(t), name); err != nil || cur.Version != 1 {
				t.Fatalf("Get %s = %d, %v", name, cur.Version, err)
			}
		}
	}

	// Four workers rotate; the main goroutine kills and restarts Redis as
	// the count of finished rotations passes 40, 80, 120 and 160.
	var done atomic.Int64
	work := make(chan string)
	errs := make(chan error, secrets*rounds)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for name := range work {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res, err := api.Rotate(ctx, name, client.RotateOptions{Wait: true})
				cancel()
				if err == nil && res.State != "succeeded" {
					err = fmt.Errorf("ended %q", res.State)
				}
				if err != nil {
					errs <- fmt.Errorf("rotate %s: %w", name, err)
				}
				done.Add(1)
			}
		})
	}
	go func() {
		defer close(work)
		for range rounds {
			for _, name := range names {
				work <- name
			}
		}
	}()
	reach := func(n int64) {
		waitFor(t, 2*time.Minute, fmt.Sprintf("%d rotations to finish", n), func() bool { return done.Load() >= n })
	}
	for kill := range 2 {
		reach(int64(40 + 80*kill))
		r.kill()
		reach(int64(80 + 80*kill))
		waitFor(t, 30*time.Second, "the backlog to show in the metrics", func() bool { return backlog(t, s) > 0 })
		r.start()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	waitFor(t, 90*time.Second, "every event to be delivered after Redis came back", func() bool {
		return backlog(t, s) == 0
	})
	const latest = 1 + rounds
	ents, err := rdb.XRange(context.Background(), "rotary:events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	rotated := map[string]map[string]bool{}
	for _, e := range ents {
		if e.Values["type"] == "rotated" {
			name := e.Values["secret"].(string)
			if rotated[name] == nil {
				rotated[name] = map[string]bool{}
			}
			rotated[name][e.Values["version"].(string)] = true
		}
	}
	for _, name := range names {
		for v := 2; v <= latest; v++ {
			if !rotated[name][strconv.Itoa(v)] {
				t.Errorf("the stream has no rotated event of %s version %d", name, v)
			}
		}
		if v, err := rdb.Get(context.Background(), "rotary:version:"+name).Result(); err != nil || v != strconv.Itoa(latest) {
			t.Errorf("version key of %s = %q, %v; want %d", name, v, err, latest)
		}
	}
	for src, cc := range map[string]*client.Client{"redis": viaRedis, "sse": viaSSE} {
		for _, name := range names {
			waitFor(t, 30*time.Second, fmt.Sprintf("the %s client to hold %s version %d", src, name, latest), func() bool {
				cur, err := cc.Get(bg(t), name)
				return err == nil && cur.Version == latest
			})
		}
	}
}
