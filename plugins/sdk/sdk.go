// Package sdk is what a plugin imports: ServeRotator turns any
// rotators.Rotator into a rotary rotator plugin, ServeHook any Hook into a
// hook plugin, so a plugin's main is a few lines:
//
//	func main() { sdk.ServeRotator(myrotator.New()) }
//	func main() { sdk.ServeHook(myhook.New()) }
//
// Serve(Config{Rotator: r, Hook: h}) serves both from one process.
//
// The plugin speaks protocol version 1 of plugins/proto over gRPC, with
// the mutual TLS the host sets up (go-plugin AutoMTLS). Values arrive as
// bytes and are sensitive.Bytes before the rotator sees them; the optional
// interfaces rotators.ConfigValidator, rotators.Targeter and
// rotators.Rollbacker are served when the rotator implements them, and
// Info says so to the host, with the kinds served ("rotator", "hook").
// Errors cross as gRPC status messages, with the contract's sentinel
// errors (rotators.ErrUnsupported and the others) kept for errors.Is on
// the host; the host scrubs the values it sent out of them, so an error
// that quotes a value never reaches the daemon's logs. A panic in a call
// fails that call (without its value, which may quote a secret) and
// leaves the plugin running.
//
// A hook gets each event as an events.Event decoded from the contract's
// JSON (fields it does not know are ignored); its error fails the
// delivery, which the host retries by its rules.
//
// A plugin never outlives its host: besides the parent-death signal the
// host asks Linux for, a watchdog exits the plugin when its parent
// process changes.
package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/plugins/proto"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Info describes a rotator plugin to the host (rotary plugin list, and the
// checks made when a rotation's settings are saved).
type Info struct {
	Name        string
	Version     string
	SecretTypes []string // the secret types it rotates, e.g. "key-value"
	// ConfigSchema is a JSON Schema of the config; ConfigExample an
	// example config. Either may be empty.
	ConfigSchema  json.RawMessage
	ConfigExample json.RawMessage
	// IdentityFields are the names of the target fields Target returns,
	// in order (e.g. host, port, username): the identity a rotation is
	// bound to. Empty for a rotator that is not a rotators.Targeter.
	IdentityFields []string
}

// Informer is implemented by a rotator (or hook) that describes itself.
type Informer interface {
	PluginInfo() Info
}

// Hook receives rotary's events: a rotation finished or failed, a version
// was created... (events.Event). An error fails the delivery; the host
// retries it.
type Hook interface {
	OnEvent(ctx context.Context, e events.Event) error
}

// HookFunc is a Hook of one function.
type HookFunc func(ctx context.Context, e events.Event) error

// OnEvent implements Hook.
func (f HookFunc) OnEvent(ctx context.Context, e events.Event) error { return f(ctx, e) }

// Config is what Serve serves: a rotator, a hook, or both.
type Config struct {
	Rotator rotators.Rotator
	Hook    Hook
	// Info describes the plugin; when its Name is empty, the rotator's
	// (or else the hook's) PluginInfo (Informer) is used, and failing
	// that the binary's name.
	Info Info
	// Logger receives the plugin's own log lines (go-plugin's and the
	// SDK's); the default writes JSON lines to stderr, which the host reads
	// into its log under the plugin's name, sanitized.
	Logger hclog.Logger
}

// ServeRotator serves r as a rotator plugin until the host stops it. It
// never returns normally.
func ServeRotator(r rotators.Rotator) { Serve(Config{Rotator: r}) }

// ServeHook serves h as a hook plugin until the host stops it. It never
// returns normally.
func ServeHook(h Hook) { Serve(Config{Hook: h}) }

