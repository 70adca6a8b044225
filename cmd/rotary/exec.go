package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/sensitive"
)

// envRef is one --env VAR=NAME[#field].
type envRef struct {
	Var, Secret, Field string
}

func (r envRef) ref() string {
	if r.Field == "" {
		return r.Secret
	}
	return r.Secret + "#" + r.Field
}

// parseRef parses NAME or NAME#field.
func parseRef(s string) (name, field string, err error) {
	name, field, hasField := strings.Cut(s, "#")
	if name == "" {
		return "", "", fmt.Errorf("%q: the secret name is empty", s)
	}
	if hasField && field == "" {
		return "", "", fmt.Errorf("%q: the field after # is empty", s)
	}
	return name, field, nil
}

func parseEnvRefs(items []string) ([]envRef, error) {
	var refs []envRef
	seen := map[string]bool{}
	for _, it := range items {
		v, ref, ok := strings.Cut(it, "=")
		if !ok || !validEnvName(v) {
			return nil, usageErrorf("--env %q: want VAR=NAME or VAR=NAME#field, VAR made of letters, digits and _", it)
		}
		if seen[v] {
			return nil, usageErrorf("--env: variable %s given twice", v)
		}
		seen[v] = true
		name, field, err := parseRef(ref)
		if err != nil {
			return nil, usageErrorf("--env %s: %v", v, err)
		}
		refs = append(refs, envRef{Var: v, Secret: name, Field: field})
	}
	return refs, nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, ch := range s {
		if !(ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			return false
		}
	}
	return true
}

// signalNames are the signals --on-rotate signal:NAME accepts.
var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "TERM": syscall.SIGTERM,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "WINCH": syscall.SIGWINCH,
}

// forwarded are the signals exec passes on to its child.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// resolveRef reads one reference from the cache: the whole value, or one
// field of a JSON value. Errors name the reference, never the value.
func resolveRef(ctx context.Context, c *client.Client, name, field string) ([]byte, error) {
	cur, err := c.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if field == "" {
		return cur.Value, nil
	}
	defer sensitive.Bytes(cur.Value).Wipe()
	s, err := client.FieldOf(name, cur.Value, field)
	if err != nil {
		return nil, usageError{err}
	}
	return []byte(s), nil
}

// refError turns the failure to read a reference into one line that
// starts with label, with the exit code the failure deserves (not found
// 3, denied 4, ...).
func (a *app) refError(label string, err error) error {
	f := describeError(err, a.addr)
	return exitError{code: f.exit, msg: label + ": " + f.msg, word: f.word}
}

func (a *app) execCmd() *cobra.Command {
	var envs []string
	var onRotate, grace string
	cmd := &cobra.Command{
		Use:   "exec --env VAR=NAME[#field]... [--on-rotate restart|signal:HUP|none] -- CMD [ARGS...]",
		Short: "Run a command with secrets in its environment, restarting or signalling it on rotation",
		Long: `Run CMD with each --env variable set to a secret's current value (or one field
of a JSON value, NAME#field), in addition to rotary's own environment minus
ROTARY_TOKEN. rotary exec follows the daemon's events; when a referenced
secret gets a new current version (a rotation, a put):

  restart      (default) stop the child (SIGTERM, SIGKILL after --restart-grace)
               and start it again with the new values
  signal:SIG   send SIG (HUP, USR1, USR2, INT, QUIT, TERM, WINCH) to the child
  none         nothing

Signals rotary exec receives (INT, TERM, HUP, QUIT, USR1, USR2, WINCH) are passed
on to the child, except Ctrl-C, Ctrl-\ and resizes of the terminal it runs in
the foreground of, which reach the child from the terminal itself (once, not
twice); rotary exec exits with the child's exit code (128+N when a
signal N ended it), printing nothing of its own. Values never appear in its
messages.`,
		Example: `  rotary exec --env DB_PASSWORD=app/db#password --env API_KEY=app/api-key -- ./server
  rotary exec --env PGPASSWORD=app/db#password --on-rotate signal:HUP -- pgbouncer pgb.ini`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				if len(args) == 0 {
					return usageErrorf("missing the command: rotary exec --env VAR=NAME -- CMD [ARGS...]")
				}
				return usageErrorf("unexpected argument %q before --: put the command after --", args[0])
			}
			if len(envs) == 0 {
				return usageErrorf("--env VAR=NAME[#field] is required (at least one)")
			}
			refs, err := parseEnvRefs(envs)
			if err != nil {
				return err
			}
			var sig syscall.Signal
			switch {
			case onRotate == "restart" || onRotate == "none":
			case strings.HasPrefix(onRotate, "signal:"):
				name := strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(onRotate, "signal:"), "SIG"))
				var ok bool
				if sig, ok = signalNames[name]; !ok {
					return usageErrorf("--on-rotate %q: unknown signal (HUP, USR1, USR2, INT, QUIT, TERM, WINCH)", onRotate)
				}
			default:
				return usageErrorf("--on-rotate %q: use restart, signal:HUP (or another signal) or none", onRotate)
			}
			g, err := durationFlag("restart-grace", grace)
			if err != nil {
				return err
			}
			c, err := a.cacheClient(true)
			if err != nil {
				return err
			}
			defer c.Close()
			return a.runExec(cmd.Context(), c, refs, onRotate, sig, g, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&envs, "env", nil, "VAR=NAME or VAR=NAME#field (repeatable)")
	f.StringVar(&onRotate, "on-rotate", "restart", "on a new current version: restart, signal:SIG or none")
	f.StringVar(&grace, "restart-grace", "10s", "on restart, how long the child has to exit after SIGTERM before SIGKILL")
	return cmd
}

