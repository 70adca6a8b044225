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
//	5  the server could not be reached at all
//
// On failure exactly one line "error: <reason>" goes to stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

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
	code, msg := describeError(err, a.addr)
	fmt.Fprintf(stderr, "error: %s\n", oneLine(msg))
	return code
}

// usageError marks an error in how the command was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an explicit exit code and message.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// describeError maps an error to its exit code and the reason printed
// after "error: ". Not found, permission denied, authentication failed,
// invalid input and unreachable servers read differently.
func describeError(err error, addr string) (int, string) {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code, ee.msg
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage, err.Error()
	}
	if errors.Is(err, client.ErrUnreachable) {
		cause := strings.TrimPrefix(err.Error(), client.ErrUnreachable.Error()+": ")
		cause = strings.TrimPrefix(cause, addr+": ")
		return exitUnreachable, fmt.Sprintf("cannot reach the rotary server at %s: %s", addr, cause)
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		msg := ae.Message
		switch ae.Status {
		case http.StatusUnauthorized:
			return exitDenied, withPrefix("authentication failed", msg)
		case http.StatusForbidden:
			return exitDenied, withPrefix("permission denied", msg)
		case http.StatusNotFound:
			return exitNotFound, withPrefix("not found", msg)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			return exitUsage, withPrefix("invalid input", msg)
		case http.StatusConflict:
			return exitFailure, withPrefix("conflict", msg)
		default:
			return exitFailure, msg
		}
	}
	if errors.Is(err, context.Canceled) {
		return exitFailure, "interrupted"
	}
	return exitFailure, err.Error()
}

// withPrefix puts p before msg unless msg already starts with it.
func withPrefix(p, msg string) string {
	if msg == "" {
		return p
	}
	if strings.HasPrefix(strings.ToLower(msg), p) {
		return msg
	}
	return p + ": " + msg
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

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rotary",
		Short: "Store, rotate and audit secrets",
		Long: `rotary stores secrets encrypted under per-region master keys, rotates them on
schedule and records every access in a tamper-evident audit log.

"rotary server" runs the daemon; every other command is a client of its HTTP API.

Exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 not found,
4 permission denied or authentication failed, 5 server unreachable.`,
		Example: `  rotary server --dev
  export ROTARY_TOKEN=...
  rotary secret create app/db --value-stdin < password.txt
  rotary secret get app/db`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
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
		},
	}
	groupRun(root)
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", client.DefaultAddr, "server address (env ROTARY_ADDR)")
	pf.StringVar(&a.token, "token", "", "API token (env ROTARY_TOKEN)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(a.secretCmd(), a.keyCmd(), a.kmsCmd(), a.policyCmd(), a.tokenCmd(),
		a.auditCmd(), a.rotationCmd(), a.rotateCmd(), a.statusCmd(), a.serverCmd(), a.hookCmd(), a.pluginCmd(), a.backupCmd())
	root.AddCommand(a.refreshCmds()...)
	return root
}

// groupRun makes a command that only groups subcommands refuse unknown
// subcommands (exit 2) and print its help when called alone.
func groupRun(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
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
