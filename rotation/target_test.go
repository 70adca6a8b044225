package rotation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

// targetFake is a fake database rotator that names its target the way the
// built-in database rotators do (rotators.DBTarget), and counts every call
// that would reach the server.
type targetFake struct {
	*fakeRotator
	mu    sync.Mutex
	calls []string
}

func (f *targetFake) called(what string) {
	f.mu.Lock()
	f.calls = append(f.calls, what)
	f.mu.Unlock()
}

func (f *targetFake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *targetFake) Target(_ context.Context, r rotators.TargetRequest) (rotators.Target, error) {
	cfg, err := rotators.ParseDBConfig(r.Config)
	if err != nil {
		return nil, err
	}
	c, err := rotators.ParseDBCredentials(r.Value)
	if err != nil {
		return nil, err
	}
	var prevUser string
	if r.Previous.Len() > 0 {
		if p, err := rotators.ParseDBCredentials(r.Previous); err == nil {
			prevUser = p.Username
		}
	}
	return rotators.DBTarget(cfg, c, prevUser), nil
}

func (f *targetFake) Create(ctx context.Context, r rotators.CreateRequest) (rotators.CreateResponse, error) {
	f.called("create")
	if f.CreateFunc != nil {
		return f.CreateFunc(r)
	}
	cfg, err := rotators.ParseDBConfig(r.Config)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	cur, err := rotators.ParseDBCredentials(r.Current)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	var prevUser string
	if p, err := rotators.ParseDBCredentials(r.Previous); err == nil {
		prevUser = p.Username
	}
	pw, _ := rotators.GeneratePassword(rotators.PasswordPolicy{})
	v, err := rotators.WithCredentials(r.Current, cfg.PendingUsername(cur.Username, prevUser), pw)
	return rotators.CreateResponse{Value: v}, err
}

func (f *targetFake) Set(ctx context.Context, r rotators.SetRequest) error {
	f.called("set")
	return f.fakeRotator.Set(ctx, r)
}

func (f *targetFake) Test(ctx context.Context, r rotators.TestRequest) error {
	f.called("test")
	return f.fakeRotator.Test(ctx, r)
}

func (f *targetFake) Finish(ctx context.Context, r rotators.FinishRequest) error {
	f.called("finish")
	return f.fakeRotator.Finish(ctx, r)
}

const (
	appValue   = `{"engine":"postgres","host":"db.internal","port":5432,"dbname":"app","username":"app","password":"app-password-1"}`
	adminValue = `{"engine":"postgres","host":"db.internal","port":5432,"dbname":"postgres","username":"rotator_admin","password":"admin-password-1"}`
)

type boundBundle struct {
	*bundle
	tf  *targetFake
	eng *rotation.Engine
	log *bytes.Buffer
}

