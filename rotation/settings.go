package rotation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/schedules"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// Schedule states of a rotation (see Engine.ScheduleState).
const (
	StateScheduled     = "scheduled"
	StateManual        = "manual"
	StateDisabled      = "disabled"
	StateUnschedulable = "unschedulable"
)

// ParseSchedule validates a schedule with the engine's minimum interval.
func (e *Engine) ParseSchedule(expr string, window time.Duration) (schedules.Spec, error) {
	return schedules.Parse(expr, window, schedules.Options{MinInterval: e.cfg.MinInterval})
}

// Settings changes a secret's rotation settings. A field left nil (or
// empty) keeps its stored value; a secret without settings needs Rotator.
type Settings struct {
	Secret  string
	Rotator string // "": keep
	// Schedule: nil keeps; "" or "none" is manual rotation only.
	Schedule *string
	// Window: nil keeps; 0 removes it.
	Window *time.Duration
	// Config replaces the whole rotator config; nil keeps it, "{}" or
	// "null" clears it.
	Config  json.RawMessage
	Enabled *bool // nil: keep (new settings: enabled)
	// Rebind confirms a new target identity when the rotation is already
	// bound to another one (see ErrRebindNeeded).
	Rebind bool
}

// Change is one setting a Configure changed, as text for people.
type Change struct {
	Field string
	From  string
	To    string
}

// String reads "schedule: @daily -> @every 2h".
func (c Change) String() string { return c.Field + ": " + c.From + " -> " + c.To }

// Configured is what Configure stored.
type Configured struct {
	Rotation store.Rotation
	// Next are the next three due times (none for a manual or disabled
	// rotation).
	Next []time.Time
	// Changes lists the settings that changed, in a fixed order.
	Changes []Change
}

// errSettingsRaced: the stored settings changed between the read that the
// new ones were merged with and validated against, and the write.
var errSettingsRaced = errors.New("rotation settings changed concurrently")

// settingsAttempts bounds the retries of a Configure that raced another
// settings change.
const settingsAttempts = 8

// lockSettings serializes changes of rotation settings inside tx: it
// locks the head row of the legacy audit chain, which nothing appends to
// any more (PostgreSQL locks its row until the transaction ends; SQLite
// has one writer), so the rows read after it are the latest committed and
// no other settings change commits before this transaction does. Audited
// writes take writer chains and do not queue here.
func lockSettings(ctx context.Context, tx store.Ops) error {
	if _, _, err := tx.AuditHead(ctx, store.AuditLegacyChain); err != nil {
		return fmt.Errorf("lock rotation settings: %w", err)
	}
	return nil
}

// sameSettings reports whether two records hold the same settings (not
// the same run state).
func sameSettings(a, b store.Rotation) bool {
	return a.Rotator == b.Rotator && bytes.Equal(a.Config, b.Config) && a.Schedule == b.Schedule &&
		a.Window == b.Window && a.Enabled == b.Enabled && bytes.Equal(a.Target, b.Target)
}

// Configure merges s into the stored settings (fields s leaves unset keep
// their values), validates the result as a whole and stores it. The merge,
// the checks and the write see one version of the stored settings: when
// another change commits in between, Configure starts over on the new one.
func (e *Engine) Configure(ctx context.Context, s Settings) (Configured, error) {
	for attempt := 1; ; attempt++ {
		out, err := e.configure(ctx, s)
		if !errors.Is(err, errSettingsRaced) || attempt >= settingsAttempts {
			return out, err
		}
	}
}