// runExec runs the child and supervises it until it exits on its own.
func (a *app) runExec(ctx context.Context, c *client.Client, refs []envRef, onRotate string, sig syscall.Signal, grace time.Duration, argv []string) error {
	// Signals first: from now on they go to the child, not to us.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	changed := make(chan struct{}, 1)
	var names []string
	for _, r := range refs {
		if !slices.Contains(names, r.Secret) {
			names = append(names, r.Secret)
		}
	}
	for _, n := range names {
		stop, err := c.Watch(n, func(client.Event) {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := c.WaitConnected(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to the daemon's events: %w", err)
	}
	values, err := a.execValues(ctx, c, refs)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return usageErrorf("command %q: %v", argv[0], errors.Unwrap(err))
	}
	start := func() (*exec.Cmd, chan struct{}, error) {
		cmd := exec.Command(path, argv[1:]...)
		cmd.Args[0] = argv[0]
		cmd.Env = childEnv(os.Environ(), refs, values)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, a.stdout, a.stderr
		if f, ok := a.stdin.(*os.File); ok {
			cmd.Stdin = f
		}
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", argv[0], err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		return cmd, done, nil
	}
	child, done, err := start()
	if err != nil {
		return err
	}
	for {
		select {
		case <-done:
			return childExit(child)
		case s := <-sigs:
			if fromTerminal(s) {
				continue // the child, in the same group, has it already
			}
			_ = child.Process.Signal(s)
		case <-changed:
			next, err := a.execValues(ctx, c, refs)
			if err != nil {
				fmt.Fprintf(a.stderr, "warning: rotary exec: %s; the child keeps its values\n", oneLine(err.Error()))
				continue
			}
			if slices.EqualFunc(next, values, func(x, y string) bool { return x == y }) {
				continue
			}
			values = next
			switch onRotate {
			case "none":
			case "restart":
				fmt.Fprintf(a.stderr, "rotary exec: a secret changed; restarting %s\n", argv[0])
				_ = child.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(grace):
					_ = child.Process.Kill()
					<-done
				}
				if child, done, err = start(); err != nil {
					return err
				}
			default:
				_ = child.Process.Signal(sig)
			}
		}
	}
}

// execValues reads every reference's current value.
func (a *app) execValues(ctx context.Context, c *client.Client, refs []envRef) ([]string, error) {
	out := make([]string, len(refs))
	for i, r := range refs {
		b, err := resolveRef(ctx, c, r.Secret, r.Field)
		if err != nil {
			return nil, a.refError("--env "+r.Var+"="+r.ref(), err)
		}
		if slices.Contains(b, 0) {
			sensitive.Bytes(b).Wipe()
			return nil, usageErrorf("--env %s=%s: the value holds a NUL byte, which an environment variable cannot", r.Var, r.ref())
		}
		out[i] = string(b)
		sensitive.Bytes(b).Wipe()
	}
	return out, nil
}

// childEnv is env without ROTARY_TOKEN and the variables set by refs,
// plus those.
func childEnv(env []string, refs []envRef, values []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "ROTARY_TOKEN" || slices.ContainsFunc(refs, func(r envRef) bool { return r.Var == k }) {
			continue
		}
		out = append(out, kv)
	}
	for i, r := range refs {
		out = append(out, r.Var+"="+values[i])
	}
	return out
}

// childExit returns the child's exit status as rotary's own, silently.
func childExit(cmd *exec.Cmd) error {
	st := cmd.ProcessState
	code := st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code == 0 {
		return nil
	}
	return exitError{code: code}
}

// fromTerminal reports whether s is a signal the terminal sends to its
// whole foreground process group (Ctrl-C, Ctrl-\, a resize) while rotary
// exec is in that group: the child, which shares the group, got it from
// the terminal too, so passing it on would deliver it twice.
func fromTerminal(s os.Signal) bool {
	if s != syscall.SIGINT && s != syscall.SIGQUIT && s != syscall.SIGWINCH {
		return false
	}
	tty, err := os.Open("/dev/tty") // the controlling terminal, if any
	if err != nil {
		return false
	}
	defer tty.Close()
	fg, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && fg == syscall.Getpgrp()
}
