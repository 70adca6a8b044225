package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

func (s *Server) rotationRoutes() {
	s.handle("PUT /v1/secrets/{name}/rotation", s.setRotation)
	s.handle("GET /v1/secrets/{name}/rotation", s.showRotation)
	s.handle("POST /v1/secrets/{name}/rotation/{action}", s.toggleRotation)
	s.handle("GET /v1/secrets/{name}/rotation/history", s.rotationHistory)
	s.handle("POST /v1/secrets/{name}/rotate", s.rotate)
	s.handle("GET /v1/status", s.status)
}

// rotationInfo renders a rotation's settings and state for p: the
// target's error text only if p may read the secret, its category
// otherwise.
func (s *Server) rotationInfo(p *principal, r store.Rotation) client.RotationInfo {
	state, reason := s.engine.ScheduleState(r)
	return s.rotationInfoIn(p, r, state, reason)
}

// scheduleStates returns Engine.ScheduleState memoized for one listing.
// ScheduleState parses the schedule and walks two years of its firings
// (a few milliseconds each): rotations sharing a schedule share the
// answer when it carries no reason (a reason names the secret).
func (s *Server) scheduleStates() func(store.Rotation) (string, string) {
	type key struct {
		schedule        string
		window          time.Duration
		enabled, hasDue bool
	}
	memo := map[key]string{}
	return func(r store.Rotation) (string, string) {
		k := key{r.Schedule, r.Window, r.Enabled, r.NextDueAt != nil}
		if state, ok := memo[k]; ok {
			return state, ""
		}
		state, reason := s.engine.ScheduleState(r)
		if reason == "" {
			memo[k] = state
		}
		return state, reason
	}
}

// rotationInfoIn is rotationInfo with the schedule state already known.
func (s *Server) rotationInfoIn(p *principal, r store.Rotation, state, reason string) client.RotationInfo {
	ri := client.RotationInfo{
		Rotator: r.Rotator, Schedule: r.Schedule, Enabled: r.Enabled, LastRotatedAt: r.LastRotatedAt,
		NextRotationAt: r.NextDueAt, LastError: revealError(p, r.Secret, r.LastError), Failing: s.engine.Failing(r),
	}
	ri.State, ri.StateReason = state, reason
	if !r.Enabled {
		// A disabled rotation is not due: a failed run's retry time stays
		// stored but is not one.
		ri.NextRotationAt = nil
	}
	if r.Window > 0 {
		ri.Window = r.Window.String()
	}
	if len(r.Config) > 0 {
		_ = json.Unmarshal(r.Config, &ri.Config)
	}
	var bound rotators.Target
	if len(r.Target) > 0 && json.Unmarshal(r.Target, &bound) == nil {
		ri.BoundTo = bound.String()
	}
	return ri
}

// rotationSettingsRequest is client.RotationSettings with each field's
// presence kept: a field absent from the JSON keeps its stored value.
type rotationSettingsRequest struct {
	Rotator  json.RawMessage `json:"rotator"`
	Schedule json.RawMessage `json:"schedule"`
	Window   json.RawMessage `json:"window"`
	Config   json.RawMessage `json:"config"`
	Enabled  json.RawMessage `json:"enabled"`
	Rebind   bool            `json:"rebind"`
}

// optString reads a present string field: nil when absent; "" for null.
func optString(field string, raw json.RawMessage) (*string, error) {
	if raw == nil {
		return nil, nil
	}
	v := ""
	if string(raw) != "null" {
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, badRequest("%s: must be a string", field)
		}
	}
	return &v, nil
}

// settings turns a request into the engine's settings change.
func (req rotationSettingsRequest) settings(name string) (rotation.Settings, error) {
	out := rotation.Settings{Secret: name, Rebind: req.Rebind}
	rot, err := optString("rotator", req.Rotator)
	if err != nil {
		return out, err
	}
	if rot != nil {
		out.Rotator = *rot
	}
	if out.Schedule, err = optString("schedule", req.Schedule); err != nil {
		return out, err
	}
	win, err := optString("window", req.Window)
	if err != nil {
		return out, err
	}
	if win != nil {
		var d time.Duration
		if *win != "" {
			if d, err = ParseDuration(*win); err != nil {
				return out, badRequest("window: %s", err)
			}
			if d < 0 {
				return out, badRequest("window: must not be negative")
			}
		}
		out.Window = &d
	}
	if req.Config != nil {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(req.Config, &obj); err != nil {
			return out, badRequest("config: must be a JSON object")
		}
		out.Config = req.Config
	}
	if req.Enabled != nil && string(req.Enabled) != "null" {
		var b bool
		if err := json.Unmarshal(req.Enabled, &b); err != nil {
			return out, badRequest("enabled: must be true or false")
		}
		out.Enabled = &b
	}
	return out, nil
}

