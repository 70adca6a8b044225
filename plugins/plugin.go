package plugins

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rotary-secrets/rotary/plugins/proto"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Errors of launching and calling a plugin.
var (
	// ErrChecksum: the plugin file does not match its registered sha256.
	// Nothing of the file ran.
	ErrChecksum = errors.New("the plugin file does not match its registered sha256")
	// ErrExited: the plugin process is gone (it crashed, or was closed).
	ErrExited = errors.New("the plugin process exited")
	// ErrProtocol: the plugin answered something the protocol does not
	// allow (no name, identity fields other than it declared).
	ErrProtocol = errors.New("plugin protocol violation")
	// ErrNotServed: the plugin does not serve the kind called (a rotator
	// step of a hook plugin, an event for a rotator plugin).
	ErrNotServed = errors.New("the plugin does not serve this kind")
)

// Kinds of plugin (Info.Kinds).
const (
	KindRotator = proto.RotatorPluginName
	KindHook    = proto.HookPluginName
)

// Defaults of Config.
const (
	DefaultStartTimeout = 10 * time.Second
	DefaultCallTimeout  = 30 * time.Second
)

// Config says how to start one plugin.
type Config struct {
	// Name names the plugin in logs and errors; the file's base name by
	// default.
	Name string
	// Path is the absolute path of the plugin executable.
	Path string
	// SHA256 is the hex sha256 the file must have; it is checked before
	// every start, and a file that differs never runs.
	SHA256 string
	// Env is the plugin's whole environment (KEY=VALUE), besides the
	// handshake variables go-plugin adds (PLUGIN_*). Nothing of the
	// daemon's environment is inherited. ROTARY_* and PLUGIN_* keys are
	// refused.
	Env []string
	// StartTimeout bounds the start, handshake and Info call
	// (DefaultStartTimeout).
	StartTimeout time.Duration
	// CallTimeout is the deadline of every call (DefaultCallTimeout);
	// an earlier deadline of the call's context wins.
	CallTimeout time.Duration
	// Logger receives go-plugin's messages and the plugin's stderr under
	// the attribute plugin=Name, scrubbed of every value of the calls
	// made (and of Secrets). Discarded when nil.
	Logger *slog.Logger
	// Secrets returns further values the plugin's log lines must never
	// show (optional).
	Secrets func() []sensitive.Bytes
}

// Info is what a plugin says about itself.
type Info struct {
	Name           string          `json:"name"`
	Version        string          `json:"version"`
	SecretTypes    []string        `json:"secret_types"`
	ConfigSchema   json.RawMessage `json:"config_schema,omitempty"`
	ConfigExample  json.RawMessage `json:"config_example,omitempty"`
	IdentityFields []string        `json:"identity_fields,omitempty"`
	// What the plugin's rotator implements of the contract's optional
	// interfaces.
	ValidatesConfig bool `json:"validates_config"`
	Targets         bool `json:"targets"`
	RollsBack       bool `json:"rolls_back"`
	// Kinds are the kinds the plugin serves: KindRotator, KindHook or
	// both.
	Kinds []string `json:"kinds"`
}

// Serves reports whether the plugin serves kind (KindRotator, KindHook).
func (i Info) Serves(kind string) bool { return slices.Contains(i.Kinds, kind) }

// Plugin is one running plugin process. It implements rotators.Rotator,
// rotators.ConfigValidator, rotators.Rollbacker and rotators.Targeter;
// hand the engine Rotator(), which implements Targeter only when the
// plugin does. Calls are safe for concurrent use. Close ends the process
// and its whole process group.
type Plugin struct {
	cfg    Config
	client *plugin.Client
	rpc    proto.RotatorClient
	hook   proto.HookClient
	info   Info
	pid    int
	scrub  *scrubber
	once   sync.Once
}

var (
	_ rotators.Rotator         = (*Plugin)(nil)
	_ rotators.ConfigValidator = (*Plugin)(nil)
	_ rotators.Rollbacker      = (*Plugin)(nil)
	_ rotators.Targeter        = (*Plugin)(nil)
)

