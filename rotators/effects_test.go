package rotators_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rotary-secrets/rotary/rotators"
)

func TestEffectString(t *testing.T) {
	for _, tt := range []struct {
		e    rotators.Effect
		want string
	}{
		{rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: `role "app"`, Count: 3}, `ended 3 sessions of role "app"`},
		{rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: `user "app"`, Count: 1}, `ended 1 session of user "app"`},
		{rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: `role "app"`}, `ended 0 sessions of role "app"`},
		{rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: `role "app_b"`}, `made the previous credential of role "app_b" useless`},
		{rotators.Effect{Kind: "other", Target: "x"}, "other: x"},
	} {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestEffectsNilSafe(t *testing.T) {
	var none *rotators.Effects
	none.Add(rotators.Effect{Kind: rotators.EffectSessionsEnded}) // must not panic
	if got := none.List(); got != nil {
		t.Errorf("nil Effects.List() = %v, want nil", got)
	}
	var fx rotators.Effects
	fx.Add(rotators.Effect{Kind: rotators.EffectSessionsEnded, Target: "a", Count: 2})
	fx.Add(rotators.Effect{Kind: rotators.EffectCredentialRevoked, Target: "b"})
	if got, want := rotators.EffectsSummary(fx.List()), "ended 2 sessions of a; made the previous credential of b useless"; got != want {
		t.Errorf("EffectsSummary = %q, want %q", got, want)
	}
	if got := rotators.EffectsSummary(nil); got != "" {
		t.Errorf("EffectsSummary(nil) = %q, want empty", got)
	}
}

func TestNoWorkingCredentialError(t *testing.T) {
	err := fmt.Errorf("postgres: %w", &rotators.NoWorkingCredentialError{Account: `role "app"`, Server: "db:5432", Reason: "password authentication failed"})
	if !errors.Is(err, rotators.ErrNoWorkingCredential) {
		t.Errorf("errors.Is(%v, ErrNoWorkingCredential) = false", err)
	}
	if errors.Is(errors.New("other"), rotators.ErrNoWorkingCredential) {
		t.Error("an unrelated error matches ErrNoWorkingCredential")
	}
	want := `postgres: neither the current nor the pending password of role "app" logs in to db:5432 (password authentication failed)`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}
