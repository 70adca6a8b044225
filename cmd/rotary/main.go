// Command rotary is the secrets-rotation daemon (rotary server) and the
// command-line client of its HTTP API (every other command).
//
// Exit codes are part of the interface scripts rely on; keep them stable:
//
//	0  success
//	1  generic failure (a server error, a conflict, a failed audit verify, …)
//	2  usage or invalid input: a bad flag or argument, or the server
//	   answered 400, 413, 415 or 422
//	3  not found: the server answered 404
//	4  permission denied (403) or authentication failed (401)
//	5  the server could not be reached at all, or went away (stopped,
//	   restarted) before it answered
//
// On failure exactly one line "error: <reason>" goes to stderr; with
// -o json one line {"error":"<reason>","code":"<word>"} instead (the code
// words are the code* constants).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rotary-secrets/rotary/client"
)

// Exit codes; see the package comment.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitDenied      = 4
	exitUnreachable = 5
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) && ee.msg == "" {
		return ee.code // rotary exec: the child's exit code, nothing printed
	}
	f := describeError(err, a.addr)
	// A flag error can stop parsing before -o is read: look for it in
	// the arguments themselves.
	if a.json() || (a.output == "text" && jsonRequested(args)) {
		b, _ := json.Marshal(errorJSON{Error: oneLine(f.msg), Code: f.word})
		fmt.Fprintf(stderr, "%s\n", b)
	} else {
		fmt.Fprintf(stderr, "error: %s\n", oneLine(f.msg))
	}
	return f.exit
}

// errorJSON is a failure with -o json: one line on stderr.
type errorJSON struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// jsonRequested reports whether args ask for -o json (before any "--").
func jsonRequested(args []string) bool {
	for i, arg := range args {
		switch {
		case arg == "--":
			return false
		case arg == "-o" || arg == "--output":
			if i+1 < len(args) && args[i+1] == "json" {
				return true
			}
		case arg == "-ojson" || arg == "-o=json" || arg == "--output=json":
			return true
		}
	}
	return false
}

// usageError marks an error in how the command was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an explicit exit code and message, and the code word
// of -o json ("failed" when empty).
type exitError struct {
	code int
	msg  string
	word string
}

func (e exitError) Error() string { return e.msg }

// The code words of -o json errors. Each exit code has its words; a
// script may test either. Keep them stable.
const (
	codeUsage            = "usage"             // 2: a bad flag, argument or command
	codeInvalid          = "invalid"           // 2: the server refused the input (400, 413, 415, 422)
	codeNotFound         = "not_found"         // 3
	codeUnauthenticated  = "unauthenticated"   // 4: 401
	codePermissionDenied = "permission_denied" // 4: 403
	codeUnavailable      = "unavailable"       // 5: unreachable, or went away; 1 for another 503
	codeConflict         = "conflict"          // 1: 409
	codeRotationFailed   = "rotation_failed"   // 1: a rotation ran and failed
	codeInternal         = "internal"          // 1: 500
	codeInterrupted      = "interrupted"       // 1
	codeFailed           = "failed"            // 1: anything else
)

// failure is how an error is reported: exit code, code word, reason.
type failure struct {
	exit int
	word string
	msg  string
}

// describeError maps an error to its exit code, its code word and the
// reason printed after "error: ". Not found, permission denied,
// authentication failed, invalid input and unreachable servers read
// differently.
func describeError(err error, addr string) failure {
	var ee exitError
	if errors.As(err, &ee) {
		return failure{ee.code, cmp.Or(ee.word, codeFailed), ee.msg}
	}
	var ue usageError
	if errors.As(err, &ue) {
		return failure{exitUsage, codeUsage, err.Error()}
	}
	if errors.Is(err, client.ErrConnectionLost) {
		return failure{exitUnreachable, codeUnavailable, fmt.Sprintf("the rotary server at %s went away before it answered (it stopped or restarted)", addr)}
	}
	if errors.Is(err, client.ErrUnreachable) {
		cause := strings.TrimPrefix(err.Error(), client.ErrUnreachable.Error()+": ")
		cause = strings.TrimPrefix(cause, addr+": ")
		return failure{exitUnreachable, codeUnavailable, fmt.Sprintf("cannot reach the rotary server at %s: %s", addr, cause)}
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		msg := ae.Message
		switch ae.Status {
		case http.StatusUnauthorized:
			return failure{exitDenied, codeUnauthenticated, withPrefix("authentication failed", msg)}
		case http.StatusForbidden:
			return failure{exitDenied, codePermissionDenied, withPrefix("permission denied", msg)}
		case http.StatusNotFound:
			return failure{exitNotFound, codeNotFound, withPrefix("not found", msg)}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			return failure{exitUsage, codeInvalid, withPrefix("invalid input", msg)}
		case http.StatusConflict:
			return failure{exitFailure, codeConflict, withPrefix("conflict", msg)}
		case http.StatusBadGateway:
			if strings.HasPrefix(msg, "rotation failed") {
				return failure{exitFailure, codeRotationFailed, msg}
			}
		case http.StatusServiceUnavailable:
			return failure{exitFailure, codeUnavailable, msg}
		case http.StatusInternalServerError:
			return failure{exitFailure, codeInternal, msg}
		}
		return failure{exitFailure, codeFailed, msg}
	}
	if errors.Is(err, context.Canceled) {
		return failure{exitFailure, codeInterrupted, "interrupted"}
	}
	return failure{exitFailure, codeFailed, err.Error()}
}