func (e *Engine) configure(ctx context.Context, s Settings) (Configured, error) {
	info, err := e.svc.Describe(ctx, s.Secret)
	if err != nil {
		return Configured{}, err
	}
	if info.DeletedAt != nil {
		return Configured{}, fmt.Errorf("%s: %w", s.Secret, secrets.ErrDeleted)
	}
	old, err := e.st.GetRotation(ctx, s.Secret)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Configured{}, err
	}
	exists := err == nil

	// The merge: what s does not set keeps its stored value.
	want := old
	want.Secret = s.Secret
	if !exists {
		want = store.Rotation{Secret: s.Secret, Enabled: true, Config: []byte("{}")}
	}
	if s.Rotator != "" {
		want.Rotator = s.Rotator
	}
	if want.Rotator == "" {
		return Configured{}, fmt.Errorf("%w: rotator: required for a secret without rotation settings (postgres, mysql, redis, random or plugin:NAME)", secrets.ErrInvalid)
	}
	if s.Schedule != nil {
		want.Schedule = strings.TrimSpace(*s.Schedule)
	}
	if s.Window != nil {
		want.Window = *s.Window
	} else if s.Schedule != nil && (want.Schedule == "" || want.Schedule == "none") {
		want.Window = 0 // a window belongs to the schedule removed
	}
	if s.Config != nil {
		cfg := bytes.TrimSpace(s.Config)
		if len(cfg) == 0 || string(cfg) == "null" {
			cfg = []byte("{}")
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(cfg, &obj) != nil {
			return Configured{}, fmt.Errorf("%w: config: must be a JSON object", secrets.ErrInvalid)
		}
		want.Config = cfg
	}
	if len(want.Config) == 0 {
		want.Config = []byte("{}")
	}
	if s.Enabled != nil {
		want.Enabled = *s.Enabled
	}

	rot, err := e.cfg.Rotators.Rotator(ctx, want.Rotator)
	if err != nil {
		if errors.Is(err, secrets.ErrInvalid) {
			// "invalid input: rotator: plugin ...", the category once.
			msg := strings.TrimPrefix(err.Error(), secrets.ErrInvalid.Error()+": ")
			return Configured{}, &stepErr{msg: secrets.ErrInvalid.Error() + ": rotator: " + msg, err: err}
		}
		return Configured{}, fmt.Errorf("rotator: %w", err)
	}
	g := e.guard(rot, want.Rotator)
	if v, ok := rot.(rotators.ConfigValidator); ok {
		if err := g.validate(ctx, v, info.Type, want.Config); err != nil {
			// Each layer names itself once: "rotator postgres: config: …",
			// not "config: rotator postgres: postgres: config: …".
			msg := strings.TrimPrefix(err.Error(), want.Rotator+": ")
			if !strings.HasPrefix(msg, "config") {
				msg = "config: " + msg
			}
			return Configured{}, fmt.Errorf("%w: rotator %s: %s", secrets.ErrInvalid, want.Rotator, msg)
		}
	}
	if err := e.checkAdminSecret(ctx, info, want.Config); err != nil {
		return Configured{}, err
	}
	spec, err := e.ParseSchedule(want.Schedule, want.Window)
	if err != nil {
		return Configured{}, fmt.Errorf("%w: %v", secrets.ErrInvalid, err)
	}
	want.Schedule = spec.Expr
	// The account the rotation may touch is fixed now, from the values the
	// caller (who may read the admin secret) configures it with.
	target, scrub, err := e.bind(ctx, g, info, want.Config)
	if err != nil {
		return Configured{}, err
	}
	if en, ok := rot.(rotators.EngineNamer); ok && target != nil {
		if f, ok := target.Field("engine"); ok && f.Value != en.Engine() {
			return Configured{}, fmt.Errorf("%w: rotator: %s rotates %s accounts, but the current value of %s names engine %q (use --rotator %s)",
				secrets.ErrInvalid, want.Rotator, en.Engine(), s.Secret, f.Value, f.Value)
		}
	}
	want.Target = nil
	if target != nil {
		if want.Target, err = json.Marshal(target); err != nil {
			return Configured{}, fmt.Errorf("bind the rotation to its target: %w", err)
		}
	}

	now := e.now().UTC()
	var out Configured
	err = e.st.InTx(ctx, func(tx store.Ops) error {
		if err := lockSettings(ctx, tx); err != nil {
			return err
		}
		cur, err := tx.GetRotationForUpdate(ctx, s.Secret)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if (err == nil) != exists || exists && !sameSettings(cur, old) {
			return errSettingsRaced
		}
		if exists && target != nil && !s.Rebind {
			if err := checkRebind(old.Target, target); err != nil {
				return err
			}
		}
		// Only the settings are written over the latest record; its run
		// state (due time aside, below) stays as the engine left it.
		r := cur
		r.Secret, r.Rotator, r.Config, r.Schedule, r.Window, r.Enabled, r.Target, r.UpdatedAt =
			s.Secret, want.Rotator, want.Config, want.Schedule, want.Window, want.Enabled, want.Target, now
		sameSchedule := exists && old.Schedule == r.Schedule && old.Window == r.Window && old.Enabled == r.Enabled
		switch {
		case spec.Manual() || !r.Enabled:
			r.NextDueAt = nil
		case sameSchedule && r.NextDueAt != nil:
			// A change of config or rotator keeps the due time (and a
			// failed rotation's retry time).
		default:
			n := spec.First(s.Secret, now)
			r.NextDueAt = &n
		}
		if err := tx.PutRotation(ctx, r); err != nil {
			return err
		}
		out.Rotation = r
		out.Changes = settingsChanges(old, r, exists)
		detail := fmt.Sprintf("rotator=%s schedule=%q", r.Rotator, r.Schedule)
		if target != nil {
			detail += " " + targetChange(old.Target, target, exists)
		}
		return e.svc.AuditTx(ctx, tx, secrets.AuditEntry{Action: "rotation.set", Target: s.Secret, Result: "ok", Detail: detail})
	})
	if err != nil {
		return Configured{}, scrub.sanitize(err)
	}
	e.noteSchedule(out.Rotation)
	if e.cfg.OnScheduleChange != nil {
		e.cfg.OnScheduleChange()
	}
	if !spec.Manual() && out.Rotation.Enabled {
		t := now
		for range 3 {
			base := spec.Next(t)
			out.Next = append(out.Next, spec.Due(s.Secret, base))
			t = base
		}
	}
	return out, nil
}

