package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/sensitive"
	"github.com/rotary-secrets/rotary/store"
)

// pluginHost runs the plugins of the catalog (store.Plugin) through one
// plugins.Supervisor: the engine resolves "plugin:NAME" through it, and
// the API registers, lists and removes plugins through it (api.PluginHost).
//
// Registration probes the candidate before it is stored (Probe launches it
// once, outside the supervisor); once stored, the API stops the process of
// the old registration, so that the next use starts the new file.
type pluginHost struct {
	st           store.Store
	log          *slog.Logger
	startTimeout time.Duration
	callTimeout  time.Duration
	sup          *plugins.Supervisor
	now          func() time.Time

	secrets func() []sensitive.Bytes
}

func newPluginHost(st store.Store, log *slog.Logger, startTimeout, callTimeout time.Duration, secrets func() []sensitive.Bytes) *pluginHost {
	return &pluginHost{
		st: st, log: log, startTimeout: startTimeout, callTimeout: callTimeout, now: time.Now, secrets: secrets,
	}
}

// notRegistered is the error of a rotation naming an unknown plugin.
func notRegistered(name string) error {
	return fmt.Errorf("%w: plugin %q is not registered; rotary plugin register %s --path ...", secrets.ErrInvalid, name, name)
}

// lookup is the supervisor's view of the catalog.
func (h *pluginHost) lookup(ctx context.Context, name string) (plugins.Config, error) {
	p, err := h.st.GetPlugin(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return plugins.Config{}, notRegistered(name)
	}
	if err != nil {
		return plugins.Config{}, fmt.Errorf("plugin %s: catalog: %w", name, err)
	}
	return plugins.Config{
		Name: name, Path: p.Path, SHA256: p.SHA256, Env: p.Env,
		StartTimeout: h.startTimeout, CallTimeout: h.callTimeout, Logger: h.log,
	}, nil
}

// onStart records every start of a registered plugin in the catalog.
func (h *pluginHost) onStart(name string, info plugins.Info, startErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := h.st.GetPlugin(ctx, name)
	if err != nil {
		return // removed meanwhile
	}
	now := h.now().UTC()
	p.LastStartAt = &now
	if startErr != nil {
		p.Status, p.LastError = store.PluginFailed, truncateError(startErr.Error())
	} else {
		p = withInfo(p, info)
		p.Status, p.LastError = store.PluginOK, ""
	}
	if err := h.st.RecordPluginStart(ctx, p); err != nil && !errors.Is(err, store.ErrNotFound) {
		h.log.Warn("plugin catalog: record the start", "plugin", name, "err", err)
	}
}

func truncateError(s string) string {
	if len(s) > 1000 {
		return s[:1000] + "…"
	}
	return s
}

// withInfo fills the fields of p that come from the plugin's Info.
func withInfo(p store.Plugin, info plugins.Info) store.Plugin {
	p.Version, p.SecretTypes, p.IdentityFields = info.Version, info.SecretTypes, info.IdentityFields
	p.Kinds = info.Kinds
	return p
}

// Probe implements api.PluginHost: it launches the candidate on its own,
// beside the supervisor (a running process of an older registration keeps
// serving until the registration is stored and the API stops it), asks
// its Info and closes it with its process group.
func (h *pluginHost) Probe(ctx context.Context, p store.Plugin) (store.Plugin, error) {
	pl, err := plugins.Launch(ctx, plugins.Config{
		Name: p.Name, Path: p.Path, SHA256: p.SHA256, Env: p.Env,
		StartTimeout: h.startTimeout, CallTimeout: h.callTimeout, Logger: h.log, Secrets: h.secrets,
	})
	if err != nil {
		return p, err
	}
	info := pl.Info()
	_ = pl.Close()
	now := h.now().UTC()
	p = withInfo(p, info)
	p.LastStartAt, p.Status, p.LastError = &now, store.PluginOK, ""
	return p, nil
}

// Stop implements api.PluginHost.
func (h *pluginHost) Stop(name string) { h.sup.Stop(name) }

// OnEvent delivers a hook plugin's event (hooks.PluginCaller) through the
// supervisor, which starts after the API.
func (h *pluginHost) OnEvent(ctx context.Context, name string, event []byte) error {
	if h.sup == nil {
		return errors.New("plugins are not running yet")
	}
	return h.sup.OnEvent(ctx, name, event)
}

