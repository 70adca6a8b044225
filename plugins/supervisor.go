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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// ErrClosed: the supervisor was closed.
var ErrClosed = errors.New("the plugin supervisor is closed")

// Defaults of SupervisorConfig.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = time.Minute
)

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	// Lookup returns how to start plugin NAME (from the catalog): Path,
	// SHA256, Env (Name is set by the supervisor). Called at every
	// (re)start, so a re-registration takes effect at the next start. An
	// error (e.g. not registered) is returned to the caller as is.
	Lookup func(ctx context.Context, name string) (Config, error)
	Logger *slog.Logger
	// Registerer receives the supervisor's metrics; nil = none.
	Registerer prometheus.Registerer
	// StartTimeout and CallTimeout of every plugin; 0 = Launch's
	// defaults (a non-zero value Lookup returns wins).
	StartTimeout, CallTimeout time.Duration
	// Restart backoff after a crash or failed start: BackoffBase·2^(n-1)
	// for the n-th failure in a row, capped at BackoffMax (1s, 1m).
	BackoffBase, BackoffMax time.Duration
	// StateDir records the process group of every running plugin (a
	// file), so that a daemon killed with -9 kills what it left at its
	// next start (NewSupervisor does it, after checking the pid still
	// runs the recorded executable). "" = no record.
	StateDir string
	// OnStart is called after every start attempt (err nil on success)
	// so the catalog can record the last start and status. Optional.
	OnStart func(name string, info Info, err error)
	// Secrets returns values no log line or error may show; passed to
	// every Config.
	Secrets func() []sensitive.Bytes
}

// Plugin states in Status.
const (
	StateRunning = "running"
	StateBackoff = "backoff"
	StateStopped = "stopped"
)

// Status is what the supervisor knows of one plugin it has started.
type Status struct {
	Name      string    `json:"name"`
	Pid       int       `json:"pid,omitempty"`
	State     string    `json:"state"` // running | backoff | stopped
	StartedAt time.Time `json:"started_at,omitzero"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"` // scrubbed
	// RetryAt is when a plugin in backoff may start again.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// Supervisor runs one process per plugin, shared by every caller, and
// restarts it with backoff when it exits or hangs. See the package
// documentation.
type Supervisor struct {
	cfg     SupervisorConfig
	log     *slog.Logger
	metrics *supMetrics
	ctx     context.Context // ends at Close: launches in flight give up
	cancel  context.CancelFunc

	mu       sync.Mutex
	procs    map[string]*proc
	closed   bool
	launches sync.WaitGroup
}

// proc is the supervisor's state of one plugin. Guarded by Supervisor.mu.
type proc struct {
	name      string
	p         *Plugin
	launching *launchOp // non-nil while a start is under way
	gen       int       // bumped by Stop: a start begun before is discarded
	failures  int       // failures in a row, for the backoff
	retryAt   time.Time // no start before
	lastErr   string
	restarts  int
	startedAt time.Time
	stopped   bool
}

type launchOp struct {
	done chan struct{}
	p    *Plugin
	err  error
}

// NewSupervisor returns a supervisor; with a StateDir it first kills what
// a previous daemon recorded there and left running.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Lookup == nil {
		return nil, errors.New("plugin supervisor: field Lookup is nil")
	}
	if cfg.StartTimeout < 0 || cfg.CallTimeout < 0 || cfg.BackoffBase < 0 || cfg.BackoffMax < 0 {
		return nil, errors.New("plugin supervisor: fields StartTimeout, CallTimeout, BackoffBase and BackoffMax must not be negative")
	}
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = max(cmp.Or(cfg.BackoffMax, DefaultBackoffMax), cfg.BackoffBase)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, procs: map[string]*proc{}}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("plugin supervisor: field StateDir: %w", err)
		}
		s.killLeftovers()
	}
	m, err := newSupMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("plugin supervisor: metrics: %w", err)
	}
	s.metrics = m
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// ---- state records ----