// checkAdminSecret refuses an admin_secret that does not exist, is
// deleted, or is not a secret of the rotated secret's type. The engine of
// its value is compared with the current value's when the rotation is
// bound (see bind).
func (e *Engine) checkAdminSecret(ctx context.Context, info secrets.Info, cfg json.RawMessage) error {
	var c struct {
		AdminSecret any `json:"admin_secret"`
	}
	_ = json.Unmarshal(cfg, &c)
	if c.AdminSecret == nil {
		return nil
	}
	name, ok := c.AdminSecret.(string)
	if !ok {
		return fmt.Errorf("%w: config: admin_secret: must be the name of a secret", secrets.ErrInvalid)
	}
	if name == "" {
		return nil
	}
	if name == info.Name {
		return fmt.Errorf("%w: config: admin_secret %q: is the rotated secret itself", secrets.ErrInvalid, name)
	}
	admin, err := e.svc.Describe(ctx, name)
	if errors.Is(err, secrets.ErrNotFound) {
		return fmt.Errorf("%w: config: admin_secret %q: no such secret", secrets.ErrInvalid, name)
	}
	if err != nil {
		return fmt.Errorf("config: admin_secret %q: %w", name, err)
	}
	if admin.DeletedAt != nil {
		return fmt.Errorf("%w: config: admin_secret %q: the secret is deleted", secrets.ErrInvalid, name)
	}
	if admin.Type != info.Type {
		return fmt.Errorf("%w: config: admin_secret %q: is a %s secret, the rotated secret is %s", secrets.ErrInvalid, name, admin.Type, info.Type)
	}
	return nil
}

// settingsChanges lists what differs between the stored settings and the
// new ones, config key by key.
func settingsChanges(old, now store.Rotation, existed bool) []Change {
	none := "(none)"
	if !existed {
		old = store.Rotation{}
	}
	var out []Change
	add := func(field, from, to string) {
		if from == to {
			return
		}
		if from == "" {
			from = none
		}
		if to == "" {
			to = none
		}
		out = append(out, Change{Field: field, From: from, To: to})
	}
	add("rotator", old.Rotator, now.Rotator)
	sched := func(r store.Rotation) string {
		if r.Schedule == "" && r.Rotator != "" {
			return "none (manual only)"
		}
		return r.Schedule
	}
	add("schedule", sched(old), sched(now))
	win := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	add("window", win(old.Window), win(now.Window))
	if existed {
		add("enabled", fmt.Sprint(old.Enabled), fmt.Sprint(now.Enabled))
	}
	var a, b map[string]json.RawMessage
	_ = json.Unmarshal(old.Config, &a)
	_ = json.Unmarshal(now.Config, &b)
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		add("config."+k, configText(a[k]), configText(b[k]))
	}
	bound := func(raw []byte) string {
		var t rotators.Target
		if len(raw) == 0 || json.Unmarshal(raw, &t) != nil {
			return ""
		}
		return t.String()
	}
	add("bound_to", bound(old.Target), bound(now.Target))
	return out
}