// setupBound makes a db-credentials secret "app" (and its admin secret
// "app-admin") rotated by the target-aware fake with the given config, and
// saves the rotation settings, which binds the rotation to appValue's
// account.
func setupBound(t *testing.T, config string) *boundBundle {
	t.Helper()
	b := setup(t)
	bb := &boundBundle{bundle: b, tf: &targetFake{fakeRotator: &fakeRotator{t: b.target}}, log: &bytes.Buffer{}}
	var err error
	bb.eng, err = rotation.New(rotation.Config{
		Store: b.st, Secrets: b.svc, Rotators: rotation.Registry{"tfake": bb.tf, "fake": b.rot}, Owner: "daemon-t",
		Now: b.clock.Now, TestAttempts: 1, Logger: slog.New(slog.NewTextHandler(syncWriter{w: bb.log}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"app": appValue, "app-admin": adminValue} {
		if _, err := b.svc.Create(ctx, secrets.CreateParams{Name: name, Type: "db-credentials", Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	b.target.accepted[appValue] = true
	if _, err := bb.eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(config)}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return bb
}

type syncWriter struct{ w *bytes.Buffer }

var logMu sync.Mutex

func (s syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return s.w.Write(p)
}

func (bb *boundBundle) logText() string {
	logMu.Lock()
	defer logMu.Unlock()
	return bb.log.String()
}

func (bb *boundBundle) put(t *testing.T, name, value string) {
	t.Helper()
	if _, err := bb.svc.Put(ctx, secrets.PutParams{Name: name, Value: []byte(value)}); err != nil {
		t.Fatalf("Put %s: %v", name, err)
	}
}

func withField(t *testing.T, base, field string, v any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	m[field] = v
	out, _ := json.Marshal(m)
	return string(out)
}

const adminConfig = `{"strategy":"admin","admin_secret":"app-admin"}`

// TestRotationRefusesAValueNamingAnotherAccount is the attack of issue 8
// class 1: a token that may write the secret puts a value naming another
// account (user, host, port, database, engine), then rotates. The
// rotation must fail naming the field, send nothing to the rotator, and
// leave the stored versions as they were.
func TestRotationRefusesAValueNamingAnotherAccount(t *testing.T) {
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{"username", "postgres", `target mismatch: field "username" is "postgres" in the current version, the rotation is bound to "app"`},
		{"host", "evil.example", `target mismatch: field "host" is "evil.example" in the current version, the rotation is bound to "db.internal"`},
		{"port", 6432, `target mismatch: field "port" is "6432" in the current version, the rotation is bound to "5432"`},
		{"dbname", "postgres", `target mismatch: field "dbname" is "postgres" in the current version, the rotation is bound to "app"`},
		{"engine", "mysql", `target mismatch: field "engine" is "mysql" in the current version, the rotation is bound to "postgres"`},
	} {
		t.Run(tc.field, func(t *testing.T) {
			bb := setupBound(t, adminConfig)
			bb.put(t, "app", withField(t, appValue, tc.field, tc.value))
			before, _ := bb.svc.Describe(ctx, "app")
			_, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Rotate = %v\nwant an error containing %s", err, tc.want)
			}
			if !errors.Is(err, rotators.ErrTargetMismatch) {
				t.Errorf("error does not match ErrTargetMismatch: %v", err)
			}
			if calls := bb.tf.Calls(); len(calls) != 0 {
				t.Errorf("the rotator was called %v; want nothing sent", calls)
			}
			after, _ := bb.svc.Describe(ctx, "app")
			if after.Stages["current"] != before.Stages["current"] || len(after.Stages) != len(before.Stages) {
				t.Errorf("stages changed from %v to %v", before.Stages, after.Stages)
			}
			rot, _ := bb.st.GetRotation(ctx, "app")
			if !strings.Contains(rot.LastError, tc.want) {
				t.Errorf("last_error = %q, want the mismatch", rot.LastError)
			}
			if strings.Contains(rot.LastError, "password") {
				t.Errorf("last_error mentions a password: %q", rot.LastError)
			}
		})
	}
}

// TestPendingValueNamingAnotherAccountIsNeverSet: a rotator whose Create
// makes a value for another user (a buggy or hostile plugin) is stopped
// before Set.
func TestPendingValueNamingAnotherAccountIsNeverSet(t *testing.T) {
	bb := setupBound(t, adminConfig)
	bb.tf.CreateFunc = func(r rotators.CreateRequest) (rotators.CreateResponse, error) {
		v, err := rotators.WithCredentials(r.Current, "postgres", []byte("new-pass-xyz"))
		return rotators.CreateResponse{Value: v}, err
	}
	_, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
	want := `target mismatch: field "username" is "postgres" in the pending version, the rotation is bound to "app"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Rotate = %v, want %s", err, want)
	}
	for _, c := range bb.tf.Calls() {
		if c != "create" {
			t.Errorf("the rotator got %q after a mismatching pending value", c)
		}
	}
	if cur := bb.currentOf(t, "app"); cur != appValue {
		t.Errorf("current changed")
	}
}

func (bb *boundBundle) currentOf(t *testing.T, name string) string {
	t.Helper()
	v, err := bb.svc.Get(ctx, secrets.GetParams{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return string(v.Value.Reveal())
}

// TestBoundRotationStillRotates is the negative control: the bound
// account rotates, every step reaches the rotator, and the binding holds
// across rotations.
func TestBoundRotationStillRotates(t *testing.T) {
	bb := setupBound(t, adminConfig)
	for i := range 2 {
		run, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
		if err != nil || run.State != store.RunSucceeded {
			t.Fatalf("rotation %d: %s, %v", i+1, run.State, err)
		}
	}
	if got := strings.Join(bb.tf.Calls(), " "); got != "create set test finish create set test finish" {
		t.Errorf("calls = %s", got)
	}
	// Another value for the same account (a new password put by hand) is
	// fine too.
	bb.put(t, "app", withField(t, appValue, "password", "hand-written"))
	bb.target.accepted[withField(t, appValue, "password", "hand-written")] = true
	if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
		t.Fatalf("rotation after a put for the same account: %v", err)
	}
}

// TestAlternatingPairIsBound: either user of the pair may be current, a
// third one may not.
func TestAlternatingPairIsBound(t *testing.T) {
	bb := setupBound(t, `{"strategy":"alternating","admin_secret":"app-admin"}`)
	for i := range 3 {
		if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
			t.Fatalf("alternating rotation %d: %v", i+1, err)
		}
	}
	var cur rotators.DBCredentials
	_ = json.Unmarshal([]byte(bb.currentOf(t, "app")), &cur)
	if cur.Username != "app_b" {
		t.Fatalf("after 3 rotations current user = %q, want app_b", cur.Username)
	}
	// The other member of the pair, put by hand: fine.
	pairValue := withField(t, appValue, "password", "by-hand")
	bb.put(t, "app", pairValue)
	bb.target.accepted[pairValue] = true
	if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
		t.Fatalf("rotation with the pair's other user current: %v", err)
	}
	// A third user: refused, nothing sent.
	n := len(bb.tf.Calls())
	bb.put(t, "app", withField(t, appValue, "username", "postgres"))
	_, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
	want := `field "username" is "postgres" in the current version, the rotation is bound to "app" or "app_b"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Rotate with a third user = %v, want %s", err, want)
	}
	if calls := bb.tf.Calls()[n:]; len(calls) != 0 {
		t.Errorf("the rotator was called %v for a third user", calls)
	}
}

// TestAdminValueOnAnotherServerIsRefused: the admin credential must be for
// the server of the bound account, when the settings are saved and on
// every run.
func TestAdminValueOnAnotherServerIsRefused(t *testing.T) {
	bb := setupBound(t, adminConfig)
	bb.put(t, "app-admin", withField(t, adminValue, "host", "other.example"))
	_, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
	want := `target mismatch: field "host" is "other.example" in the admin value, the rotation is bound to "db.internal"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Rotate = %v, want %s", err, want)
	}
	for _, c := range bb.tf.Calls() {
		if c == "set" || c == "test" || c == "finish" {
			t.Errorf("the rotator got %q with the admin value on another server", c)
		}
	}
	// Saving the settings with it is refused too, and changes nothing.
	before, _ := bb.st.GetRotation(ctx, "app")
	_, err = bb.eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(adminConfig)})
	if !errors.Is(err, secrets.ErrInvalid) || !strings.Contains(err.Error(), `field "host" is "other.example" in the admin value of app-admin`) {
		t.Fatalf("Configure with the admin on another server = %v", err)
	}
	after, _ := bb.st.GetRotation(ctx, "app")
	if string(after.Target) != string(before.Target) {
		t.Errorf("the binding changed: %s → %s", before.Target, after.Target)
	}
}

// TestUnboundRotationRefusesToRun: settings saved before rotations were
// bound (no stored target) do not run until saved again.
func TestUnboundRotationRefusesToRun(t *testing.T) {
	bb := setupBound(t, adminConfig)
	rot, _ := bb.st.GetRotation(ctx, "app")
	rot.Target = nil
	if err := bb.st.PutRotation(ctx, rot); err != nil {
		t.Fatal(err)
	}
	_, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
	if !errors.Is(err, rotation.ErrNotBound) || !strings.Contains(err.Error(), "rotary rotation set") {
		t.Fatalf("Rotate of an unbound rotation = %v, want ErrNotBound", err)
	}
	if calls := bb.tf.Calls(); len(calls) != 0 {
		t.Errorf("the rotator was called %v", calls)
	}
	if _, err := bb.eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(adminConfig)}); err != nil {
		t.Fatal(err)
	}
	if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
		t.Fatalf("Rotate after binding again: %v", err)
	}
}

// TestRebindingIsAudited: saving settings after the value moved to
// another account binds the new one, and the audit record says old → new
// without any password.
func TestRebindingIsAudited(t *testing.T) {
	bb := setupBound(t, adminConfig)
	recs, _ := bb.st.ListAudit(ctx, store.AuditFilter{})
	first := recs[len(recs)-1]
	if first.Action != "rotation.set" || !strings.Contains(first.Detail, `target: engine="postgres" host="db.internal" port="5432" dbname="app" username="app"`) {
		t.Errorf("first rotation.set record = %s %q", first.Action, first.Detail)
	}
	moved := withField(t, appValue, "username", "app2")
	bb.put(t, "app", moved)
	// Saving the settings again (say, to change the schedule) does not
	// silently move the binding to the account the new value names.
	before, _ := bb.st.GetRotation(ctx, "app")
	_, err := bb.eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(adminConfig), Schedule: ptr("rate(1 day)")})
	if !errors.Is(err, rotation.ErrRebindNeeded) || !strings.Contains(err.Error(), `field "username" is "app2" in the current version, the rotation is bound to "app"`) {
		t.Fatalf("Configure with another account and no rebind = %v, want ErrRebindNeeded naming the field", err)
	}
	if after, _ := bb.st.GetRotation(ctx, "app"); string(after.Target) != string(before.Target) || after.Schedule != before.Schedule {
		t.Errorf("the refused settings change was stored")
	}
	if _, err := bb.eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(adminConfig), Rebind: true}); err != nil {
		t.Fatal(err)
	}
	recs, _ = bb.st.ListAudit(ctx, store.AuditFilter{})
	last := recs[len(recs)-1]
	want := `target changed: engine="postgres" host="db.internal" port="5432" dbname="app" username="app" sslmode="verify-full" → engine="postgres" host="db.internal" port="5432" dbname="app" username="app2" sslmode="verify-full"`
	if last.Action != "rotation.set" || !strings.Contains(last.Detail, want) {
		t.Errorf("rebinding record = %s %q\nwant it to contain %s", last.Action, last.Detail, want)
	}
	for _, r := range recs {
		if strings.Contains(r.Detail, "password-1") {
			t.Errorf("audit record %s holds a password: %q", r.Action, r.Detail)
		}
	}
	bb.target.accepted[moved] = true
	if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
		t.Fatalf("Rotate after rebinding: %v", err)
	}
}

// TestFailedTestStepIsNeverRecordedAsOk: when neither pending nor current
// works (the target went down after Set), the run goes back to set; the
// test step's history must say failed, not ok.
func TestFailedTestStepIsNeverRecordedAsOk(t *testing.T) {
	b := setup(t)
	b.rot.SetFunc = func(r rotators.SetRequest) error {
		b.target.mu.Lock()
		b.target.down = true
		b.target.mu.Unlock()
		return nil
	}
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err == nil {
		t.Fatal("Rotate succeeded with the target down")
	}
	steps, _ := b.st.ListRunSteps(ctx, run.ID)
	var names []string
	for _, s := range steps {
		names = append(names, s.Step+":"+s.Result)
	}
	if got := strings.Join(names, " "); got != "create:ok set:ok test:failed" {
		t.Errorf("history = %s, want create:ok set:ok test:failed", got)
	}
	if runs, _ := b.st.ListRuns(ctx, "db", 1); runs[0].Step != rotation.StepSet || runs[0].State != store.RunRunning {
		t.Errorf("run = %s at %s, want running at set", runs[0].State, runs[0].Step)
	}
}

// TestAbandonedFinishIsNotRecordedAsOk: a put during the rotation abandons
// it; the finish step, which then promotes nothing, is not "ok".
func TestAbandonedFinishIsNotRecordedAsOk(t *testing.T) {
	b := setup(t)
	b.fp = func(name string) {
		if name == "finish-before" {
			if _, err := b.svc.Put(ctx, secrets.PutParams{Name: "db", Value: []byte("hand-written-pw")}); err != nil {
				t.Errorf("Put: %v", err)
			}
		}
	}
	run, _ := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if run.State != store.RunAbandoned {
		t.Fatalf("run = %s, want abandoned", run.State)
	}
	steps, _ := b.st.ListRunSteps(ctx, run.ID)
	for _, s := range steps {
		if s.Step == rotation.StepFinish && s.Result == "ok" {
			t.Errorf("the abandoned finish step is recorded as ok")
		}
	}
}

const panicCanary = "canary-pw-7f3a9"

// TestRotatorPanicFailsTheRotation: a panic inside a rotator call, from
// any trigger, fails that rotation with "rotator panicked"; the panic
// value (which may hold a secret) reaches no error, record or log line.
func TestRotatorPanicFailsTheRotation(t *testing.T) {
	run := func(t *testing.T, bb *boundBundle, trigger string) {
		switch trigger {
		case "rotate":
			if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err == nil || !strings.Contains(err.Error(), "rotator panicked") {
				t.Fatalf("Rotate = %v, want rotator panicked", err)
			}
		case "scheduled":
			rot, err := bb.st.ClaimRotation(ctx, "app", store.ClaimParams{Owner: bb.eng.Owner(), Now: bb.clock.Now(), LeaseFor: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bb.eng.RunClaimed(ctx, rot, rotation.RotateParams{Secret: "app", Trigger: rotation.TriggerScheduled}); err == nil {
				t.Fatal("scheduled run succeeded")
			}
		case "start":
			if err := bb.eng.Launch(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
				t.Fatal(err)
			}
			bb.eng.Wait()
		case "resume":
			// A run left at set by a daemon that died.
			bb.tf.SetFunc = func(rotators.SetRequest) error { return errors.New("connection refused") }
			_, _ = bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"})
			bb.tf.SetFunc = func(rotators.SetRequest) error { panic("set " + panicCanary) }
			bb.tf.TestFunc = func(rotators.TestRequest) error { panic("test " + panicCanary) }
			if n, err := bb.eng.Resume(ctx); err != nil || n != 1 {
				t.Fatalf("Resume = %d, %v", n, err)
			}
		}
	}
	for _, trigger := range []string{"rotate", "scheduled", "start", "resume"} {
		t.Run(trigger, func(t *testing.T) {
			bb := setupBound(t, adminConfig)
			bb.tf.SetFunc = func(rotators.SetRequest) error { panic("set with password " + panicCanary) }
			run(t, bb, trigger)
			rot, _ := bb.st.GetRotation(ctx, "app")
			if !strings.Contains(rot.LastError, "rotator panicked") {
				t.Errorf("last_error = %q, want rotator panicked", rot.LastError)
			}
			runs, _ := bb.st.ListRuns(ctx, "app", 1)
			steps, _ := bb.st.ListRunSteps(ctx, runs[0].ID)
			texts := []string{rot.LastError, runs[0].Error, bb.logText()}
			for _, s := range steps {
				texts = append(texts, s.Error)
			}
			recs, _ := bb.st.ListAudit(ctx, store.AuditFilter{})
			for _, r := range recs {
				texts = append(texts, r.Detail)
			}
			for _, s := range texts {
				if strings.Contains(s, panicCanary) {
					t.Errorf("the panic value leaked: %q", s)
				}
			}
			if !strings.Contains(bb.logText(), "rotator panicked") || !strings.Contains(bb.logText(), "goroutine") {
				t.Errorf("the log has no panic record with its stack:\n%s", bb.logText())
			}
			if bb.currentOf(t, "app") != appValue {
				t.Errorf("current changed after a panic")
			}
			// The engine lives on: once the rotator behaves, the rotation
			// completes.
			bb.tf.SetFunc, bb.tf.TestFunc = nil, nil
			if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
				t.Fatalf("Rotate after the panic: %v", err)
			}
		})
	}
}

// TestAlternatingPairNeedsNoRebind: after rotations the pair's other user
// is current; saving the settings again is the same binding.
func TestAlternatingPairNeedsNoRebind(t *testing.T) {
	cfg := `{"strategy":"alternating","admin_secret":"app-admin"}`
	bb := setupBound(t, cfg)
	if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bb.eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(cfg), Schedule: ptr("rate(1 day)")}); err != nil {
		t.Fatalf("Configure with the pair's other user current: %v", err)
	}
	recs, _ := bb.st.ListAudit(ctx, store.AuditFilter{})
	if last := recs[len(recs)-1]; !strings.Contains(last.Detail, "target unchanged") {
		t.Errorf("rotation.set record = %q, want target unchanged", last.Detail)
	}
}

// TestPreviousVersionOfAnotherAccountIsWithheld: a value for another
// account put and then replaced by the right one is the previous version
// at the next rotation; the rotator never gets it, even in an emergency
// (which would revoke it).
func TestPreviousVersionOfAnotherAccountIsWithheld(t *testing.T) {
	bb := setupBound(t, adminConfig)
	victim := withField(t, appValue, "username", "postgres")
	bb.put(t, "app", victim)
	bb.put(t, "app", appValue)
	var created rotators.CreateRequest
	var finished rotators.FinishRequest
	bb.tf.CreateFunc = func(r rotators.CreateRequest) (rotators.CreateResponse, error) {
		created = r
		pw, _ := rotators.GeneratePassword(rotators.PasswordPolicy{})
		v, err := rotators.WithCredentials(r.Current, "app", pw)
		return rotators.CreateResponse{Value: v}, err
	}
	bb.tf.FinishFunc = func(r rotators.FinishRequest) error { finished = r; return nil }
	if _, err := bb.eng.Rotate(ctx, rotation.RotateParams{Secret: "app", Emergency: true}); err != nil {
		t.Fatalf("emergency rotation: %v", err)
	}
	if created.Previous.Len() != 0 {
		t.Errorf("Create got the previous version naming another account")
	}
	// Finish's previous is the value current before this run: the bound
	// account's, so it is sent.
	if string(finished.Previous.Reveal()) != appValue {
		t.Errorf("Finish did not get the bound account's previous value")
	}
	if !strings.Contains(bb.logText(), "previous version withheld") || strings.Contains(bb.logText(), "app-password-1") {
		t.Errorf("log: want the withheld warning without any password:\n%s", bb.logText())
	}
}

// panicTargeter panics when asked for a target.
type panicTargeter struct{ *targetFake }

func (panicTargeter) Target(context.Context, rotators.TargetRequest) (rotators.Target, error) {
	panic("target " + panicCanary)
}

// TestTargeterPanicFailsTheSettingsChange: a panic while binding (an API
// request) is an error, not a crash, and its value is not shown.
func TestTargeterPanicFailsTheSettingsChange(t *testing.T) {
	bb := setupBound(t, adminConfig)
	eng, err := rotation.New(rotation.Config{Store: bb.st, Secrets: bb.svc, Rotators: rotation.Registry{"tfake": panicTargeter{bb.tf}}, Now: bb.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = eng.Configure(ctx, rotation.Settings{Secret: "app", Rotator: "tfake", Config: json.RawMessage(adminConfig)})
	if err == nil || !strings.Contains(err.Error(), "rotator panicked") || strings.Contains(err.Error(), panicCanary) {
		t.Fatalf("Configure with a panicking Target = %v, want rotator panicked without the panic value", err)
	}
	if _, err := eng.Rotate(ctx, rotation.RotateParams{Secret: "app"}); err == nil || !strings.Contains(err.Error(), "rotator panicked") {
		t.Fatalf("Rotate with a panicking Target = %v, want rotator panicked", err)
	}
}