// withPrefix puts p before msg unless msg already starts with it, and
// drops a "p: " the server repeated further on ("invalid input: rotator:
// invalid input: ..." reads "invalid input: rotator: ...").
func withPrefix(p, msg string) string {
	if msg == "" {
		return p
	}
	rest := msg
	if strings.HasPrefix(strings.ToLower(msg), p) {
		rest = strings.TrimLeft(msg[len(p):], ": ")
	}
	rest = strings.ReplaceAll(rest, ": "+p+": ", ": ")
	if rest == "" {
		return p
	}
	return p + ": " + rest
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r\n", "; ")
	return strings.ReplaceAll(s, "\n", "; ")
}

// app holds the global flags and the streams of one invocation.
type app struct {
	addr, token, output string

	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	c *client.Client
}

// client returns the API client for --addr and --token.
func (a *app) client() (*client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	c, err := client.New(a.addr, client.WithToken(a.token))
	if err != nil {
		return nil, usageErrorf("--addr: %v", err)
	}
	a.c = c
	return c, nil
}

func (a *app) json() bool { return a.output == "json" }

// isTerminal reports whether w is a terminal.
func (a *app) isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rotary",
		Short: "Store, rotate and audit secrets",
		Long: `rotary stores secrets encrypted under per-region master keys, rotates them on
schedule and records every access in a tamper-evident audit log.

"rotary server" runs the daemon; every other command is a client of its HTTP API.

Exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 not found,
4 permission denied or authentication failed, 5 server unreachable or gone.
With -o json, errors are one JSON line on stderr: {"error":"...","code":"..."}.`,
		Example: `  rotary server --dev
  export ROTARY_TOKEN=...
  rotary secret create app/db --value-stdin < password.txt
  rotary secret get app/db`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.applyEnv(cmd) },
	}
	groupRun(root)
	root.Version = versionLine()
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", client.DefaultAddr, "server address (env ROTARY_ADDR)")
	pf.StringVar(&a.token, "token", "", "API token (env ROTARY_TOKEN)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(a.secretCmd(), a.keyCmd(), a.kmsCmd(), a.policyCmd(), a.tokenCmd(),
		a.auditCmd(), a.rotationCmd(), a.rotateCmd(), a.statusCmd(), a.serverCmd(), a.hookCmd(), a.pluginCmd(), a.backupCmd(), a.versionCmd())
	root.AddCommand(a.refreshCmds()...)
	a.registerCompletions(root)
	return root
}

// applyEnv reads ROTARY_ADDR and ROTARY_TOKEN for the flags not given
// and checks --output.
func (a *app) applyEnv(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("addr") {
		if v := a.getenv("ROTARY_ADDR"); v != "" {
			a.addr = v
		}
	}
	if !cmd.Flags().Changed("token") {
		a.token = a.getenv("ROTARY_TOKEN")
	}
	switch a.output {
	case "text", "json":
	default:
		return usageErrorf("--output: %q is not one of text, json", a.output)
	}
	return nil
}

// groupRun makes a command that only groups subcommands refuse unknown
// subcommands (exit 2) and print its help when called alone.
func groupRun(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			// cobra's own "did you mean" is skipped for a command with
			// Args, so it is added here, on the same line.
			hint := ""
			if cmd.SuggestionsMinimumDistance <= 0 {
				cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
			}
			if sug := cmd.SuggestionsFor(args[0]); len(sug) > 0 {
				hint = fmt.Sprintf("; did you mean %q?", sug[0])
				if len(sug) > 1 {
					hint = fmt.Sprintf("; did you mean one of %s?", strings.Join(sug, ", "))
				}
			} else {
				hint = fmt.Sprintf("; see %q", cmd.CommandPath()+" --help")
			}
			return usageErrorf("unknown command %q for %q%s", args[0], cmd.CommandPath(), hint)
		}
		return cmd.Help()
	}
}

// group returns a command that only holds subcommands.
func group(use, short, example string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Example: example}
	groupRun(cmd)
	cmd.AddCommand(subs...)
	return cmd
}

// exactArgs requires the positional arguments named in names.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			want := "no arguments"
			if len(names) > 0 {
				want = strings.Join(names, " ")
			}
			if len(args) > len(names) {
				return usageErrorf("%s: unexpected argument %q (want %s)", cmd.CommandPath(), args[len(names)], want)
			}
			return usageErrorf("%s: missing %s", cmd.CommandPath(), strings.Join(names[len(args):], " "))
		}
		for i, arg := range args {
			if arg == "" {
				return usageErrorf("%s: %s must not be empty", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}
