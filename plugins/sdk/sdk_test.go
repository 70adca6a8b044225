package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
