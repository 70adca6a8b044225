package main

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

func (a *app) hookCmd() *cobra.Command {
	return group("hook", "Manage function hooks (exec, webhook, plugin) run when rotations finish or fail",
		`  rotary hook add notify --on finished --secrets 'app/*' --webhook https://hooks.example/rotary --secret-file hook.key
  rotary hook add restart-app --on finished --exec '/usr/local/bin/reload-app --graceful'
  rotary hook list`,
		a.hookAddCmd(), a.hookListCmd(), a.hookRemoveCmd())
}

func (a *app) hookAddCmd() *cobra.Command {
	var (
		on, secretsGlob, execCmd, webhook, secretFile, plugin string
		shell                                                 bool
		timeout                                               string
	)
	cmd := &cobra.Command{
		Use:   "add NAME --on finished|failed|all (--exec CMD [--shell] | --webhook URL [--secret-file F] | --plugin NAME)",
		Short: "Add a hook",
		Long: `Add a function hook, called for every matching event, at least once and in order per secret,
by whichever daemon claims the event; a hook never delays or changes a rotation.

--on finished: a rotation finished (event "rotated"); failed: a rotation failed ("rotation_failed");
all: every event. --secrets limits it to secrets matching a glob (* and ?).

--exec runs a command without a shell (arguments split like a shell would), unless --shell runs it with
/bin/sh -c. It gets the event JSON on standard input and in ROTARY_EVENT, and ROTARY_SECRET and
ROTARY_VERSION; its environment holds nothing else but PATH. Exit status 0 is success; anything else,
or running past --timeout (default 30s; its process group is killed), is retried with backoff.

--webhook POSTs the event JSON with X-Rotary-Timestamp, X-Rotary-Signature
(sha256=HEX of HMAC-SHA256(secret, timestamp + "." + body)), X-Rotary-Hook and X-Rotary-Delivery.
A 2xx answer is success. The signing secret is read from --secret-file; without one the daemon makes
one and this command prints it once.

--plugin calls a registered hook plugin's OnEvent.`,
		Example: `  rotary hook add notify --on finished --webhook https://hooks.example/rotary --secret-file hook.key
  rotary hook add page-oncall --on failed --exec '/usr/local/bin/page "rotation failed"'
  rotary hook add audit-file --on all --shell --exec 'cat >> /var/log/rotary-events.jsonl'`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := client.AddHookRequest{Name: args[0], On: on, Secrets: secretsGlob, Shell: shell, Timeout: timeout}
			n := 0
			for _, k := range []struct{ kind, target string }{{"exec", execCmd}, {"webhook", webhook}, {"plugin", plugin}} {
				if cmd.Flags().Changed(k.kind) {
					n++
					req.Kind, req.Target = k.kind, k.target
				}
			}
			if n != 1 {
				return usageErrorf("give exactly one of --exec, --webhook and --plugin")
			}
			if on == "" {
				return usageErrorf("--on: required (finished, failed or all)")
			}
			if timeout != "" {
				if _, err := parseDuration(timeout); err != nil {
					return usageErrorf("--timeout %q: %v", timeout, err)
				}
			}
			if secretFile != "" {
				if req.Kind != "webhook" {
					return usageErrorf("--secret-file goes only with --webhook")
				}
				b, _, err := readSource(a.stdin, "secret-file", secretFile, "stdin", false, 4096+2)
				if err != nil {
					return err
				}
				b = bytes.TrimRight(b, "\r\n")
				if len(b) < 16 {
					return usageErrorf("--secret-file %s: the secret is %d bytes, at least 16 are needed", secretFile, len(b))
				}
				req.Secret = b
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			h, err := c.AddHook(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, h)
			}
			fmt.Fprintf(a.stdout, "added hook %s (%s on %s)\n", h.Name, h.Kind, h.On)
			if h.Secret != "" {
				fmt.Fprintf(a.stdout, "signing secret: %s\n", h.Secret)
				fmt.Fprintln(a.stdout, "Store it now where the webhook receiver can read it: it is not shown again.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&on, "on", "", "when to run: finished, failed or all")
	f.StringVar(&secretsGlob, "secrets", "", "only secrets whose name matches this glob (default: all)")
	f.StringVar(&execCmd, "exec", "", "command to run")
	f.BoolVar(&shell, "shell", false, "run the --exec command with /bin/sh -c")
	f.StringVar(&timeout, "timeout", "", "how long one attempt may run (default 30s, at most 10m)")
	f.StringVar(&webhook, "webhook", "", "URL to POST the event to")
	f.StringVar(&secretFile, "secret-file", "", "file holding the webhook signing secret (16 bytes or more)")
	f.StringVar(&plugin, "plugin", "", "registered hook plugin to call")
	return cmd
}

func (a *app) hookListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List hooks with their delivery state",
		Example: `  rotary hook list -o json`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			hs, err := c.ListHooks(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				if hs == nil {
					hs = []client.Hook{}
				}
				return printJSON(a.stdout, client.HookList{Hooks: hs})
			}
			now := time.Now()
			t := newTable(a.stdout, "NAME", "ON", "SECRETS", "KIND", "TARGET", "LAST DELIVERY", "DELIVERED", "FAILURES", "STATE", "BACKLOG")
			for _, h := range hs {
				last := "-"
				if h.LastDeliveryAt != nil {
					last = relTime(now, *h.LastDeliveryAt)
				}
				secrets := h.Secrets
				if secrets == "" {
					secrets = "*"
				}
				t.row(h.Name, h.On, secrets, h.Kind, h.Target, last, strconv.FormatInt(h.Delivered, 10),
					strconv.FormatInt(h.Failures, 10), h.State, strconv.Itoa(h.Backlog))
			}
			return t.flush()
		},
	}
}

func (a *app) hookRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a hook and its pending deliveries",
		Example: `  rotary hook remove notify`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RemoveHook(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, map[string]string{"removed": args[0]})
			}
			fmt.Fprintf(a.stdout, "removed hook %s\n", args[0])
			return nil
		},
	}
}