func (c *Config) check() ([]byte, error) {
	if c.Path == "" {
		return nil, errors.New("plugin config: field Path is empty")
	}
	if !filepath.IsAbs(c.Path) {
		return nil, fmt.Errorf("plugin config: field Path %q is not an absolute path", c.Path)
	}
	sum, err := hex.DecodeString(strings.TrimSpace(c.SHA256))
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("plugin config: field SHA256 %q is not a hex sha256 (64 hex digits)", c.SHA256)
	}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("plugin config: field Env: %q is not KEY=VALUE", k)
		}
		if strings.HasPrefix(k, "ROTARY_") || strings.HasPrefix(k, "PLUGIN_") {
			return nil, fmt.Errorf("plugin config: field Env: %s: ROTARY_* and PLUGIN_* variables are reserved", k)
		}
	}
	if c.StartTimeout < 0 || c.CallTimeout < 0 {
		return nil, errors.New("plugin config: fields StartTimeout and CallTimeout must not be negative")
	}
	c.Name = cmp.Or(c.Name, filepath.Base(c.Path))
	c.StartTimeout = cmp.Or(c.StartTimeout, DefaultStartTimeout)
	c.CallTimeout = cmp.Or(c.CallTimeout, DefaultCallTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return sum, nil
}

// fileSHA256 hashes the file at path.
func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// Launch checks the plugin file against its sha256, starts it, completes
// the handshake and asks for its Info, all within StartTimeout (and ctx).
func Launch(ctx context.Context, cfg Config) (*Plugin, error) {
	sum, err := cfg.check()
	if err != nil {
		return nil, err
	}
	// A first check gives the precise reason; go-plugin checks again
	// right before it starts the file, with a fresh hash.
	got, err := fileSHA256(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Name, err)
	}
	if !slices.Equal(got, sum) {
		return nil, fmt.Errorf("plugin %s: %s has sha256 %x, registered %x (refused, nothing ran): %w", cfg.Name, cfg.Path, got, sum, ErrChecksum)
	}

	startTimeout := cfg.StartTimeout
	if d, ok := ctx.Deadline(); ok {
		startTimeout = max(min(startTimeout, time.Until(d)), time.Millisecond)
	}
	p := &Plugin{cfg: cfg, scrub: newScrubber(cfg.Secrets)}
	cmd := exec.Command(cfg.Path)
	cmd.Env = append(make([]string, 0, len(cfg.Env)+8), cfg.Env...)
	cmd.SysProcAttr = sysProcAttr()
	logger := newHCLogAdapter(cfg.Logger, cfg.Name, p.scrub)
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  proto.Handshake,
		VersionedPlugins: proto.PluginSets(&proto.RotatorPlugin{}, &proto.HookPlugin{}),
		Cmd:              cmd,
		SkipHostEnv:      true,
		SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, // fresh per start
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           logger,
		// What the plugin writes to stdout and stderr once it serves
		// comes over the connection: log it, scrubbed.
		SyncStdout: &streamWriter{a: logger, stream: "stdout", level: hclog.Debug},
		SyncStderr: &streamWriter{a: logger, stream: "stderr", level: hclog.Info},
	})
	fail := func(err error) (*Plugin, error) {
		p.Kill()
		return nil, err
	}
	type started struct {
		rpc plugin.ClientProtocol
		err error
	}
	done := make(chan started, 1)
	go func() {
		c, err := p.client.Client()
		done <- started{c, err}
	}()
	var st started
	select {
	case st = <-done:
	case <-ctx.Done():
		st = <-done // the start ends within StartTimeout
		if cmd.Process != nil {
			p.pid = cmd.Process.Pid
		}
		return fail(fmt.Errorf("plugin %s: start: %w", cfg.Name, ctx.Err()))
	}
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	if st.err != nil {
		if errors.Is(st.err, plugin.ErrChecksumsDoNotMatch) {
			return fail(fmt.Errorf("plugin %s: %s changed before it could start (refused, nothing ran): %w", cfg.Name, cfg.Path, ErrChecksum))
		}
		return fail(fmt.Errorf("plugin %s: start: %s", cfg.Name, p.scrub.clean(st.err.Error())))
	}
	raw, err := st.rpc.Dispense(proto.RotatorPluginName)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w: %v", cfg.Name, ErrProtocol, err))
	}
	rpc, ok := raw.(proto.RotatorClient)
	if !ok {
		return fail(fmt.Errorf("plugin %s: %w: no rotator client", cfg.Name, ErrProtocol))
	}
	raw, err = st.rpc.Dispense(proto.HookPluginName)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w: %v", cfg.Name, ErrProtocol, err))
	}
	hook, ok := raw.(proto.HookClient)
	if !ok {
		return fail(fmt.Errorf("plugin %s: %w: no hook client", cfg.Name, ErrProtocol))
	}
	ictx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	// A plugin that serves a rotator answers Info there; one that serves
	// only a hook has no Rotator service, and answers on Hook.
	resp, err := rpc.Info(ictx, &proto.InfoRequest{})
	if status.Code(err) == codes.Unimplemented {
		resp, err = hook.Info(ictx, &proto.InfoRequest{})
		if status.Code(err) == codes.Unimplemented {
			return fail(fmt.Errorf("plugin %s: %w: it serves neither a rotator nor a hook", cfg.Name, ErrProtocol))
		}
	}
	if err != nil {
		return fail(p.callError(ictx, "info", err, nil))
	}
	p.info = Info{
		Name: resp.GetName(), Version: resp.GetVersion(), SecretTypes: resp.GetSecretTypes(),
		IdentityFields:  resp.GetIdentityFields(),
		ValidatesConfig: resp.GetValidatesConfig(), Targets: resp.GetTargets(), RollsBack: resp.GetRollsBack(),
		Kinds: resp.GetKinds(),
	}
	if len(p.info.Kinds) == 0 {
		p.info.Kinds = []string{KindRotator} // built before hooks
	}
	if s := resp.GetConfigSchema(); s != "" {
		p.info.ConfigSchema = json.RawMessage(s)
	}
	if s := resp.GetConfigExample(); s != "" {
		p.info.ConfigExample = json.RawMessage(s)
	}
	if err := p.info.check(); err != nil {
		return fail(fmt.Errorf("plugin %s: %w: %v", cfg.Name, ErrProtocol, err))
	}
	if p.info.Serves(KindRotator) {
		p.rpc = rpc
	}
	if p.info.Serves(KindHook) {
		p.hook = hook
	}
	return p, nil
}

