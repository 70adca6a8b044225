package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

func (a *app) policyCmd() *cobra.Command {
	return group("policy", "Manage access policies",
		`  rotary policy put app-read --file app-read.json
  rotary policy show app-read`,
		a.policyPutCmd(), a.policyListCmd(), a.policyShowCmd(), a.policyDeleteCmd())
}

func (a *app) policyPutCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "put NAME --file policy.json",
		Short: "Create or replace a policy",
		Long: `Create or replace a policy from a JSON document ("-" reads standard input):

  {"rules": [{"secrets": "app/*", "actions": ["list", "describe", "read"]},
             {"keys": "*", "actions": ["encrypt", "decrypt"]}]}

Actions: list, describe, read, write, rotate, delete, admin, encrypt, decrypt.
Anything no rule allows is denied.`,
		Example: `  rotary policy put app-read --file app-read.json
  echo '{"rules":[{"secrets":"app/*","actions":["read"]}]}' | rotary policy put app-read --file -`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageErrorf("--file: required (a policy JSON file, or - for standard input)")
			}
			var (
				doc []byte
				err error
			)
			if file == "-" {
				doc, _, err = readSource(a.stdin, "file", "", "file", true, 1<<20)
			} else {
				doc, _, err = readSource(a.stdin, "file", file, "stdin", false, 1<<20)
			}
			if err != nil {
				return err
			}
			if !json.Valid(doc) {
				var v any
				jerr := json.Unmarshal(doc, &v)
				return usageErrorf("--file %s: not valid JSON: %v", file, jerr)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.PutPolicy(cmd.Context(), args[0], json.RawMessage(doc))
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, p)
			}
			fmt.Fprintf(a.stdout, "stored policy %s (%d rules)\n", p.Name, len(p.Document.Rules))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "policy JSON file (- for standard input)")
	return cmd
}

func ruleTarget(r client.PolicyRule) (string, string) {
	switch {
	case r.Secrets != "":
		return "secrets", r.Secrets
	case r.Keys != "":
		return "keys", r.Keys
	case r.System != "":
		return "system", r.System
	}
	return "-", "-"
}

func (a *app) policyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List policies",
		Example: `  rotary policy list -o json`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ps, err := c.ListPolicies(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				if ps == nil {
					ps = []client.Policy{}
				}
				return printJSON(a.stdout, client.PolicyList{Policies: ps})
			}
			now := time.Now()
			t := newTable(a.stdout, "NAME", "RULES", "UPDATED")
			for _, p := range ps {
				t.row(p.Name, strconv.Itoa(len(p.Document.Rules)), relTime(now, p.UpdatedAt))
			}
			return t.flush()
		},
	}
}

func (a *app) policyShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a policy's rules",
		Example: `  rotary policy show app-read
  rotary policy show app-read -o json`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetPolicy(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, p)
			}
			now := time.Now()
			fmt.Fprintf(a.stdout, "Policy %s (created %s, updated %s)\n\n", p.Name, relTime(now, p.CreatedAt), relTime(now, p.UpdatedAt))
			t := newTable(a.stdout, "RULE", "ON", "PATTERN", "ACTIONS")
			for i, r := range p.Document.Rules {
				kind, pat := ruleTarget(r)
				t.row(strconv.Itoa(i), kind, pat, strings.Join(r.Actions, ","))
			}
			return t.flush()
		},
	}
}

func (a *app) policyDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a policy",
		Example: `  rotary policy delete app-read`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeletePolicy(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, map[string]any{"name": args[0], "deleted": true})
			}
			fmt.Fprintf(a.stdout, "deleted policy %s\n", args[0])
			return nil
		},
	}
}

func (a *app) tokenCmd() *cobra.Command {
	return group("token", "Create, list and revoke API tokens",
		`  TOKEN=$(rotary token create --policy app-read --ttl 24h)
  rotary token revoke tok_0123456789ab`,
		a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var (
		policies  []string
		ttl, name string
	)
	cmd := &cobra.Command{
		Use:   "create --policy P [--policy P2]...",
		Short: "Create a token (shown only once)",
		Long: `Create a token bound to one or more policies. The token is shown only once;
only its hash is stored.

In text mode the token alone is printed on standard output (one line, so
TOKEN=$(rotary token create ...) captures it) and its id, name, policies and
expiry go to standard error. -o json prints the whole record, token included.`,
		Example: `  TOKEN=$(rotary token create --policy app-read --ttl 24h --name ci)
  rotary token create --policy app-read --policy kms-use -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(policies) == 0 {
				return usageErrorf("--policy: at least one policy is required")
			}
			for _, p := range policies {
				if p == "" {
					return usageErrorf("--policy: empty policy name")
				}
			}
			w, err := wireDuration("ttl", ttl)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			tok, err := c.CreateToken(cmd.Context(), client.CreateTokenRequest{Policies: policies, TTL: w, Name: name})
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, tok)
			}
			fmt.Fprintln(a.stdout, tok.Token)
			exp := "never"
			if tok.ExpiresAt != nil {
				exp = fmt.Sprintf("%s (%s)", tok.ExpiresAt.Local().Format(time.RFC3339), relTimePtr(time.Now(), tok.ExpiresAt))
			}
			named := ""
			if tok.Name != "" {
				named = fmt.Sprintf(" (%s)", tok.Name)
			}
			// The reminder is for someone reading a terminal; a script
			// capturing the token gets the facts only.
			once := ""
			if a.isTerminal(a.stdout) {
				once = "; the token above is shown only once"
			}
			fmt.Fprintf(a.stderr, "token id %s%s, policies %s, expires %s%s\n",
				tok.ID, named, strings.Join(tok.Policies, ","), exp, once)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&policies, "policy", nil, "policy name (repeatable, at least one)")
	f.StringVar(&ttl, "ttl", "", "lifetime, e.g. 24h or 30d (default: the server's)")
	f.StringVar(&name, "name", "", "a name to recognize the token by")
	return cmd
}

func (a *app) tokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List tokens (never the tokens themselves)",
		Example: `  rotary token list -o json`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			toks, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			// Pages come in id order; people read tokens oldest first.
			slices.SortStableFunc(toks, func(a, b client.Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
			if a.json() {
				if toks == nil {
					toks = []client.Token{}
				}
				return printJSON(a.stdout, client.TokenList{Tokens: toks})
			}
			now := time.Now()
			t := newTable(a.stdout, "ID", "NAME", "POLICIES", "CREATED", "EXPIRES", "STATUS")
			for _, tk := range toks {
				status := "active"
				switch {
				case tk.RevokedAt != nil:
					status = "revoked " + relTimePtr(now, tk.RevokedAt)
				case tk.ExpiresAt != nil && !tk.ExpiresAt.After(now):
					status = "expired"
				}
				exp := "never"
				if tk.ExpiresAt != nil {
					exp = relTimePtr(now, tk.ExpiresAt)
				}
				t.row(tk.ID, tk.Name, strings.Join(tk.Policies, ","), relTime(now, tk.CreatedAt), exp, status)
			}
			return t.flush()
		},
	}
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token by its id (tok_...)",
		Example: `  rotary token revoke tok_0123456789ab`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			tok, err := c.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, tok)
			}
			fmt.Fprintf(a.stdout, "revoked token %s\n", args[0])
			return nil
		},
	}
}