// stateRecord is the file StateDir holds for a running plugin.
// The owner is the daemon that started the plugin: a record whose owner
// still runs belongs to a live daemon sharing the directory, and is left
// alone.
type stateRecord struct {
	Name       string `json:"name"`
	Pgid       int    `json:"pgid"`
	Path       string `json:"path"`
	Start      uint64 `json:"start,omitempty"` // /proc start time of the leader
	Owner      int    `json:"owner,omitempty"` // the daemon's pid
	OwnerStart uint64 `json:"owner_start,omitempty"`
}

// recordPath names the record of plugin name started by this process.
func (s *Supervisor) recordPath(name string) string {
	h := sha256.Sum256([]byte(name))
	return filepath.Join(s.cfg.StateDir, fmt.Sprintf("plugin-%s-%d.json", hex.EncodeToString(h[:8]), os.Getpid()))
}

// ownerAlive reports whether the daemon that wrote r still runs.
func ownerAlive(r stateRecord) bool {
	if r.Owner <= 0 {
		return false
	}
	start := processStart(r.Owner)
	return start != 0 && start == r.OwnerStart
}

func (s *Supervisor) record(name string, p *Plugin) {
	if s.cfg.StateDir == "" || p.Pid() <= 0 {
		return
	}
	b, _ := json.Marshal(stateRecord{
		Name: name, Pgid: p.Pid(), Path: p.cfg.Path, Start: processStart(p.Pid()),
		Owner: os.Getpid(), OwnerStart: processStart(os.Getpid()),
	})
	path := s.recordPath(name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		s.log.Warn("plugin supervisor: cannot record the plugin's process group", "plugin", name, "error", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		s.log.Warn("plugin supervisor: cannot record the plugin's process group", "plugin", name, "error", err)
	}
}

func (s *Supervisor) unrecord(name string, p *Plugin) {
	if s.cfg.StateDir == "" {
		return
	}
	path := s.recordPath(name)
	// Only the record of this process: a newer start may have replaced it.
	var r stateRecord
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &r) == nil && r.Pgid != p.Pid() {
		return
	}
	_ = os.Remove(path)
}

func (s *Supervisor) killLeftovers() {
	files, _ := filepath.Glob(filepath.Join(s.cfg.StateDir, "plugin-*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		var r stateRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil || r.Pgid <= 1 {
			s.log.Warn("plugin supervisor: unreadable process record removed", "file", f)
			_ = os.Remove(f)
			continue
		}
		if ownerAlive(r) {
			continue // another daemon's, alive
		}
		killed, why := killLeftover(r)
		lvl := slog.LevelInfo
		if killed {
			lvl = slog.LevelWarn
		}
		s.log.Log(context.Background(), lvl, "plugin supervisor: process left by a previous daemon: "+why, "plugin", r.Name, "pgid", r.Pgid)
		_ = os.Remove(f)
	}
}

// ---- starting and sharing ----

func (s *Supervisor) backoff(failures int) time.Duration {
	d := s.cfg.BackoffBase
	for i := 1; i < failures && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.BackoffMax)
}

func (s *Supervisor) scrub(msg string) string {
	if s.cfg.Secrets == nil {
		return msg
	}
	return sensitive.SanitizeString(msg, expand(s.cfg.Secrets()...)...)
}

