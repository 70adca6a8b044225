package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

// noSHA256Warning is printed on stderr when register pinned the file's
// current hash because no --sha256 was given.
const noSHA256Warning = "warning: no --sha256 given; pinned the file's current sha256 %s; pass --sha256 to pin a hash you checked"

func (a *app) pluginCmd() *cobra.Command {
	return group("plugin", "Manage rotator plugins (the catalog)",
		`  rotary plugin register rabbitmq --path /usr/lib/rotary/plugins/rabbitmq --sha256 9f86d0…
  rotary plugin list
  rotary plugin remove rabbitmq`,
		a.pluginRegisterCmd(), a.pluginListCmd(), a.pluginShowCmd(), a.pluginRemoveCmd())
}

func (a *app) pluginRegisterCmd() *cobra.Command {
	var (
		path, sum string
		env       []string
	)
	cmd := &cobra.Command{
		Use:   "register NAME --path PATH [--sha256 HEX] [--env KEY=VALUE]...",
		Short: "Register a plugin, or replace its registration",
		Long: `Register the plugin executable PATH (on the daemon's host) under NAME; rotations
then use it as --rotator plugin:NAME. The daemon starts it once and refuses a file
that is not a working rotary plugin. Every later start checks the file against its
sha256: a changed file is refused and never runs.

--sha256 pins the hash you checked (sha256sum PATH); without it the daemon pins the
file's current hash and this command warns. --env gives the plugin's whole
environment (it inherits nothing from the daemon; ROTARY_* and PLUGIN_* are
reserved). The environment is stored and shown in plain text: never put a secret
in it. Registering an existing NAME replaces it; the next use starts the new file.

Needs admin on the system resource "plugins": a plugin runs as the daemon's user.`,
		Example: `  rotary plugin register rabbitmq --path /usr/lib/rotary/plugins/rabbitmq \
    --sha256 $(sha256sum /usr/lib/rotary/plugins/rabbitmq | cut -d' ' -f1)
  rotary plugin register myrot --path "$PWD/myrot" --env LOG_LEVEL=debug`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return usageErrorf("--path: required (the plugin executable)")
			}
			if !filepath.IsAbs(path) {
				// The daemon wants an absolute path; a relative one means the
				// caller's folder (the daemon usually runs on this host).
				abs, err := filepath.Abs(path)
				if err != nil {
					return usageErrorf("--path %q: %v", path, err)
				}
				path = abs
			}
			for _, kv := range env {
				if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
					return usageErrorf("--env %q: want KEY=VALUE", kv)
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.RegisterPlugin(cmd.Context(), args[0], client.RegisterPluginRequest{Path: path, SHA256: sum, Env: env})
			if err != nil {
				return err
			}
			if p.SHA256Computed {
				fmt.Fprintf(a.stderr, noSHA256Warning+"\n", p.SHA256)
			}
			if a.json() {
				return printJSON(a.stdout, p)
			}
			fmt.Fprintf(a.stdout, "registered plugin %s (version %s, types %s): %s sha256 %s\n",
				p.Name, dash(p.Version), dash(strings.Join(p.SecretTypes, ",")), p.Path, p.SHA256)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "path", "", "path of the plugin executable on the daemon's host")
	f.StringVar(&sum, "sha256", "", "hex sha256 the file must have (default: its current one, with a warning)")
	f.StringArrayVar(&env, "env", nil, "KEY=VALUE for the plugin's environment (repeatable; never a secret)")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (a *app) pluginListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registered plugins",
		Example: `  rotary plugin list
  rotary plugin list -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ps, err := c.ListPlugins(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				if ps == nil {
					ps = []client.Plugin{}
				}
				return printJSON(a.stdout, client.PluginList{Plugins: ps})
			}
			now := time.Now()
			t := newTable(a.stdout, "NAME", "PATH", "SHA256", "VERSION", "TYPES", "LAST START", "STATUS")
			for _, p := range ps {
				t.row(p.Name, p.Path, shortSum(p.SHA256), dash(p.Version), dash(strings.Join(p.SecretTypes, ",")),
					relTimePtr(now, p.LastStartAt), pluginStatus(p))
			}
			return t.flush()
		},
	}
}

// pluginStatus is the status column: the last start's result, the
// process state, and the last error when it failed.
func pluginStatus(p client.Plugin) string {
	s := dash(p.Status)
	if p.State != "" {
		s += " (" + p.State + ")"
	}
	if p.Status == "failed" && p.LastError != "" {
		e := p.LastError
		if len(e) > 80 {
			e = e[:80] + "…"
		}
		s += ": " + e
	}
	return s
}

func (a *app) pluginShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one registered plugin",
		Example: `  rotary plugin show rabbitmq -o json`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetPlugin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, p)
			}
			now := time.Now()
			t := newTable(a.stdout, "FIELD", "VALUE")
			t.row("name", p.Name)
			t.row("path", p.Path)
			t.row("sha256", p.SHA256)
			t.row("env", dash(strings.Join(p.Env, " ")))
			t.row("version", dash(p.Version))
			t.row("secret types", dash(strings.Join(p.SecretTypes, ",")))
			t.row("kinds", dash(strings.Join(p.Kinds, ",")))
			t.row("identity fields", dash(strings.Join(p.IdentityFields, ",")))
			t.row("last start", relTimePtr(now, p.LastStartAt))
			t.row("status", pluginStatus(p))
			if p.PID > 0 {
				t.row("pid", fmt.Sprint(p.PID))
			}
			t.row("registered", relTime(now, p.CreatedAt))
			t.row("updated", relTime(now, p.UpdatedAt))
			return t.flush()
		},
	}
}

func (a *app) pluginRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a plugin from the catalog",
		Long: `Remove a plugin from the catalog and stop its process. Refused while a rotation
uses it (--rotator plugin:NAME); the error names those secrets.`,
		Example: `  rotary plugin remove rabbitmq`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RemovePlugin(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, map[string]string{"removed": args[0]})
			}
			fmt.Fprintf(a.stdout, "removed plugin %s\n", args[0])
			return nil
		},
	}
}
