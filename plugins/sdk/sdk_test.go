package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
	"github.com/rotary-secrets/rotary/plugins/proto"
	"github.com/rotary-secrets/rotary/plugins/sdk"
	"github.com/rotary-secrets/rotary/rotators"
)

// probe records what reaches the rotator.
type probe struct {
	rotator.Rotator
	got  rotators.SetRequest
	fail error
}

func (p *probe) Set(_ context.Context, req rotators.SetRequest) error {
	p.got = req
	if p.fail != nil {
		return p.fail
	}
	if req.Secret.Name == "panic" {
		panic("boom " + string(req.Pending.Reveal()))
	}
	return nil
}

func TestServerConvertsEveryField(t *testing.T) {
	p := &probe{}
	s := sdk.NewServer(p, p.PluginInfo(), nil)
	_, err := s.Set(context.Background(), &proto.SetRequest{
		Secret: &proto.Secret{Name: "n", Type: "basic-auth", Region: "eu", Version: 7},
		Config: []byte(`{"a":1}`), Current: []byte("cur-value"), Pending: []byte("pend-value"), Emergency: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	g := p.got
	if g.Secret != (rotators.Secret{Name: "n", Type: "basic-auth", Region: "eu", Version: 7}) || string(g.Config) != `{"a":1}` ||
		string(g.Current.Reveal()) != "cur-value" || string(g.Pending.Reveal()) != "pend-value" || !g.Emergency {
		t.Errorf("Set got %+v", g)
	}
	if g.Admin != nil {
		t.Errorf("an absent admin value arrives as %d bytes; want nil", g.Admin.Len())
	}
	if fmt.Sprint(g.Pending) != "[redacted]" {
		t.Errorf("the pending value prints as %q; want it sensitive", fmt.Sprint(g.Pending))
	}
}

func TestServerErrorsKeepTheirKind(t *testing.T) {
	p := &probe{fail: fmt.Errorf("strategy x: %w", rotators.ErrUnsupported)}
	s := sdk.NewServer(p, p.PluginInfo(), nil)
	_, err := s.Set(context.Background(), &proto.SetRequest{Secret: &proto.Secret{}})
	st, _ := status.FromError(err)
	if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "strategy x") {
		t.Fatalf("status = %v", st)
	}
	var kind string
	for _, d := range st.Details() {
		if e, ok := d.(*proto.ErrorDetail); ok {
			kind = e.GetKind()
		}
	}
	if !errors.Is(proto.KindError(kind), rotators.ErrUnsupported) {
		t.Errorf("detail kind %q; want unsupported", kind)
	}
}

func TestServerPanicFailsTheCallWithoutItsValue(t *testing.T) {
	p := &probe{}
	s := sdk.NewServer(p, p.PluginInfo(), nil)
	_, err := s.Set(context.Background(), &proto.SetRequest{Secret: &proto.Secret{Name: "panic"}, Pending: []byte("pend-secret")})
	if err == nil || strings.Contains(err.Error(), "pend-secret") || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Set that panics = %v", err)
	}
}