// get returns the running process of name, starting it when none runs
// (one start shared by concurrent callers).
func (s *Supervisor) get(ctx context.Context, name string) (*Plugin, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("plugin %s: %w", name, ErrClosed)
		}
		pr := s.procs[name]
		if pr == nil {
			pr = &proc{name: name}
			s.procs[name] = pr
		}
		if pr.p != nil && pr.p.Exited() {
			// It died between calls.
			s.exitedLocked(pr, pr.p, "the plugin process exited")
		}
		if pr.p != nil {
			p := pr.p
			s.mu.Unlock()
			return p, nil
		}
		if op := pr.launching; op != nil {
			s.mu.Unlock()
			select {
			case <-op.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("plugin %s: waiting for its start: %w", name, ctx.Err())
			}
			if op.err != nil {
				return nil, op.err
			}
			if op.p != nil {
				return op.p, nil
			}
			continue // discarded by Stop: start again
		}
		if wait := time.Until(pr.retryAt); wait > 0 && !pr.stopped {
			err := fmt.Errorf("plugin %q is restarting (in %s) after: %s", name, roundUp(wait), pr.lastErr)
			s.mu.Unlock()
			return nil, err
		}
		op := &launchOp{done: make(chan struct{})}
		pr.launching = op
		gen := pr.gen
		s.launches.Add(1)
		s.mu.Unlock()

		p, info, started, err := s.launch(name)

		s.mu.Lock()
		pr.launching = nil
		report := started
		switch {
		case s.closed || pr.gen != gen:
			// Closed or stopped while it started: it must not run.
			report = false
			if p != nil {
				s.mu.Unlock()
				p.Kill()
				s.unrecord(name, p)
				s.mu.Lock()
			}
			if s.closed {
				err = fmt.Errorf("plugin %s: %w", name, ErrClosed)
			}
			op.p, op.err = nil, err
		case err != nil && !started:
			// Lookup failed (not registered...): nothing ran, so no
			// backoff; a plugin never started is not kept in Status.
			if pr.startedAt.IsZero() && pr.restarts == 0 {
				delete(s.procs, name)
			} else {
				pr.lastErr = s.scrub(err.Error())
			}
			op.err = err
		case err != nil:
			pr.failures++
			pr.retryAt = time.Now().Add(s.backoff(pr.failures))
			pr.lastErr = s.scrub(err.Error())
			pr.stopped = false
			op.err = err
		default:
			pr.p = p
			pr.startedAt = time.Now()
			pr.stopped = false
			op.p = p
		}
		close(op.done)
		s.mu.Unlock()
		s.launches.Done()
		if report && s.cfg.OnStart != nil {
			s.cfg.OnStart(name, info, err)
		}
		if op.p != nil {
			return op.p, nil
		}
		if op.err != nil {
			return nil, op.err
		}
	}
}

// scrubbedError is err with the daemon's secrets removed from its message;
// errors.Is still sees err.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func roundUp(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// launch starts name with its catalog entry. It runs outside the lock.
// started is false when Lookup failed (nothing was attempted).
func (s *Supervisor) launch(name string) (_ *Plugin, _ Info, started bool, _ error) {
	cfg, err := s.cfg.Lookup(s.ctx, name)
	if err != nil {
		return nil, Info{}, false, err
	}
	cfg.Name = name
	cfg.Logger = s.log
	cfg.Secrets = s.cfg.Secrets
	cfg.StartTimeout = cmp.Or(cfg.StartTimeout, s.cfg.StartTimeout)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, s.cfg.CallTimeout)
	p, err := Launch(s.ctx, cfg)
	if err != nil {
		result := "error"
		if errors.Is(err, ErrChecksum) {
			result = "checksum"
		}
		s.metrics.start(name, result)
		err = &scrubbedError{msg: s.scrub(err.Error()), err: err}
		s.log.Warn("plugin did not start", "plugin", name, "error", err.Error())
		return nil, Info{}, true, err
	}
	s.metrics.start(name, "ok")
	s.record(name, p)
	s.log.Info("plugin started", "plugin", name, "pid", p.Pid(), "version", p.Info().Version)
	return p, p.Info(), true, nil
}

// exitedLocked forgets p, the process of pr that exited or hung: it is
// killed with its group, a restart is counted, and the next start waits
// for the backoff. s.mu is held.
func (s *Supervisor) exitedLocked(pr *proc, p *Plugin, reason string) {
	if pr.p != p {
		return // already replaced
	}
	pr.p = nil
	if time.Since(pr.startedAt) > s.cfg.BackoffMax {
		pr.failures = 0 // it ran long enough: start the backoff over
	}
	pr.failures++
	pr.restarts++
	pr.retryAt = time.Now().Add(s.backoff(pr.failures))
	pr.lastErr = s.scrub(reason)
	s.metrics.restart(pr.name)
	s.log.Warn("plugin process ended; restarting after backoff", "plugin", pr.name, "pid", p.Pid(),
		"reason", pr.lastErr, "backoff", time.Until(pr.retryAt).Round(time.Millisecond))
	go func() {
		p.Kill()
		s.unrecord(pr.name, p)
	}()
}