func (i Info) check() error {
	if i.Name == "" {
		return errors.New("Info: field name is empty")
	}
	for _, k := range i.Kinds {
		if k != KindRotator && k != KindHook {
			return fmt.Errorf("Info: field kinds: unknown kind %q (rotator, hook)", k)
		}
	}
	if !i.Serves(KindRotator) {
		if len(i.SecretTypes) > 0 || i.Targets || len(i.IdentityFields) > 0 {
			return errors.New("Info: secret_types, targets or identity_fields declared by a plugin that serves no rotator")
		}
		return nil
	}
	if len(i.SecretTypes) == 0 {
		return errors.New("Info: field secret_types is empty")
	}
	if i.Targets && len(i.IdentityFields) == 0 {
		return errors.New("Info: the rotator has a Target but declares no identity_fields")
	}
	if !i.Targets && len(i.IdentityFields) > 0 {
		return errors.New("Info: identity_fields declared but the rotator has no Target")
	}
	for _, s := range []json.RawMessage{i.ConfigSchema, i.ConfigExample} {
		if len(s) > 0 && !json.Valid(s) {
			return errors.New("Info: config_schema and config_example must be JSON")
		}
	}
	return nil
}

// Info is what the plugin said about itself when it started.
func (p *Plugin) Info() Info { return p.info }