// Process implements api.PluginHost.
func (h *pluginHost) Process(name string) (pid, restarts int, state string) {
	for _, s := range h.sup.Status() {
		if s.Name == name {
			return s.Pid, s.Restarts, s.State
		}
	}
	return 0, 0, ""
}

// rotator resolves plugin NAME for the engine: the registration is
// checked now (an unknown NAME is a clear error), the process is started
// or reused at each call, so that a plugin that cannot start fails the
// step that needed it (retried by the engine's rules) or, when settings
// are saved, their validation.
func (h *pluginHost) rotator(ctx context.Context, name string) (rotators.Rotator, error) {
	p, err := h.st.GetPlugin(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notRegistered(name)
	}
	if err != nil {
		return nil, err
	}
	if len(p.Kinds) > 0 && !slices.Contains(p.Kinds, plugins.KindRotator) {
		return nil, fmt.Errorf("%w: plugin %q serves %s, not a rotator; it cannot rotate secrets", secrets.ErrInvalid, name, strings.Join(p.Kinds, ", "))
	}
	lp := lazyPlugin{h: h, name: name}
	if len(p.IdentityFields) > 0 {
		// The plugin said at its registration that it touches an account:
		// the engine binds its rotations to one.
		return targetedPlugin{lp}, nil
	}
	return lp, nil
}

// lazyPlugin is plugin NAME as a rotator: every call goes to the
// supervisor's running process of NAME, started when needed.
type lazyPlugin struct {
	h    *pluginHost
	name string
}

var (
	_ rotators.ConfigValidator = lazyPlugin{}
	_ rotators.Rollbacker      = lazyPlugin{}
	_ rotators.Targeter        = targetedPlugin{}
)

func (l lazyPlugin) get(ctx context.Context) (rotators.Rotator, error) {
	return l.h.sup.Rotator(ctx, l.name)
}

func (l lazyPlugin) Create(ctx context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	r, err := l.get(ctx)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	return r.Create(ctx, req)
}

func (l lazyPlugin) Set(ctx context.Context, req rotators.SetRequest) error {
	r, err := l.get(ctx)
	if err != nil {
		return err
	}
	return r.Set(ctx, req)
}

func (l lazyPlugin) Test(ctx context.Context, req rotators.TestRequest) error {
	r, err := l.get(ctx)
	if err != nil {
		return err
	}
	return r.Test(ctx, req)
}

func (l lazyPlugin) Finish(ctx context.Context, req rotators.FinishRequest) error {
	r, err := l.get(ctx)
	if err != nil {
		return err
	}
	return r.Finish(ctx, req)
}

func (l lazyPlugin) ValidateConfig(ctx context.Context, secretType string, config json.RawMessage) error {
	r, err := l.get(ctx)
	if err != nil {
		return err
	}
	if v, ok := r.(rotators.ConfigValidator); ok {
		return v.ValidateConfig(ctx, secretType, config)
	}
	return nil
}

func (l lazyPlugin) Rollback(ctx context.Context, req rotators.RollbackRequest) error {
	r, err := l.get(ctx)
	if err != nil {
		return err
	}
	if rb, ok := r.(rotators.Rollbacker); ok {
		return rb.Rollback(ctx, req)
	}
	return nil
}

// targetedPlugin is a plugin that declared identity fields.
type targetedPlugin struct{ lazyPlugin }

func (t targetedPlugin) Target(ctx context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	r, err := t.get(ctx)
	if err != nil {
		return nil, err
	}
	tg, ok := r.(rotators.Targeter)
	if !ok {
		return nil, fmt.Errorf("plugin %s: it declared identity fields when it was registered and no longer does; register it again", t.name)
	}
	return tg.Target(ctx, req)
}

func (h *pluginHost) close() {
	if h.sup != nil {
		if err := h.sup.Close(); err != nil {
			h.log.Warn("plugins: close", "err", err)
		}
	}
}

// resolver is the engine's rotation.Resolver: the built-in rotators by
// name, and plugin:NAME through the plugin host.
type resolver struct {
	builtin rotation.Registry
	host    *pluginHost
}

func (r resolver) Rotator(ctx context.Context, name string) (rotators.Rotator, error) {
	if n, ok := strings.CutPrefix(name, "plugin:"); ok {
		return r.host.rotator(ctx, n)
	}
	return r.builtin.Rotator(ctx, name)
}