// done accounts a call of p and reacts to its failure: a process that
// exited, or that ran past the call timeout (hung: killed and replaced).
func (s *Supervisor) done(ctx context.Context, name string, p *Plugin, method string, start time.Time, err error) error {
	s.metrics.call(name, method, time.Since(start))
	if err == nil {
		return nil
	}
	var kind, reason string
	switch {
	case errors.Is(err, ErrExited):
		kind, reason = "exited", err.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		kind = "deadline"
		// The caller's deadline cut the call when it ended, or would end,
		// before the call timeout: the plugin's side may reset the stream
		// a moment before the caller's context reports itself done.
		callerCut := ctx.Err() != nil
		if dl, ok := ctx.Deadline(); ok && dl.Before(start.Add(cmp.Or(s.cfg.CallTimeout, DefaultCallTimeout))) {
			callerCut = true
		}
		if !callerCut {
			// The plugin's call timeout, not the caller's deadline, cut
			// the call: the plugin hangs.
			reason = err.Error() + " (the plugin hangs; killed)"
		}
	default:
		kind = "error"
	}
	s.metrics.failure(name, method, kind)
	if reason != "" {
		s.mu.Lock()
		if pr := s.procs[name]; pr != nil {
			s.exitedLocked(pr, p, reason)
		}
		s.mu.Unlock()
	}
	return err
}

// ---- the API ----

// Rotator returns a rotators.Rotator that calls the running process of
// name, launching it if none runs. The value is a rotators.Targeter only
// when the plugin's rotator is one (as Plugin.Rotator), and always a
// ConfigValidator and a Rollbacker.
func (s *Supervisor) Rotator(ctx context.Context, name string) (rotators.Rotator, error) {
	p, err := s.get(ctx, name)
	if err != nil {
		return nil, err
	}
	if !p.Info().Serves(KindRotator) {
		return nil, &notServedError{name: name, kind: KindRotator}
	}
	r := &supRotator{s: s, name: name}
	if p.Info().Targets {
		return supTargeter{r}, nil
	}
	return r, nil
}

// OnEvent delivers the event JSON to hook plugin name (same process
// sharing and restarts as Rotator). A plugin that serves no hook answers
// an error wrapping ErrNotServed.
func (s *Supervisor) OnEvent(ctx context.Context, name string, event []byte) error {
	p, err := s.get(ctx, name)
	if err != nil {
		return err
	}
	start := time.Now()
	return s.done(ctx, name, p, "on_event", start, p.OnEvent(ctx, event))
}

// Info launches name if needed and returns its Info.
func (s *Supervisor) Info(ctx context.Context, name string) (Info, error) {
	p, err := s.get(ctx, name)
	if err != nil {
		return Info{}, err
	}
	return p.Info(), nil
}

// Status returns the state of every plugin the supervisor has started,
// by name.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.procs))
	for _, pr := range s.procs {
		st := Status{Name: pr.name, Restarts: pr.restarts, LastError: pr.lastErr, StartedAt: pr.startedAt}
		switch {
		case pr.p != nil:
			st.State, st.Pid = StateRunning, pr.p.Pid()
		case pr.stopped || s.closed || !pr.retryAt.After(time.Now()):
			st.State = StateStopped
		default:
			st.State, st.RetryAt = StateBackoff, pr.retryAt
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Stop ends name's process (after remove or re-register); the next use
// launches again, at once.
func (s *Supervisor) Stop(name string) {
	s.mu.Lock()
	pr := s.procs[name]
	if pr == nil {
		s.mu.Unlock()
		return
	}
	p := pr.p
	pr.p = nil
	pr.gen++
	pr.stopped = true
	pr.failures = 0
	pr.retryAt = time.Time{}
	s.mu.Unlock()
	if p != nil {
		_ = p.Close()
		s.unrecord(name, p)
		s.log.Info("plugin stopped", "plugin", name, "pid", p.Pid())
	}
}

// Close ends every process (and calls plugin.CleanupClients); later calls
// fail with ErrClosed. Starts under way are waited for and killed.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	var running []*proc
	for _, pr := range s.procs {
		if pr.p != nil {
			running = append(running, pr)
		}
	}
	ps := make([]*Plugin, len(running))
	for i, pr := range running {
		ps[i] = pr.p
		pr.p = nil
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Close()
			s.unrecord(running[i].name, p)
		}()
	}
	wg.Wait()
	s.launches.Wait()
	plugin.CleanupClients()
	return nil
}