// setRotation merges the request into the stored settings: fields absent
// from the JSON keep their values.
func (s *Server) setRotation(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionRotate); err != nil {
		return err
	}
	info(r).action = "rotation.set"
	var req rotationSettingsRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	set, err := req.settings(name)
	if err != nil {
		return err
	}
	// A rotation that uses an admin secret reads it on every run, so the
	// caller must be allowed to read it.
	var c struct {
		AdminSecret string `json:"admin_secret"`
	}
	if len(set.Config) > 0 {
		_ = json.Unmarshal(set.Config, &c)
	}
	if c.AdminSecret != "" && !p.allowed(auth.KindSecret, c.AdminSecret, auth.ActionRead) {
		info(r).result = "denied"
		return forbidden("read", "secret "+strconv.Quote(c.AdminSecret)+" (the admin_secret)")
	}
	if err := s.checkCommandOptions(r, p, name, set.Config); err != nil {
		return err
	}
	res, err := s.engine.Configure(r.Context(), set)
	if errors.Is(err, rotation.ErrRebindNeeded) {
		return &httpError{http.StatusConflict, err.Error()}
	}
	if err != nil {
		return err
	}
	info(r).audited = true
	out := client.RotationShow{Secret: name, RotationInfo: s.rotationInfo(p, res.Rotation), Next: res.Next}
	for _, ch := range res.Changes {
		out.Changes = append(out.Changes, client.RotationChange{Field: ch.Field, From: ch.From, To: ch.To})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// commandOptions are the rotation config options that make a rotator run
// a command of the caller's choosing on the target.
var commandOptions = []string{"test_query"}

// checkCommandOptions refuses a config that sets or changes an option that
// runs a command on the target unless the caller holds admin on the
// secret: rotate lets a token start rotations, not run its own statements
// as the rotated account. Keeping the stored value is not setting it.
func (s *Server) checkCommandOptions(r *http.Request, p *principal, name string, config json.RawMessage) error {
	if p.allowed(auth.KindSecret, name, auth.ActionAdmin) {
		return nil
	}
	var stored map[string]json.RawMessage
	if old, err := s.st.GetRotation(r.Context(), name); err == nil && len(old.Config) > 0 {
		_ = json.Unmarshal(old.Config, &stored)
	}
	var given map[string]json.RawMessage
	if len(config) > 0 {
		_ = json.Unmarshal(config, &given) // a non-object was refused before
	}
	for _, opt := range commandOptions {
		v, ok := given[opt]
		if !ok || string(v) == `""` || string(v) == "null" || string(v) == string(stored[opt]) {
			continue
		}
		info(r).result = "denied"
		return forbidden("admin", "secret "+strconv.Quote(name)+" (the rotation option \""+opt+"\" runs a command on the target)")
	}
	return nil
}

func (s *Server) showRotation(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDescribe); err != nil {
		return err
	}
	rot, err := s.st.GetRotation(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		if _, derr := s.svc.Describe(r.Context(), name); derr != nil {
			return derr
		}
		return notFound("%s: %s", name, rotation.ErrNotConfigured)
	}
	if err != nil {
		return err
	}
	out := client.RotationShow{Secret: name, RotationInfo: s.rotationInfo(p, rot)}
	if spec, err := s.engine.ParseSchedule(rot.Schedule, rot.Window); err == nil && !spec.Manual() && rot.Enabled && rot.NextDueAt != nil {
		t := spec.BaseOf(name, *rot.NextDueAt)
		out.Next = append(out.Next, *rot.NextDueAt)
		for range 2 {
			t = spec.Next(t)
			out.Next = append(out.Next, spec.Due(name, t))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) toggleRotation(w http.ResponseWriter, r *http.Request, p *principal) error {
	action := r.PathValue("action")
	if action != "enable" && action != "disable" {
		return notFound("no such rotation action %q (use enable or disable)", action)
	}
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionRotate); err != nil {
		return err
	}
	info(r).action = "rotation." + action
	rot, err := s.engine.SetEnabled(r.Context(), name, action == "enable")
	if errors.Is(err, rotation.ErrNotConfigured) {
		return notFound("%s", err)
	}
	if err != nil {
		return err
	}
	info(r).audited = true
	out := client.RotationShow{Secret: name, RotationInfo: s.rotationInfo(p, rot)}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) runJSON(ctx context.Context, run store.RotationRun) client.Run {
	out := client.Run{
		ID: run.ID, Secret: run.Secret, Trigger: run.Trigger, State: run.State, Step: run.Step,
		PendingVersion: run.PendingVersion, Attempt: run.Attempt, StartedAt: run.StartedAt, EndedAt: run.EndedAt,
		Error: run.Error, Steps: []client.RunStep{}, Effects: rotation.RunEffects(run),
	}
	steps, err := s.st.ListRunSteps(ctx, run.ID)
	if err == nil {
		for _, st := range steps {
			out.Steps = append(out.Steps, client.RunStep{Step: st.Step, StartedAt: st.StartedAt, EndedAt: st.EndedAt, Result: st.Result, Error: st.Error})
		}
	}
	return out
}

func (s *Server) rotationHistory(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDescribe); err != nil {
		return err
	}
	info(r).action = "rotation.history"
	if _, err := s.svc.Describe(r.Context(), name); err != nil {
		return err
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return badRequest("limit: %q must be between 1 and 10000", v)
		}
		limit = n
	}
	runs, err := s.st.ListRuns(r.Context(), name, limit)
	if err != nil {
		return err
	}
	out := client.RunList{Runs: []client.Run{}}
	for _, run := range runs {
		out.Runs = append(out.Runs, redactRun(p, s.runJSON(r.Context(), run)))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("%s: %q is not true or false", name, v)
	}
	return b, nil
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionRotate); err != nil {
		return err
	}
	wait, err := queryBool(r, "wait")
	if err != nil {
		return err
	}
	emergency, err := queryBool(r, "emergency")
	if err != nil {
		return err
	}
	keep, err := queryBool(r, "keep_sessions")
	if err != nil {
		return err
	}
	info(r).action = "secret.rotate"
	if emergency {
		info(r).detail = "emergency"
	}
	params := rotation.RotateParams{Secret: name, Trigger: rotation.TriggerManual, Emergency: emergency, KeepSessions: keep}
	// A rotation outlives the request that started it: a client that
	// disconnects does not cut a rotation off between its steps.
	ctx := context.WithoutCancel(r.Context())
	if !wait {
		if err := s.engine.Launch(ctx, params); err != nil {
			return rotateError(p, name, err)
		}
		writeJSON(w, http.StatusAccepted, client.RotateResult{Secret: name, State: "started"})
		return nil
	}
	run, err := s.engine.Rotate(ctx, params)
	if err != nil {
		return rotateError(p, name, err)
	}
	cr := redactRun(p, s.runJSON(ctx, run))
	writeJSON(w, http.StatusOK, client.RotateResult{Secret: name, State: run.State, Run: &cr})
	return nil
}