// Pid is the plugin's process id, which is also its process group id.
func (p *Plugin) Pid() int { return p.pid }

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Close stops the plugin: it asks it to exit (go-plugin waits up to 2 s),
// then kills what is left of its process group. Idempotent.
func (p *Plugin) Close() error {
	p.once.Do(func() {
		p.client.Kill()
		p.killGroup()
	})
	return nil
}

// Kill kills the plugin's whole process group at once, without asking.
// Idempotent.
func (p *Plugin) Kill() {
	p.once.Do(func() {
		p.killGroup()
		p.client.Kill()
	})
}

func (p *Plugin) killGroup() {
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// Rotator returns the plugin as the engine should see it: a
// rotators.Targeter only when the plugin's rotator is one (the engine
// binds rotations of Targeters to an account, and refuses a Targeter that
// names none).
func (p *Plugin) Rotator() rotators.Rotator {
	if p.info.Targets {
		return p
	}
	return untargeted{p}
}

// untargeted is a Plugin without Target.
type untargeted struct{ p *Plugin }

func (u untargeted) Create(ctx context.Context, r rotators.CreateRequest) (rotators.CreateResponse, error) {
	return u.p.Create(ctx, r)
}
func (u untargeted) Set(ctx context.Context, r rotators.SetRequest) error   { return u.p.Set(ctx, r) }
func (u untargeted) Test(ctx context.Context, r rotators.TestRequest) error { return u.p.Test(ctx, r) }
func (u untargeted) Finish(ctx context.Context, r rotators.FinishRequest) error {
	return u.p.Finish(ctx, r)
}
func (u untargeted) Rollback(ctx context.Context, r rotators.RollbackRequest) error {
	return u.p.Rollback(ctx, r)
}
func (u untargeted) ValidateConfig(ctx context.Context, t string, c json.RawMessage) error {
	return u.p.ValidateConfig(ctx, t, c)
}

// remoteError is an error the plugin returned, scrubbed; it matches the
// contract's sentinel error the plugin's error wrapped.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Is(target error) bool {
	return e.kind != nil && target == e.kind
}

// call runs one call with the call deadline, holding values in the
// scrubber for the plugin's log lines.
func (p *Plugin) call(ctx context.Context, kind, method string, values []sensitive.Bytes, f func(context.Context) error) error {
	if !p.info.Serves(kind) {
		return &notServedError{name: p.cfg.Name, kind: kind}
	}
	scrub := expand(values...)
	release := p.scrub.hold(scrub)
	defer release()
	if p.client.Exited() {
		return fmt.Errorf("plugin %s: %s: %w", p.cfg.Name, method, ErrExited)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		return p.callError(ctx, method, err, scrub)
	}
	return nil
}

// callError turns what a call returned into an error for the engine: the
// plugin's message with every value sent scrubbed out, the contract's
// sentinel errors kept for errors.Is, a deadline or a dead process named.
func (p *Plugin) callError(ctx context.Context, method string, err error, scrub []sensitive.Bytes) error {
	st, _ := status.FromError(err)
	prefix := fmt.Sprintf("plugin %s: %s", p.cfg.Name, method)
	switch {
	case ctx.Err() != nil || deadlineNear(ctx) && (st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled):
		// The call's context ended, or is about to and the plugin's side
		// (which got the deadline with the call and counts it from a
		// little later) gave up first and reset the stream: whatever gRPC
		// made of it, the cause is the deadline.
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s: no answer before the deadline (call timeout %s): %w", prefix, p.cfg.CallTimeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: %w", prefix, ctx.Err())
	case st.Code() == codes.Unavailable || p.client.Exited():
		return fmt.Errorf("%s: %w (%s)", prefix, ErrExited, sensitive.SanitizeString(st.Message(), scrub...))
	}
	var kind error
	for _, d := range st.Details() {
		if ed, ok := d.(*proto.ErrorDetail); ok {
			kind = proto.KindError(ed.GetKind())
		}
	}
	msg := sensitive.SanitizeString(st.Message(), scrub...)
	msg = p.scrub.clean(msg)
	return &remoteError{msg: prefix + ": " + msg, kind: kind}
}