// ---- the rotator the engine gets ----

// supRotator calls the current process of a plugin for every step.
type supRotator struct {
	s    *Supervisor
	name string
}

var (
	_ rotators.Rotator         = (*supRotator)(nil)
	_ rotators.ConfigValidator = (*supRotator)(nil)
	_ rotators.Rollbacker      = (*supRotator)(nil)
	_ rotators.Targeter        = supTargeter{}
)

// supTargeter is a supRotator of a plugin whose rotator has a Target.
type supTargeter struct{ *supRotator }

func (t supTargeter) Target(ctx context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	var out rotators.Target
	err := t.do(ctx, "target", func(p *Plugin) (err error) {
		out, err = p.Target(ctx, req)
		return err
	})
	return out, err
}

func (r *supRotator) do(ctx context.Context, method string, f func(*Plugin) error) error {
	p, err := r.s.get(ctx, r.name)
	if err != nil {
		return err
	}
	start := time.Now()
	return r.s.done(ctx, r.name, p, method, start, f(p))
}

func (r *supRotator) Create(ctx context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	var out rotators.CreateResponse
	err := r.do(ctx, "create", func(p *Plugin) (err error) {
		out, err = p.Create(ctx, req)
		return err
	})
	return out, err
}

func (r *supRotator) Set(ctx context.Context, req rotators.SetRequest) error {
	return r.do(ctx, "set", func(p *Plugin) error { return p.Set(ctx, req) })
}

func (r *supRotator) Test(ctx context.Context, req rotators.TestRequest) error {
	return r.do(ctx, "test", func(p *Plugin) error { return p.Test(ctx, req) })
}

func (r *supRotator) Finish(ctx context.Context, req rotators.FinishRequest) error {
	return r.do(ctx, "finish", func(p *Plugin) error { return p.Finish(ctx, req) })
}

func (r *supRotator) Rollback(ctx context.Context, req rotators.RollbackRequest) error {
	return r.do(ctx, "rollback", func(p *Plugin) error { return p.Rollback(ctx, req) })
}

func (r *supRotator) ValidateConfig(ctx context.Context, secretType string, config json.RawMessage) error {
	return r.do(ctx, "validate_config", func(p *Plugin) error { return p.ValidateConfig(ctx, secretType, config) })
}

// ---- metrics ----

type supMetrics struct {
	starts   *prometheus.CounterVec
	restarts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

func newSupMetrics(reg prometheus.Registerer) (*supMetrics, error) {
	m := &supMetrics{
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotary_plugin_starts_total",
			Help: "Plugin process starts by plugin and result (ok, checksum, error)."}, []string{"plugin", "result"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotary_plugin_restarts_total",
			Help: "Plugin processes that exited or hung and are restarted."}, []string{"plugin"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rotary_plugin_call_duration_seconds",
			Help:    "Plugin call latency by plugin and method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"plugin", "method"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotary_plugin_call_failures_total",
			Help: "Failed plugin calls by plugin, method and kind (deadline, exited, error)."}, []string{"plugin", "method", "kind"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.starts, m.restarts, m.duration, m.failures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *supMetrics) start(name, result string) {
	m.starts.WithLabelValues(name, result).Inc()
	// The plugin's restart count exists from its first start, at 0, so
	// that increase() over it sees the first restart.
	m.restarts.WithLabelValues(name)
}
func (m *supMetrics) restart(name string) { m.restarts.WithLabelValues(name).Inc() }
func (m *supMetrics) call(name, method string, d time.Duration) {
	m.duration.WithLabelValues(name, method).Observe(d.Seconds())
}
func (m *supMetrics) failure(name, method, kind string) {
	m.failures.WithLabelValues(name, method, kind).Inc()
}