// rotateError maps a rotation's error to a status. The target's text of a
// failed rotation goes only to a caller who may read the secret; others
// get its category (see ErrorCategory).
func rotateError(p *principal, name string, err error) error {
	switch {
	case errors.Is(err, rotation.ErrBusy):
		return &httpError{http.StatusConflict, err.Error()}
	case errors.Is(err, rotation.ErrStopping):
		return &httpError{http.StatusServiceUnavailable, err.Error()}
	case errors.Is(err, rotation.ErrNotConfigured):
		return &httpError{http.StatusBadRequest, err.Error()}
	case errors.Is(err, rotators.ErrTargetMismatch), errors.Is(err, rotation.ErrNotBound):
		// Refused before anything reached the target: the value or the
		// settings must change, retrying will not help.
		return &httpError{http.StatusConflict, "rotation refused: " + err.Error()}
	case errors.Is(err, secrets.ErrNotFound), errors.Is(err, secrets.ErrDeleted), errors.Is(err, secrets.ErrInvalid):
		return err
	default:
		// The engine has already removed every value from the message.
		// "rotation failed: set: ...", not "rotation failed: rotate NAME: set:
		// ...": the caller named the secret.
		msg := strings.TrimPrefix(err.Error(), "rotate "+name+": ")
		return &httpError{http.StatusBadGateway, "rotation failed: " + revealError(p, name, msg)}
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, p *principal) error {
	ri := info(r)
	ri.action, ri.target = "status", "*"
	if !auth.AllowedAny(p.policies, auth.KindSecret, auth.ActionDescribe) {
		ri.result = "denied"
		return forbidden("describe", "secrets")
	}
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	// The token's describe globs go into the query, so a page is full of
	// rows it may see; each row is still checked below.
	rots, err := s.st.ListRotations(r.Context(), store.ListRotationsParams{
		After: after, Limit: limit, Globs: secretGlobs(p, auth.ActionDescribe),
	})
	if err != nil {
		return err
	}
	out := client.Status{Secrets: []client.StatusRow{}}
	states := s.scheduleStates()
	if len(rots) == limit {
		out.Next = rots[len(rots)-1].Secret
	}
	for _, rot := range rots {
		if !p.allowed(auth.KindSecret, rot.Secret, auth.ActionDescribe) {
			continue
		}
		sec, err := s.st.GetSecret(r.Context(), rot.Secret)
		if err != nil {
			continue
		}
		row := client.StatusRow{
			Name: rot.Secret, Type: sec.Type, Rotator: rot.Rotator, Schedule: rot.Schedule, Enabled: rot.Enabled,
			LastRotatedAt: rot.LastRotatedAt, NextRotation: rot.NextDueAt, LastError: revealError(p, rot.Secret, rot.LastError),
			Failing: s.engine.Failing(rot),
		}
		row.State, row.StateReason = states(rot)
		if !rot.Enabled {
			row.NextRotation = nil
		}
		if runs, err := s.st.ListRuns(r.Context(), rot.Secret, 1); err == nil && len(runs) == 1 {
			row.LastResult = runs[0].State
		}
		out.Secrets = append(out.Secrets, row)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
