// Command testplugin is the template rotator with faults, for the host's
// tests. Its environment chooses them (the only thing a plugin gets):
//
//	TESTPLUGIN_MARKER=FILE  write FILE at start, holding the environment
//	                        (NUL-separated)
//	TESTPLUGIN_MODE=crash-set   exit in the middle of Set, once per
//	                        TESTPLUGIN_ONCE file (then behave)
//	TESTPLUGIN_MODE=panic-set   panic in Set
//	TESTPLUGIN_MODE=crash-panic crash in Set with an unrecovered panic
//	                        quoting the pending value
//	TESTPLUGIN_MODE=hang-test   never answer Test, ignoring the deadline
//	TESTPLUGIN_MODE=echo        return errors quoting the values, and
//	                        print them to stderr
//	TESTPLUGIN_MODE=child       start a child process that sleeps
//	TESTPLUGIN_MODE=no-target   serve only the four steps (no Target,
//	                        no ValidateConfig)
//	TESTPLUGIN_MODE=bad-info    declare identity fields without a Target
//	TESTPLUGIN_MODE=bad-target  return an undeclared identity field
//	TESTPLUGIN_MODE=rollback    also a rotators.Rollbacker: Rollback puts
//	                        the current password back
//	TESTPLUGIN_MODE=hook        serve a hook beside the rotator; the
//	                        event's secret chooses what OnEvent does:
//	                        "fail" an error wrapping ErrUnsupported that
//	                        quotes $TESTPLUGIN_CANARY, "hang" never
//	                        answer, "panic" panic, "crash" exit; any
//	                        other succeeds
//	TESTPLUGIN_MODE=hook-only   the same hook, and no rotator
//	TESTPLUGIN_MODE=effects     Finish reports one good effect and the
//	                        ones the host must clean or drop (a value
//	                        in the target, an unknown kind, ...)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
	"github.com/rotary-secrets/rotary/plugins/sdk"
	"github.com/rotary-secrets/rotary/rotators"
)

type faulty struct {
	rotator.Rotator
	mode string
}

func (f faulty) Set(ctx context.Context, req rotators.SetRequest) error {
	switch f.mode {
	case "crash-set":
		once := os.Getenv("TESTPLUGIN_ONCE")
		if _, err := os.Stat(once); errors.Is(err, os.ErrNotExist) {
			_ = os.WriteFile(once, nil, 0o600)
			os.Exit(3)
		}
	case "crash-panic":
		go func() { panic("crash with " + string(req.Pending.Reveal())) }()
		<-ctx.Done()
		return ctx.Err()
	case "panic-set":
		panic("set: " + string(req.Pending.Reveal()))
	case "echo":
		fmt.Fprintf(os.Stderr, "setting %s from %s\n", req.Pending.Reveal(), req.Current.Reveal())
		fmt.Fprintf(os.Stderr, "{\"@level\":\"info\",\"@message\":\"json line\",\"value\":%q}\n", req.Pending.Reveal())
		return fmt.Errorf("cannot set %s (current %s): %w", req.Pending.Reveal(), req.Current.Reveal(), rotators.ErrUnsupported)
	}
	return f.Rotator.Set(ctx, req)
}

func (f faulty) Test(ctx context.Context, req rotators.TestRequest) error {
	if f.mode == "hang-test" {
		select {} // ignores ctx: the host's deadline must cut it
	}
	return f.Rotator.Test(ctx, req)
}

func (f faulty) Target(ctx context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	t, err := f.Rotator.Target(ctx, req)
	if f.mode == "bad-target" {
		t = append(t, rotators.TargetField{Name: "undeclared", Value: "x"})
	}
	return t, err
}

func (f faulty) Finish(ctx context.Context, req rotators.FinishRequest) error {
	if f.mode != "effects" {
		return f.Rotator.Finish(ctx, req)
	}
	var prev rotator.Credentials
	if err := json.Unmarshal(req.Previous.Reveal(), &prev); err != nil {
		return err
	}
	for _, e := range []rotators.Effect{
		{Kind: rotators.EffectSessionsEnded, Target: fmt.Sprintf("user %q", prev.Username), Count: 2},
		{Kind: rotators.EffectCredentialRevoked, Target: "user " + prev.Username + " (password " + prev.Password + ")"},
		{Kind: rotators.EffectCredentialRevoked, Target: "user\x1b[31m red\nline"},
		{Kind: rotators.EffectCredentialRevoked, Target: strings.Repeat("x", 500)},
		{Kind: "deleted_everything", Target: "user x"},
		{Kind: rotators.EffectSessionsEnded, Target: "user x", Count: -1},
		{Kind: rotators.EffectCredentialRevoked, Target: " \t "},
	} {
		req.Effects.Add(e)
	}
	return nil
}

// rollbacker undoes Set: the current password works again.
type rollbacker struct{ faulty }

func (r rollbacker) Rollback(_ context.Context, req rotators.RollbackRequest) error {
	var cfg rotator.Config
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return err
	}
	var cur rotator.Credentials
	if err := json.Unmarshal(req.Current.Reveal(), &cur); err != nil {
		return err
	}
	return rotator.Store{Dir: cfg.AccountsDir}.Put(cur.Username, cur.Password)
}

// hook fails, hangs, panics or crashes on demand.
func hook(ctx context.Context, e events.Event) error {
	switch e.Secret {
	case "fail":
		return fmt.Errorf("cannot deliver %s (token %s): %w", e.Event, os.Getenv("TESTPLUGIN_CANARY"), rotators.ErrUnsupported)
	case "hang":
		select {} // ignores ctx: the host's deadline must cut it
	case "panic":
		panic("hook panics")
	case "crash":
		os.Exit(4)
	}
	return nil
}

// plain has the four steps only.
type plain struct{ rotators.Rotator }

func main() {
	if m := os.Getenv("TESTPLUGIN_MARKER"); m != "" {
		if err := os.WriteFile(m, []byte(strings.Join(os.Environ(), "\x00")), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	mode := os.Getenv("TESTPLUGIN_MODE")
	if mode == "child" {
		if err := exec.Command("/bin/sleep", "300").Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	switch mode {
	case "no-target":
		sdk.Serve(sdk.Config{Rotator: plain{faulty{mode: mode}}, Info: sdk.Info{Name: "plain", SecretTypes: []string{"basic-auth"}}})
	case "rollback":
		sdk.ServeRotator(rollbacker{faulty{mode: mode}})
	case "hook":
		sdk.Serve(sdk.Config{Rotator: faulty{mode: mode}, Hook: sdk.HookFunc(hook)})
	case "hook-only":
		sdk.Serve(sdk.Config{Hook: sdk.HookFunc(hook), Info: sdk.Info{Name: "hooky", Version: "0.1"}})
	case "bad-info":
		sdk.Serve(sdk.Config{Rotator: plain{faulty{mode: mode}}, Info: sdk.Info{Name: "bad", SecretTypes: []string{"basic-auth"}, IdentityFields: []string{"username"}}})
	default:
		sdk.ServeRotator(faulty{mode: mode})
	}
}
