package api

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// rotationsStore serves ListRotations from a slice and counts the calls;
// every other method is the nil interface's (a call would panic).
type rotationsStore struct {
	store.Store
	rots  []store.Rotation // in name order
	calls int
}

func (f *rotationsStore) ListRotations(_ context.Context, p store.ListRotationsParams) ([]store.Rotation, error) {
	f.calls++
	var out []store.Rotation
	for _, r := range f.rots {
		if r.Secret > p.After && (p.Limit <= 0 || len(out) < p.Limit) {
			out = append(out, r)
		}
	}
	return out, nil
}

// A page of a listing gets its rotations in one query, not one per
// secret, and only the secrets the caller may describe get them.
func TestListRotationsOneQueryPerPage(t *testing.T) {
	t.Parallel()
	next := time.Now().Add(time.Hour)
	var secs []client.Secret
	fs := &rotationsStore{}
	for i := range 1000 {
		name := fmt.Sprintf("app/s%04d", i)
		secs = append(secs, client.Secret{Name: name})
		if i%2 == 0 {
			fs.rots = append(fs.rots, store.Rotation{Secret: name, Rotator: "random", Schedule: "CRON_TZ=UTC @daily",
				Enabled: true, NextDueAt: &next})
		}
		if i%100 == 0 {
			// A rotation of a secret not in the listing (deleted, hidden)
			// sits between the listed ones.
			fs.rots = append(fs.rots, store.Rotation{Secret: name + "-gone", Rotator: "random", Enabled: true})
		}
	}
	sort.Slice(fs.rots, func(i, j int) bool { return fs.rots[i].Secret < fs.rots[j].Secret })
	eng, err := rotation.New(rotation.Config{Store: fs, Secrets: new(secrets.Service), Rotators: rotation.Registry{}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{st: fs, engine: eng}
	r := httptest.NewRequest("GET", "/v1/secrets", nil)

	p := principalWith(t, `{"rules":[{"secrets":"*","actions":["list","describe"]}]}`)
	if err := s.listRotations(r, p, secs); err != nil {
		t.Fatal(err)
	}
	if fs.calls > 2 {
		t.Errorf("listRotations of 1000 secrets: %d ListRotations calls, want 1 or 2 (a page, one more for the rotations of secrets left out)", fs.calls)
	}
	for i, sec := range secs {
		if want := i%2 == 0; (sec.Rotation != nil) != want {
			t.Fatalf("%s: rotation %+v, want one: %v", sec.Name, sec.Rotation, want)
		}
		if sec.Rotation != nil && (sec.Rotation.State != client.RotationScheduled || sec.Rotation.NextRotationAt == nil) {
			t.Fatalf("%s: rotation %+v, want scheduled with a next rotation", sec.Name, sec.Rotation)
		}
	}

	// May list all, describe only app/s00*: the others get no rotation.
	for i := range secs {
		secs[i].Rotation = nil
	}
	p = principalWith(t, `{"rules":[{"secrets":"*","actions":["list"]},{"secrets":"app/s00*","actions":["describe"]}]}`)
	if err := s.listRotations(r, p, secs); err != nil {
		t.Fatal(err)
	}
	for i, sec := range secs {
		want := i%2 == 0 && strings.HasPrefix(sec.Name, "app/s00")
		if (sec.Rotation != nil) != want {
			t.Fatalf("describe only app/s00*: %s has rotation %+v, want one: %v", sec.Name, sec.Rotation, want)
		}
	}
}