// Serve serves c.Rotator and c.Hook (at least one).
func Serve(c Config) {
	if c.Rotator == nil && c.Hook == nil {
		fmt.Fprintln(os.Stderr, "sdk.Serve: no rotator and no hook")
		os.Exit(1)
	}
	info := c.Info
	for _, x := range []any{c.Rotator, c.Hook} {
		if i, ok := x.(Informer); ok && info.Name == "" {
			info = i.PluginInfo()
		}
	}
	if info.Name == "" {
		info.Name = filepath.Base(os.Args[0])
	}
	log := c.Logger
	if log == nil {
		log = hclog.New(&hclog.LoggerOptions{Name: info.Name, Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	}
	watchParent(log)
	var rp *proto.RotatorPlugin
	var hp *proto.HookPlugin
	if c.Rotator != nil {
		rp = &proto.RotatorPlugin{Impl: newServer(c.Rotator, c.Hook, info, log)}
	}
	if c.Hook != nil {
		hp = &proto.HookPlugin{Impl: NewHookServer(c.Hook, c.Rotator, info, log)}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  proto.Handshake,
		VersionedPlugins: proto.PluginSets(rp, hp),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           log,
	})
	os.Exit(0)
}

// watchParent exits the plugin when its parent (the daemon) is gone: the
// process is re-parented, so its parent pid changes.
func watchParent(log hclog.Logger) {
	ppid := os.Getppid()
	go func() {
		for range time.Tick(200 * time.Millisecond) {
			if os.Getppid() != ppid {
				log.Warn("the host process is gone; exiting")
				os.Exit(2)
			}
		}
	}()
}

// NewServer returns the gRPC service of r. Serve uses it; it is exported
// for tests that serve a rotator without a process boundary.
func NewServer(r rotators.Rotator, info Info, log hclog.Logger) proto.RotatorServer {
	return newServer(r, nil, info, log)
}

func newServer(r rotators.Rotator, h Hook, info Info, log hclog.Logger) *server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &server{r: r, h: h, info: info, log: log}
}

// NewHookServer returns the gRPC service of hook h (r is the rotator the
// same plugin serves, or nil: Info says both). Serve uses it; it is
// exported for tests that serve a hook without a process boundary.
func NewHookServer(h Hook, r rotators.Rotator, info Info, log hclog.Logger) proto.HookServer {
	return &hookServer{s: newServer(r, h, info, log)}
}

type server struct {
	proto.UnimplementedRotatorServer
	r    rotators.Rotator // nil: the plugin serves only a hook
	h    Hook             // nil: the plugin serves only a rotator
	info Info
	log  hclog.Logger
}

type hookServer struct {
	proto.UnimplementedHookServer
	s *server
}

func (h *hookServer) Info(ctx context.Context, req *proto.InfoRequest) (*proto.InfoResponse, error) {
	return h.s.Info(ctx, req)
}

// OnEvent decodes the event and hands it to the hook.
func (h *hookServer) OnEvent(ctx context.Context, req *proto.Event) (_ *proto.Empty, err error) {
	defer h.s.guard("on event", &err)
	var e events.Event
	if err := json.Unmarshal(req.GetJson(), &e); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "on event: the event is not an event JSON document: %v", err)
	}
	if err := h.s.h.OnEvent(ctx, e); err != nil {
		return nil, wireError(err)
	}
	return &proto.Empty{}, nil
}

// value makes wire bytes a sensitive value at once; empty is nil.
func value(b []byte) rotators.Value {
	if len(b) == 0 {
		return nil
	}
	return sensitive.Bytes(b)
}