func TestInfoSaysWhatTheRotatorImplements(t *testing.T) {
	p := &probe{}
	resp, err := sdk.NewServer(p, p.PluginInfo(), nil).Info(context.Background(), &proto.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetName() != "template" || !resp.GetTargets() || !resp.GetValidatesConfig() || resp.GetRollsBack() ||
		strings.Join(resp.GetIdentityFields(), ",") != "accounts_dir,username" {
		t.Errorf("Info = %v", resp)
	}
}

// A plugin's whole main.
func ExampleServeRotator() {
	sdk.ServeRotator(rotator.Rotator{})
}

// recorder records every request.
type recorder struct {
	create   rotators.CreateRequest
	test     rotators.TestRequest
	finish   rotators.FinishRequest
	rollback rotators.RollbackRequest
	target   rotators.TargetRequest
}

func (r *recorder) Create(_ context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	r.create = req
	return rotators.CreateResponse{Value: rotators.Value("new-value")}, nil
}
func (r *recorder) Set(context.Context, rotators.SetRequest) error { return nil }
func (r *recorder) Test(_ context.Context, req rotators.TestRequest) error {
	r.test = req
	return nil
}
func (r *recorder) Finish(_ context.Context, req rotators.FinishRequest) error {
	r.finish = req
	return nil
}
func (r *recorder) Rollback(_ context.Context, req rotators.RollbackRequest) error {
	r.rollback = req
	return nil
}
func (r *recorder) Target(_ context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	r.target = req
	return rotators.Target{{Name: "host", Value: "h", Server: true}, {Name: "username", Value: "u", Or: []string{"u_b"}}}, nil
}

func TestServerConvertsEveryMethod(t *testing.T) {
	r := &recorder{}
	s := sdk.NewServer(r, sdk.Info{Name: "rec", SecretTypes: []string{"generic"}, IdentityFields: []string{"host", "username"}}, nil)
	ctx := context.Background()
	sec := &proto.Secret{Name: "n", Type: "generic", Region: "r", Version: 3}
	want := rotators.Secret{Name: "n", Type: "generic", Region: "r", Version: 3}
	cr, err := s.Create(ctx, &proto.CreateRequest{Secret: sec, Config: []byte("{}"), Current: []byte("c"), Previous: []byte("p"), Emergency: true})
	if err != nil || string(cr.GetValue()) != "new-value" {
		t.Fatalf("Create = %v, %v", cr, err)
	}
	if c := r.create; c.Secret != want || string(c.Current.Reveal()) != "c" || string(c.Previous.Reveal()) != "p" || !c.Emergency || string(c.Config) != "{}" {
		t.Errorf("Create got %+v", c)
	}
	if _, err := s.Test(ctx, &proto.TestRequest{Secret: sec, Value: []byte("v")}); err != nil || string(r.test.Value.Reveal()) != "v" || r.test.Secret != want {
		t.Errorf("Test got %+v, %v", r.test, err)
	}
	if _, err := s.Finish(ctx, &proto.FinishRequest{Secret: sec, Current: []byte("c"), Previous: []byte("p"), Admin: []byte("a"), Emergency: true, KeepSessions: true}); err != nil {
		t.Fatal(err)
	}
	if f := r.finish; string(f.Current.Reveal()) != "c" || string(f.Previous.Reveal()) != "p" || string(f.Admin.Reveal()) != "a" || !f.Emergency || !f.KeepSessions || f.Secret != want {
		t.Errorf("Finish got %+v", f)
	}
	if _, err := s.Rollback(ctx, &proto.RollbackRequest{Secret: sec, Current: []byte("c"), Pending: []byte("n"), Admin: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if b := r.rollback; string(b.Current.Reveal()) != "c" || string(b.Pending.Reveal()) != "n" || string(b.Admin.Reveal()) != "a" || b.Secret != want {
		t.Errorf("Rollback got %+v", b)
	}
	tr, err := s.Target(ctx, &proto.TargetRequest{SecretType: "generic", Config: []byte("{}"), Value: []byte("v"), Previous: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if g := r.target; g.SecretType != "generic" || string(g.Value.Reveal()) != "v" || string(g.Previous.Reveal()) != "p" {
		t.Errorf("Target got %+v", g)
	}
	f := tr.GetFields()
	if len(f) != 2 || !f[0].GetServer() || f[1].GetOr()[0] != "u_b" {
		t.Errorf("Target answered %v", tr)
	}
	info, _ := s.Info(ctx, &proto.InfoRequest{})
	if !info.GetRollsBack() || !info.GetTargets() || info.GetValidatesConfig() {
		t.Errorf("Info = %v", info)
	}
}

func TestHookServerDecodesTheEvent(t *testing.T) {
	var got events.Event
	h := sdk.NewHookServer(sdk.HookFunc(func(_ context.Context, e events.Event) error {
		got = e
		if e.Secret == "fail" {
			return fmt.Errorf("no: %w", rotators.ErrUnsupported)
		}
		if e.Secret == "panic" {
			panic("hook")
		}
		return nil
	}), nil, sdk.Info{Name: "h"}, nil)
	ctx := context.Background()
	if _, err := h.OnEvent(ctx, &proto.Event{Json: []byte(`{"event":"rotated","secret":"a","version":4,"at":"2026-12-02T20:00:00Z","new_field":[1]}`)}); err != nil {
		t.Fatal(err)
	}
	if got.Event != events.Rotated || got.Secret != "a" || got.Version != 4 || got.At.IsZero() {
		t.Errorf("the hook got %+v", got)
	}
	if _, err := h.OnEvent(ctx, &proto.Event{Json: []byte(`[1]`)}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "event JSON") {
		t.Errorf("OnEvent(not an event) = %v; want InvalidArgument naming the event JSON", err)
	}
	_, err := h.OnEvent(ctx, &proto.Event{Json: []byte(`{"secret":"fail"}`)})
	if st, _ := status.FromError(err); len(st.Details()) != 1 || proto.KindError(st.Details()[0].(*proto.ErrorDetail).GetKind()) != rotators.ErrUnsupported {
		t.Errorf("OnEvent of a failing hook = %v; want the unsupported kind in the status", err)
	}
	if _, err := h.OnEvent(ctx, &proto.Event{Json: []byte(`{"secret":"panic"}`)}); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("OnEvent of a panicking hook = %v", err)
	}
	resp, err := h.Info(ctx, &proto.InfoRequest{})
	if err != nil || resp.GetName() != "h" || strings.Join(resp.GetKinds(), ",") != "hook" {
		t.Errorf("Info of a hook-only plugin = %v, %v; want kinds [hook]", resp, err)
	}
	resp, _ = sdk.NewServer(rotator.Rotator{}, sdk.Info{Name: "r"}, nil).Info(ctx, &proto.InfoRequest{})
	if strings.Join(resp.GetKinds(), ",") != "rotator" {
		t.Errorf("Info of a rotator plugin: kinds %v; want [rotator]", resp.GetKinds())
	}
}
