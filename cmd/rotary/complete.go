package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

// Shell completion (rotary completion bash|zsh|fish) completes secret
// names, policy names, plugin names and rotators from the daemon named by
// --addr or ROTARY_ADDR, with --token or ROTARY_TOKEN. Any failure (no
// daemon, a token that may not list) completes nothing, silently: a
// completion never prints an error into the user's command line.

// completionTimeout bounds one completion's calls to the daemon.
const completionTimeout = 3 * time.Second

// builtinRotators are the rotators every daemon has.
var builtinRotators = []string{"postgres", "mysql", "redis", "random"}

// completionClient is a client as the command would have made it: cobra
// runs no PersistentPreRunE for completions, so the environment is read
// here.
func (a *app) completionClient(cmd *cobra.Command) (*client.Client, context.Context, context.CancelFunc, bool) {
	if err := a.applyEnv(cmd); err != nil {
		return nil, nil, nil, false
	}
	c, err := client.New(a.addr, client.WithToken(a.token))
	if err != nil {
		return nil, nil, nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	return c, ctx, cancel, true
}

const noFiles = cobra.ShellCompDirectiveNoFileComp

// completeSecrets completes the first argument with secret names that
// start with what was typed (one page of the listing).
func (a *app) completeSecrets(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 && cmd.Name() != "watch" {
		return nil, noFiles
	}
	c, ctx, cancel, ok := a.completionClient(cmd)
	if !ok {
		return nil, noFiles
	}
	defer cancel()
	page, err := c.ListSecretsPage(ctx, client.ListSecretsOptions{Prefix: toComplete, Limit: 1000,
		Deleted: cmd.Name() == "restore"})
	if err != nil {
		return nil, noFiles
	}
	var out []string
	for _, s := range page.Secrets {
		if cmd.Name() == "restore" && s.DeletedAt == nil {
			continue
		}
		out = append(out, s.Name)
	}
	return out, noFiles
}

// completePolicies completes policy names.
func (a *app) completePolicies(cmd *cobra.Command, toComplete string) ([]string, cobra.ShellCompDirective) {
	c, ctx, cancel, ok := a.completionClient(cmd)
	if !ok {
		return nil, noFiles
	}
	defer cancel()
	pols, err := c.ListPolicies(ctx)
	if err != nil {
		return nil, noFiles
	}
	var out []string
	for _, p := range pols {
		if strings.HasPrefix(p.Name, toComplete) {
			out = append(out, p.Name)
		}
	}
	return out, noFiles
}

// completePlugins completes plugin names; with rotators, the built-in
// rotators and plugin:NAME of every plugin that rotates.
func (a *app) completePlugins(cmd *cobra.Command, toComplete string, rotators bool) ([]string, cobra.ShellCompDirective) {
	var out []string
	if rotators {
		for _, r := range builtinRotators {
			if strings.HasPrefix(r, toComplete) {
				out = append(out, r)
			}
		}
	}
	c, ctx, cancel, ok := a.completionClient(cmd)
	if !ok {
		return out, noFiles
	}
	defer cancel()
	plugins, err := c.ListPlugins(ctx)
	if err != nil {
		return out, noFiles
	}
	for _, p := range plugins {
		name := p.Name
		if rotators {
			if len(p.Kinds) > 0 && !contains(p.Kinds, "rotator") {
				continue
			}
			name = "plugin:" + name
		}
		if strings.HasPrefix(name, toComplete) {
			out = append(out, name)
		}
	}
	return out, noFiles
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// registerCompletions attaches the completions to the commands of root
// by their path.
func (a *app) registerCompletions(root *cobra.Command) {
	secretArg := map[string]bool{
		"secret get": true, "secret put": true, "secret describe": true, "secret delete": true, "secret restore": true,
		"rotation set": true, "rotation show": true, "rotation enable": true, "rotation disable": true,
		"rotation history": true, "rotate": true, "watch": true,
	}
	first := func(f func(*cobra.Command, string) ([]string, cobra.ShellCompDirective)) cobra.CompletionFunc {
		return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, noFiles
			}
			return f(cmd, toComplete)
		}
	}
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		path := strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
		switch {
		case secretArg[path]:
			cmd.ValidArgsFunction = a.completeSecrets
		case path == "policy show" || path == "policy delete" || path == "policy put":
			cmd.ValidArgsFunction = first(a.completePolicies)
		case path == "plugin show" || path == "plugin remove":
			cmd.ValidArgsFunction = first(func(cmd *cobra.Command, s string) ([]string, cobra.ShellCompDirective) {
				return a.completePlugins(cmd, s, false)
			})
		}
		if f := cmd.Flags().Lookup("policy"); f != nil && path == "token create" {
			_ = cmd.RegisterFlagCompletionFunc("policy", func(cmd *cobra.Command, _ []string, s string) ([]string, cobra.ShellCompDirective) {
				return a.completePolicies(cmd, s)
			})
		}
		if f := cmd.Flags().Lookup("env"); f != nil && path == "exec" {
			// --env VAR=NAME: the secret name after the "=".
			_ = cmd.RegisterFlagCompletionFunc("env", func(cmd *cobra.Command, _ []string, s string) ([]string, cobra.ShellCompDirective) {
				v, name, ok := strings.Cut(s, "=")
				if !ok {
					return nil, noFiles | cobra.ShellCompDirectiveNoSpace
				}
				names, dir := a.completeSecrets(cmd, nil, name)
				for i := range names {
					names[i] = v + "=" + names[i]
				}
				return names, dir
			})
		}
		if f := cmd.Flags().Lookup("rotator"); f != nil && path == "rotation set" {
			_ = cmd.RegisterFlagCompletionFunc("rotator", func(cmd *cobra.Command, _ []string, s string) ([]string, cobra.ShellCompDirective) {
				return a.completePlugins(cmd, s, true)
			})
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