// deadlineNear reports whether ctx's deadline is less than the slack a
// plugin's own copy of the deadline may run ahead of the host's.
func deadlineNear(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < 250*time.Millisecond
}

func secretPB(s rotators.Secret) *proto.Secret {
	return &proto.Secret{Name: s.Name, Type: s.Type, Region: s.Region, Version: s.Version}
}

// ValidateConfig implements rotators.ConfigValidator.
func (p *Plugin) ValidateConfig(ctx context.Context, secretType string, config json.RawMessage) error {
	return p.call(ctx, KindRotator, "validate config", nil, func(ctx context.Context) error {
		_, err := p.rpc.ValidateConfig(ctx, &proto.ValidateConfigRequest{SecretType: secretType, Config: config})
		return err
	})
}

// Target implements rotators.Targeter. The fields must be the identity
// fields the plugin declared, in order.
func (p *Plugin) Target(ctx context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	if !p.info.Targets {
		return nil, fmt.Errorf("plugin %s: target: %w: the plugin touches no target account", p.cfg.Name, rotators.ErrUnsupported)
	}
	var t rotators.Target
	err := p.call(ctx, KindRotator, "target", []sensitive.Bytes{req.Value, req.Previous}, func(ctx context.Context) error {
		resp, err := p.rpc.Target(ctx, &proto.TargetRequest{SecretType: req.SecretType, Config: req.Config, Value: req.Value.Reveal(), Previous: req.Previous.Reveal()})
		if err != nil {
			return err
		}
		for _, f := range resp.GetFields() {
			t = append(t, rotators.TargetField{Name: f.GetName(), Value: f.GetValue(), Or: f.GetOr(), Server: f.GetServer()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(t))
	for i, f := range t {
		names[i] = f.Name
	}
	if !slices.Equal(names, p.info.IdentityFields) {
		return nil, fmt.Errorf("plugin %s: target: %w: fields %q, declared %q", p.cfg.Name, ErrProtocol, names, p.info.IdentityFields)
	}
	return t, nil
}

// Create implements rotators.Rotator.
func (p *Plugin) Create(ctx context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	var out rotators.CreateResponse
	err := p.call(ctx, KindRotator, "create", []sensitive.Bytes{req.Current, req.Previous}, func(ctx context.Context) error {
		resp, err := p.rpc.Create(ctx, &proto.CreateRequest{
			Secret: secretPB(req.Secret), Config: req.Config,
			Current: req.Current.Reveal(), Previous: req.Previous.Reveal(), Emergency: req.Emergency,
		})
		if err != nil {
			return err
		}
		out.Value = sensitive.Bytes(resp.GetValue())
		return nil
	})
	if err == nil && out.Value.Len() == 0 {
		err = fmt.Errorf("plugin %s: create: %w: empty value", p.cfg.Name, ErrProtocol)
	}
	return out, err
}

// Set implements rotators.Rotator.
func (p *Plugin) Set(ctx context.Context, req rotators.SetRequest) error {
	return p.call(ctx, KindRotator, "set", []sensitive.Bytes{req.Current, req.Pending, req.Admin}, func(ctx context.Context) error {
		_, err := p.rpc.Set(ctx, &proto.SetRequest{
			Secret: secretPB(req.Secret), Config: req.Config,
			Current: req.Current.Reveal(), Pending: req.Pending.Reveal(), Admin: req.Admin.Reveal(), Emergency: req.Emergency,
		})
		return err
	})
}

// Test implements rotators.Rotator.
func (p *Plugin) Test(ctx context.Context, req rotators.TestRequest) error {
	return p.call(ctx, KindRotator, "test", []sensitive.Bytes{req.Value}, func(ctx context.Context) error {
		_, err := p.rpc.Test(ctx, &proto.TestRequest{Secret: secretPB(req.Secret), Config: req.Config, Value: req.Value.Reveal()})
		return err
	})
}

// Finish implements rotators.Rotator.
func (p *Plugin) Finish(ctx context.Context, req rotators.FinishRequest) error {
	values := []sensitive.Bytes{req.Current, req.Previous, req.Admin}
	return p.call(ctx, KindRotator, "finish", values, func(ctx context.Context) error {
		resp, err := p.rpc.Finish(ctx, &proto.FinishRequest{
			Secret: secretPB(req.Secret), Config: req.Config,
			Current: req.Current.Reveal(), Previous: req.Previous.Reveal(), Admin: req.Admin.Reveal(),
			Emergency: req.Emergency, KeepSessions: req.KeepSessions,
		})
		if err != nil {
			return err
		}
		for _, e := range resp.GetEffects() {
			if eff, ok := p.effect(e, expand(values...)); ok {
				req.Effects.Add(eff)
			}
		}
		return nil
	})
}

// maxEffectTarget bounds the account name of an effect a plugin reports.
const maxEffectTarget = 200

// effect turns an effect a plugin reported into a rotators.Effect the run
// keeps and shows: a kind the host knows, a count of zero or more, and a
// target of one short line with every value sent to the call scrubbed out
// (a target names an account; a plugin that put a password there must not
// get it into the run history). Anything else is dropped and logged.
func (p *Plugin) effect(e *proto.Effect, scrub []sensitive.Bytes) (rotators.Effect, bool) {
	if k := e.GetKind(); k != rotators.EffectSessionsEnded && k != rotators.EffectCredentialRevoked {
		p.cfg.Logger.Warn("plugin reported an effect of an unknown kind: dropped", "plugin", p.cfg.Name, "kind", strconv.Quote(truncateRunes(k, 40)))
		return rotators.Effect{}, false
	}
	target := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, e.GetTarget())
	target = p.scrub.clean(sensitive.SanitizeString(target, scrub...))
	target = truncateRunes(strings.TrimSpace(target), maxEffectTarget)
	if target == "" || e.GetCount() < 0 {
		p.cfg.Logger.Warn("plugin reported an effect without a target or with a negative count: dropped", "plugin", p.cfg.Name, "kind", e.GetKind())
		return rotators.Effect{}, false
	}
	return rotators.Effect{Kind: e.GetKind(), Target: target, Count: int(min(e.GetCount(), math.MaxInt32))}, true
}

// truncateRunes cuts s to at most n runes, marking a cut with "…".
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Rollback implements rotators.Rollbacker; for a plugin that cannot roll
// back it does nothing.
func (p *Plugin) Rollback(ctx context.Context, req rotators.RollbackRequest) error {
	if !p.info.RollsBack {
		return nil
	}
	return p.call(ctx, KindRotator, "rollback", []sensitive.Bytes{req.Current, req.Pending, req.Admin}, func(ctx context.Context) error {
		_, err := p.rpc.Rollback(ctx, &proto.RollbackRequest{
			Secret: secretPB(req.Secret), Config: req.Config,
			Current: req.Current.Reveal(), Pending: req.Pending.Reveal(), Admin: req.Admin.Reveal(),
		})
		return err
	})
}

// OnEvent delivers the event JSON to the plugin's hook, with the call
// deadline, the scrubbing and the errors of the rotator's calls. A plugin
// that serves no hook answers an error wrapping ErrNotServed.
func (p *Plugin) OnEvent(ctx context.Context, event []byte) error {
	if !json.Valid(event) {
		return fmt.Errorf("plugin %s: on event: the event is not JSON", p.cfg.Name)
	}
	return p.call(ctx, KindHook, "on event", nil, func(ctx context.Context) error {
		_, err := p.hook.OnEvent(ctx, &proto.Event{Json: event})
		return err
	})
}

// notServedError: "plugin x serves no hook".
type notServedError struct{ name, kind string }

func (e *notServedError) Error() string        { return fmt.Sprintf("plugin %s serves no %s", e.name, e.kind) }
func (e *notServedError) Is(target error) bool { return target == ErrNotServed }