// configText shows one config value: a string without quotes, anything
// else as compact JSON.
func configText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// SetEnabled turns scheduled rotation on or off.
func (e *Engine) SetEnabled(ctx context.Context, secret string, enabled bool) (store.Rotation, error) {
	var out store.Rotation
	err := e.st.InTx(ctx, func(tx store.Ops) error {
		if err := lockSettings(ctx, tx); err != nil {
			return err
		}
		r, err := tx.GetRotationForUpdate(ctx, secret)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s: %w", secret, ErrNotConfigured)
		}
		if err != nil {
			return err
		}
		r.Enabled, r.UpdatedAt = enabled, e.now().UTC()
		r.NextDueAt = nil
		if enabled {
			if spec, err := e.ParseSchedule(r.Schedule, r.Window); err == nil && !spec.Manual() {
				n := spec.First(secret, e.now().UTC())
				r.NextDueAt = &n
			}
		}
		out = r
		if err := tx.PutRotation(ctx, r); err != nil {
			return err
		}
		action := "rotation.disable"
		if enabled {
			action = "rotation.enable"
		}
		return e.svc.AuditTx(ctx, tx, secrets.AuditEntry{Action: action, Target: secret, Result: "ok"})
	})
	if err == nil {
		e.noteSchedule(out)
		if e.cfg.OnScheduleChange != nil {
			e.cfg.OnScheduleChange()
		}
	}
	return out, err
}

// ScheduleState says whether this daemon will rotate r on its schedule:
// scheduled, manual (no schedule), disabled, or unschedulable with the
// reason (the stored schedule does not meet this daemon's
// min_rotation_interval, or no next rotation time is stored).
func (e *Engine) ScheduleState(r store.Rotation) (state, reason string) {
	switch {
	case !r.Enabled:
		return StateDisabled, ""
	case r.Schedule == "":
		return StateManual, ""
	}
	if _, err := schedules.Parse(r.Schedule, r.Window, schedules.Options{}); err != nil {
		return StateUnschedulable, fmt.Sprintf("the stored schedule is not valid: %v; set a new one with `rotary rotation set %s --schedule ...`", err, r.Secret)
	}
	if _, err := e.ParseSchedule(r.Schedule, r.Window); err != nil {
		return StateUnschedulable, fmt.Sprintf("%v: this daemon does not schedule it; set a longer one with `rotary rotation set %s --schedule ...` (or lower min_rotation_interval)", err, r.Secret)
	}
	if r.NextDueAt == nil {
		return StateUnschedulable, fmt.Sprintf("no next rotation time is stored (it was dropped, e.g. under a larger min_rotation_interval); reschedule it with `rotary rotation enable %s`", r.Secret)
	}
	return StateScheduled, ""
}

// Unschedulable reports whether a rotation that should run on a schedule
// cannot (see ScheduleState).
func (e *Engine) Unschedulable(r store.Rotation) bool {
	s, _ := e.ScheduleState(r)
	return s == StateUnschedulable
}

// noteSchedule logs a rotation that became unschedulable, once per secret
// and reason (and that it is scheduled again, once).
func (e *Engine) noteSchedule(r store.Rotation) {
	state, reason := e.ScheduleState(r)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.unschedulable == nil {
		e.unschedulable = map[string]string{}
	}
	prev, had := e.unschedulable[r.Secret]
	if state != StateUnschedulable {
		if had {
			delete(e.unschedulable, r.Secret)
			e.log.Info("rotation schedulable again", "secret", r.Secret, "state", state, "schedule", r.Schedule)
		}
		return
	}
	key := r.Schedule + "\x00" + r.Window.String() + "\x00" + reason
	if had && prev == key {
		return
	}
	e.unschedulable[r.Secret] = key
	e.log.Warn("rotation is not scheduled", "secret", r.Secret, "schedule", r.Schedule, "reason", reason)
}

// CheckSchedules looks at every rotation and logs those that this daemon
// cannot schedule (once per secret and reason). It returns how many there
// are.
func (e *Engine) CheckSchedules(ctx context.Context) (int, error) {
	n := 0
	after := ""
	for {
		rots, err := e.st.ListRotations(ctx, store.ListRotationsParams{After: after, Limit: 1000})
		if err != nil {
			return n, err
		}
		for _, r := range rots {
			e.noteSchedule(r)
			if e.Unschedulable(r) {
				n++
			}
		}
		if len(rots) < 1000 {
			return n, nil
		}
		after = rots[len(rots)-1].Secret
	}
}