func config(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func secret(s *proto.Secret) rotators.Secret {
	return rotators.Secret{Name: s.GetName(), Type: s.GetType(), Region: s.GetRegion(), Version: s.GetVersion()}
}

// wireError turns a rotator's error into a gRPC status whose detail names
// the contract's sentinel error it wraps.
func wireError(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, rotators.ErrUnsupported):
		code = codes.Unimplemented
	case errors.Is(err, rotators.ErrTargetMismatch), errors.Is(err, rotators.ErrWrongIdentity), errors.Is(err, rotators.ErrPlaintext):
		code = codes.FailedPrecondition
	case errors.Is(err, rotators.ErrTestQuery):
		code = codes.InvalidArgument
	}
	st := status.New(code, err.Error())
	if kind := proto.ErrorKind(err); kind != "" {
		if d, derr := st.WithDetails(&proto.ErrorDetail{Kind: kind}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// guard turns a panic of the rotator into an error of the call. The panic
// value is not shown: it may quote a value.
func (s *server) guard(call string, err *error) {
	if p := recover(); p != nil {
		s.log.Error("rotator panicked", "call", call, "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "%s: the rotator panicked", call)
	}
}

func (s *server) Info(context.Context, *proto.InfoRequest) (*proto.InfoResponse, error) {
	_, validates := s.r.(rotators.ConfigValidator)
	_, targets := s.r.(rotators.Targeter)
	_, rollsBack := s.r.(rotators.Rollbacker)
	var kinds []string
	if s.r != nil {
		kinds = append(kinds, proto.RotatorPluginName)
	}
	if s.h != nil {
		kinds = append(kinds, proto.HookPluginName)
	}
	return &proto.InfoResponse{
		Name: s.info.Name, Version: s.info.Version, SecretTypes: s.info.SecretTypes,
		ConfigSchema: string(s.info.ConfigSchema), ConfigExample: string(s.info.ConfigExample),
		IdentityFields:  s.info.IdentityFields,
		ValidatesConfig: validates, Targets: targets, RollsBack: rollsBack,
		Kinds: kinds,
	}, nil
}

func (s *server) ValidateConfig(ctx context.Context, req *proto.ValidateConfigRequest) (_ *proto.Empty, err error) {
	defer s.guard("validate config", &err)
	v, ok := s.r.(rotators.ConfigValidator)
	if !ok {
		return &proto.Empty{}, nil
	}
	if err := v.ValidateConfig(ctx, req.GetSecretType(), config(req.GetConfig())); err != nil {
		return nil, wireError(err)
	}
	return &proto.Empty{}, nil
}

func (s *server) Target(ctx context.Context, req *proto.TargetRequest) (_ *proto.TargetResponse, err error) {
	defer s.guard("target", &err)
	tg, ok := s.r.(rotators.Targeter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this rotator touches no target account")
	}
	t, err := tg.Target(ctx, rotators.TargetRequest{
		SecretType: req.GetSecretType(), Config: config(req.GetConfig()),
		Value: value(req.GetValue()), Previous: value(req.GetPrevious()),
	})
	if err != nil {
		return nil, wireError(err)
	}
	resp := &proto.TargetResponse{}
	for _, f := range t {
		resp.Fields = append(resp.Fields, &proto.TargetField{Name: f.Name, Value: f.Value, Or: f.Or, Server: f.Server})
	}
	return resp, nil
}

func (s *server) Create(ctx context.Context, req *proto.CreateRequest) (_ *proto.CreateResponse, err error) {
	defer s.guard("create", &err)
	resp, err := s.r.Create(ctx, rotators.CreateRequest{
		Secret: secret(req.GetSecret()), Config: config(req.GetConfig()),
		Current: value(req.GetCurrent()), Previous: value(req.GetPrevious()), Emergency: req.GetEmergency(),
	})
	if err != nil {
		return nil, wireError(err)
	}
	if resp.Value.Len() == 0 {
		return nil, status.Error(codes.Internal, "create: the rotator returned an empty value")
	}
	return &proto.CreateResponse{Value: resp.Value.Reveal()}, nil
}

func (s *server) Set(ctx context.Context, req *proto.SetRequest) (_ *proto.Empty, err error) {
	defer s.guard("set", &err)
	err = s.r.Set(ctx, rotators.SetRequest{
		Secret: secret(req.GetSecret()), Config: config(req.GetConfig()),
		Current: value(req.GetCurrent()), Pending: value(req.GetPending()), Admin: value(req.GetAdmin()),
		Emergency: req.GetEmergency(),
	})
	if err != nil {
		return nil, wireError(err)
	}
	return &proto.Empty{}, nil
}

func (s *server) Test(ctx context.Context, req *proto.TestRequest) (_ *proto.Empty, err error) {
	defer s.guard("test", &err)
	err = s.r.Test(ctx, rotators.TestRequest{Secret: secret(req.GetSecret()), Config: config(req.GetConfig()), Value: value(req.GetValue())})
	if err != nil {
		return nil, wireError(err)
	}
	return &proto.Empty{}, nil
}

func (s *server) Finish(ctx context.Context, req *proto.FinishRequest) (_ *proto.FinishResponse, err error) {
	defer s.guard("finish", &err)
	var effects rotators.Effects
	err = s.r.Finish(ctx, rotators.FinishRequest{
		Secret: secret(req.GetSecret()), Config: config(req.GetConfig()),
		Current: value(req.GetCurrent()), Previous: value(req.GetPrevious()), Admin: value(req.GetAdmin()),
		Emergency: req.GetEmergency(), KeepSessions: req.GetKeepSessions(),
		Effects: &effects,
	})
	if err != nil {
		return nil, wireError(err)
	}
	resp := &proto.FinishResponse{}
	for _, e := range effects.List() {
		resp.Effects = append(resp.Effects, &proto.Effect{Kind: e.Kind, Target: e.Target, Count: int64(e.Count)})
	}
	return resp, nil
}

func (s *server) Rollback(ctx context.Context, req *proto.RollbackRequest) (_ *proto.Empty, err error) {
	defer s.guard("rollback", &err)
	rb, ok := s.r.(rotators.Rollbacker)
	if !ok {
		return &proto.Empty{}, nil
	}
	err = rb.Rollback(ctx, rotators.RollbackRequest{
		Secret: secret(req.GetSecret()), Config: config(req.GetConfig()),
		Current: value(req.GetCurrent()), Pending: value(req.GetPending()), Admin: value(req.GetAdmin()),
	})
	if err != nil {
		return nil, wireError(err)
	}
	return &proto.Empty{}, nil
}
