package rotators

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Effect is one thing a rotation did on the target beyond making the new
// credential work: sessions it ended, a credential it made useless. The
// engine stores a run's effects with the run, and `rotary rotate --wait`,
// `rotary rotation history` and the API show them. Never a value: Target
// names an account ("role \"app\"", "user \"app\""), nothing more.
type Effect struct {
	Kind   string `json:"kind"`            // EffectSessionsEnded, EffectCredentialRevoked
	Target string `json:"target"`          // the account it concerns, e.g. role "app"
	Count  int    `json:"count,omitempty"` // sessions_ended: how many
}

// Kinds of Effect.
const (
	// EffectSessionsEnded: Count open sessions of Target were ended
	// (pg_terminate_backend, KILL CONNECTION, CLIENT KILL USER).
	EffectSessionsEnded = "sessions_ended"
	// EffectCredentialRevoked: the credential of Target that was current
	// before the rotation no longer logs in (its password was replaced by
	// one stored nowhere, or removed).
	EffectCredentialRevoked = "credential_revoked"
)

// String says what the effect did, e.g. `ended 3 sessions of role "app"`.
func (e Effect) String() string {
	switch e.Kind {
	case EffectSessionsEnded:
		s := "s"
		if e.Count == 1 {
			s = ""
		}
		return fmt.Sprintf("ended %d session%s of %s", e.Count, s, e.Target)
	case EffectCredentialRevoked:
		return fmt.Sprintf("made the previous credential of %s useless", e.Target)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Target)
}

// EffectsSummary joins effects into one line, e.g. `ended 3 sessions of
// role "app"; made the previous credential of role "app_b" useless`; ""
// for none.
func EffectsSummary(effects []Effect) string {
	parts := make([]string, len(effects))
	for i, e := range effects {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

// Effects collects the effects of one rotator call (FinishRequest.Effects).
// A nil *Effects discards them, so a rotator reports unconditionally.
// Safe for concurrent use.
type Effects struct {
	mu   sync.Mutex
	list []Effect
}

// Add records an effect; on a nil receiver it does nothing.
func (r *Effects) Add(e Effect) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.list = append(r.list, e)
	r.mu.Unlock()
}

// List returns the effects recorded so far, in order.
func (r *Effects) List() []Effect {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Effect(nil), r.list...)
}

// ErrNoWorkingCredential matches a NoWorkingCredentialError: the target
// refused both the stored current and pending credential, so the rotation
// cannot go on until someone stores a credential that works.
var ErrNoWorkingCredential = errors.New("neither the current nor the pending credential logs in")

// NoWorkingCredentialError is returned by a rotator that found that
// neither the current nor the pending value logs in to the target (the
// password was changed behind rotary's back). The engine adds the secret's
// name, the fix (`rotary secret put NAME`) and the time of the next try.
type NoWorkingCredentialError struct {
	Account string // e.g. role "app"
	Server  string // host:port
	Reason  string // the server's refusal in a few words, e.g. "password authentication failed"
	Err     error  // the driver's error, for errors.As; not part of the message
}

func (e *NoWorkingCredentialError) Error() string {
	msg := fmt.Sprintf("neither the current nor the pending password of %s logs in to %s", e.Account, e.Server)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrNoWorkingCredential) true.
func (e *NoWorkingCredentialError) Is(target error) bool { return target == ErrNoWorkingCredential }

// Unwrap returns the driver's error.
func (e *NoWorkingCredentialError) Unwrap() error { return e.Err }

// ErrAdminRefused matches an AdminRefusedError: the target refused the
// admin secret's credential (strategies admin and alternating).
var ErrAdminRefused = errors.New("the admin credential does not log in")

// AdminRefusedError is returned by a rotator whose admin login the
// target refused. The engine adds the admin secret's name and the fix.
type AdminRefusedError struct {
	Account string // e.g. role "rotary_admin"
	Server  string // host:port
	Reason  string // e.g. "password authentication failed"
	Err     error  // the driver's error, for errors.As; not part of the message
}

func (e *AdminRefusedError) Error() string {
	msg := fmt.Sprintf("the admin password of %s does not log in to %s", e.Account, e.Server)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrAdminRefused) true.
func (e *AdminRefusedError) Is(target error) bool { return target == ErrAdminRefused }

// Unwrap returns the driver's error.
func (e *AdminRefusedError) Unwrap() error { return e.Err }
