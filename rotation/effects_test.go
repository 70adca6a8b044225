package rotation_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rotary-secrets/rotary/rotation"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/store"
)

// TestEffectsStoredWithTheRun: what Finish reports is kept with the run
// (as read back from the store), and a run whose Finish reports nothing
// has none.
func TestEffectsStoredWithTheRun(t *testing.T) {
	b := setup(t)
	b.rot.FinishFunc = func(r rotators.FinishRequest) error {
		if r.Emergency {
			r.Effects.Add(rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: `role "app"`, Count: 3})
			r.Effects.Add(rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: `role "app_b"`})
		}
		return nil
	}
	run, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if fx := rotation.RunEffects(run); len(fx) != 0 {
		t.Errorf("regular rotation: effects %v, want none", fx)
	}
	run, err = b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db", Emergency: true, KeepSessions: true})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := b.st.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := rotators.EffectsSummary(rotation.RunEffects(stored))
	want := `ended 3 sessions of role "app"; made the previous credential of role "app_b" useless`
	if got != want {
		t.Errorf("stored effects = %q, want %q", got, want)
	}
	// The run's options are still there beside the effects.
	if !strings.Contains(string(stored.Options), `"keep_sessions":true`) || !strings.Contains(string(stored.Options), `"emergency":true`) {
		t.Errorf("run options = %s, want emergency and keep_sessions kept", stored.Options)
	}
}

// TestNoWorkingCredentialSaysWhatToDo: a rotator's "neither works" error
// comes back as one line with the secret, the fix and the next try, with
// no step or rotator prefix; the stored last_error has the same words.
func TestNoWorkingCredentialSaysWhatToDo(t *testing.T) {
	b := setup(t)
	b.rot.SetFunc = func(rotators.SetRequest) error {
		return errors.Join(errors.New("set"), &rotators.NoWorkingCredentialError{Account: `role "app"`, Server: "127.0.0.1:5432", Reason: "password authentication failed"})
	}
	_, err := b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	var fe *rotation.FailedError
	if !errors.As(err, &fe) || !errors.Is(err, rotators.ErrNoWorkingCredential) {
		t.Fatalf("Rotate err = %v, want a FailedError matching ErrNoWorkingCredential", err)
	}
	rot, _ := b.st.GetRotation(ctx, "db")
	wantNext := rot.NextDueAt.UTC().Format("15:04:05")
	want := `db: neither the current nor the pending password of role "app" logs in to 127.0.0.1:5432 (password authentication failed); ` +
		`store the working one with "rotary secret put db", next try at ` + wantNext + " UTC (in "
	if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}
	if d := rot.NextDueAt.Sub(b.clock.Now()); d < 40*time.Second || d > 80*time.Second {
		t.Errorf("next try in %v, want the 1m backoff", d)
	}
	if !strings.HasPrefix(rot.LastError, "neither the current") || !strings.HasSuffix(rot.LastError, `"rotary secret put db"`) {
		t.Errorf("last_error = %q", rot.LastError)
	}
	runs, _ := b.st.ListRuns(ctx, "db", 1)
	if len(runs) != 1 || runs[0].State != store.RunRunning || runs[0].Error != rot.LastError {
		t.Errorf("run = %+v, want it running with the same error", runs)
	}
	// Negative control: another failure keeps its text and gets the
	// retry time after a semicolon.
	b.rot.SetFunc = func(rotators.SetRequest) error { return errors.New("connection refused") }
	_, err = b.eng.Rotate(ctx, rotation.RotateParams{Secret: "db"})
	if err == nil || !strings.HasPrefix(err.Error(), "db: set: connection refused; next try at ") || errors.Is(err, rotators.ErrNoWorkingCredential) {
		t.Errorf("other failure: err = %v", err)
	}
}
