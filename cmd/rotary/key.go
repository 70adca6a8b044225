package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rotary-secrets/rotary/client"
)

const defaultRegion = "default"

func (a *app) keyCmd() *cobra.Command {
	return group("key", "Manage master keys (KMS)",
		`  rotary key create --region eu-west-1 --alias payments
  rotary key list
  rotary key rotate alias/payments --region eu-west-1`,
		a.keyCreateCmd(), a.keyListCmd(), a.keyDescribeCmd(),
		a.keyActionCmd("rotate", "Add a new key version; new data keys use it", "rotated"),
		a.keyActionCmd("disable", "Disable a key: nothing can be encrypted or decrypted with it", "disabled"),
		a.keyActionCmd("enable", "Enable a disabled key", "enabled"),
		a.keyScheduleDeletionCmd(),
		a.keyActionCmd("cancel-deletion", "Cancel a key's scheduled deletion (it comes back disabled or as it was)", "cancelled the deletion of"),
		a.keyRewrapCmd())
}

func (a *app) printKeys(keys []client.Key) error {
	now := time.Now()
	t := newTable(a.stdout, "ID", "REGION", "ALIAS", "STATE", "VERSION", "ROTATION", "NEXT ROTATION", "DELETION", "CREATED")
	for _, k := range keys {
		t.row(k.ID, k.Region, k.Alias, k.State, strconv.Itoa(k.PrimaryVersion), k.RotationPeriod,
			relTimePtr(now, k.NextRotationAt), relTimePtr(now, k.DeletionDate), relTime(now, k.CreatedAt))
	}
	return t.flush()
}

func (a *app) printKey(k client.Key) error {
	now := time.Now()
	t := newTable(a.stdout)
	t.row("ID:", k.ID)
	t.row("Region:", k.Region)
	t.row("Alias:", k.Alias)
	if k.Description != "" {
		t.row("Description:", k.Description)
	}
	t.row("State:", k.State)
	t.row("Primary version:", strconv.Itoa(k.PrimaryVersion))
	t.row("Rotation period:", k.RotationPeriod)
	t.row("Next rotation:", relTimePtr(now, k.NextRotationAt))
	if k.DeletionDate != nil {
		t.row("Deletion date:", fmt.Sprintf("%s (%s)", k.DeletionDate.Local().Format(time.RFC3339), relTimePtr(now, k.DeletionDate)))
	}
	t.row("Created:", relTime(now, k.CreatedAt))
	t.row("Updated:", relTime(now, k.UpdatedAt))
	return t.flush()
}

func (a *app) keyCreateCmd() *cobra.Command {
	var region, alias, description, period string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a master key in a region",
		Example: `  rotary key create --region eu-west-1
  rotary key create --region default --alias payments --rotation-period 365d`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := wireDuration("rotation-period", period)
			if err != nil {
				return err
			}
			if region == "" {
				return usageErrorf("--region: must not be empty")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.CreateKey(cmd.Context(), client.CreateKeyRequest{Region: region, Alias: alias,
				Description: description, RotationPeriod: p})
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, k)
			}
			return a.printKey(k)
		},
	}
	f := cmd.Flags()
	f.StringVar(&region, "region", defaultRegion, "region of the key")
	f.StringVar(&alias, "alias", "", "alias NAME (the key is then alias/NAME)")
	f.StringVar(&description, "description", "", "free-text description")
	f.StringVar(&period, "rotation-period", "", "rotate the key automatically this often (e.g. 365d)")
	return cmd
}

func (a *app) keyListCmd() *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List master keys",
		Example: `  rotary key list
  rotary key list --region eu-west-1 -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			keys, err := c.ListKeys(cmd.Context(), region)
			if err != nil {
				return err
			}
			if a.json() {
				if keys == nil {
					keys = []client.Key{}
				}
				return printJSON(a.stdout, client.KeyList{Keys: keys})
			}
			return a.printKeys(keys)
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "only keys of this region (default: all)")
	return cmd
}

func (a *app) keyDescribeCmd() *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "describe KEY",
		Short: "Show a master key (KEY is an id or alias/NAME)",
		Example: `  rotary key describe alias/default
  rotary key describe alias/payments --region eu-west-1 -o json`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.DescribeKey(cmd.Context(), region, args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, k)
			}
			return a.printKey(k)
		},
	}
	cmd.Flags().StringVar(&region, "region", defaultRegion, "region of the key")
	return cmd
}

func (a *app) keyActionCmd(action, short, done string) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   action + " KEY",
		Short: short + " (KEY is an id or alias/NAME)",
		Example: fmt.Sprintf(`  rotary key %s alias/payments
  rotary key %s alias/default --region eu-west-1`, action, action),
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.KeyAction(cmd.Context(), region, args[0], action)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, k)
			}
			fmt.Fprintf(a.stdout, "%s key %s (%s, state %s, primary version %d)\n", done, k.ID, k.Region, k.State, k.PrimaryVersion)
			return nil
		},
	}
	cmd.Flags().StringVar(&region, "region", defaultRegion, "region of the key")
	return cmd
}

func (a *app) keyScheduleDeletionCmd() *cobra.Command {
	var region, window string
	cmd := &cobra.Command{
		Use:   "schedule-deletion KEY",
		Short: "Schedule a key's deletion after a pending window (default 30d)",
		Example: `  rotary key schedule-deletion alias/old
  rotary key schedule-deletion alias/old --pending-window 7d`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := wireDuration("pending-window", window)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.ScheduleKeyDeletion(cmd.Context(), region, args[0], w)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, k)
			}
			when := "-"
			if k.DeletionDate != nil {
				when = fmt.Sprintf("%s (%s)", relTimePtr(time.Now(), k.DeletionDate), k.DeletionDate.Local().Format(time.RFC3339))
			}
			fmt.Fprintf(a.stdout, "key %s scheduled for deletion %s; cancel with: rotary key cancel-deletion %s --region %s\n",
				k.ID, when, k.ID, k.Region)
			return nil
		},
	}
	cmd.Flags().StringVar(&region, "region", defaultRegion, "region of the key")
	cmd.Flags().StringVar(&window, "pending-window", "", "time before the key is deleted (default 30d)")
	return cmd
}

func (a *app) keyRewrapCmd() *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Re-wrap data keys under the newest version of their master keys",
		Long: `Re-wrap every data key that is not under its master key's newest version.
A progress bar is shown when standard error is a terminal; a summary line
"rewrapped N of M data keys (K keys, S skipped)" is printed at the end.`,
		Example: `  rotary key rewrap
  rotary key rewrap --region eu-west-1 -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if f, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !a.json() {
				bar = progressbar.NewOptions(-1,
					progressbar.OptionSetWriter(f),
					progressbar.OptionSetDescription("rewrapping"),
					progressbar.OptionShowCount(),
					progressbar.OptionClearOnFinish())
			}
			final, err := c.Rewrap(cmd.Context(), region, func(p client.RewrapProgress) {
				if bar == nil {
					return
				}
				if p.Total > 0 && bar.GetMax() != p.Total {
					bar.ChangeMax(p.Total)
				}
				_ = bar.Set(p.Scanned)
			})
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return fmt.Errorf("rewrap: %w (rewrapped %d of %d data keys before it stopped)", err, final.Rewrapped, final.Total)
			}
			if a.json() {
				return printJSON(a.stdout, final)
			}
			fmt.Fprintf(a.stdout, "rewrapped %d of %d data keys (%d keys, %d skipped)\n",
				final.Rewrapped, final.Total, final.Keys, final.Skipped)
			return nil
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "only this region (default: all)")
	return cmd
}

// kms commands

func (a *app) kmsCmd() *cobra.Command {
	return group("kms", "Encrypt and decrypt with master keys, and make data keys",
		`  rotary kms encrypt --key alias/default --plaintext-file msg.txt > msg.ct
  rotary kms decrypt --ciphertext-file msg.ct`,
		a.kmsGenerateDataKeyCmd(), a.kmsEncryptCmd(), a.kmsDecryptCmd())
}

const maxKMSInput = 1 << 20

func (a *app) kmsGenerateDataKeyCmd() *cobra.Command {
	var (
		key, region string
		ctxFlags    []string
	)
	cmd := &cobra.Command{
		Use:   "generate-data-key",
		Short: "Make a fresh data key: its plaintext (base64) and its ciphertext under KEY",
		Example: `  rotary kms generate-data-key --key alias/default
  rotary kms generate-data-key --key alias/default --context app=billing -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				return usageErrorf("--key: required (a key id or alias/NAME)")
			}
			ec, err := parseKV("context", ctxFlags)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			dk, err := c.GenerateDataKey(cmd.Context(), client.DataKeyRequest{Region: region, Key: key, Context: ec})
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, dk)
			}
			t := newTable(a.stdout)
			t.row("Key:", dk.KeyID)
			t.row("Plaintext:", dk.Plaintext)
			t.row("Ciphertext:", dk.Ciphertext)
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "master key id or alias/NAME (required)")
	f.StringVar(&region, "region", defaultRegion, "region of the key")
	f.StringArrayVar(&ctxFlags, "context", nil, "encryption context KEY=VALUE (repeatable; needed again to decrypt)")
	return cmd
}

func (a *app) kmsEncryptCmd() *cobra.Command {
	var (
		key, region, file string
		useStdin          bool
		ctxFlags          []string
	)
	cmd := &cobra.Command{
		Use:   "encrypt",
		Short: "Encrypt bytes under a master key; prints the base64 ciphertext",
		Example: `  rotary kms encrypt --key alias/default --plaintext-file msg.txt > msg.ct
  echo -n hello | rotary kms encrypt --key alias/default --plaintext-stdin --context app=billing`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				return usageErrorf("--key: required (a key id or alias/NAME)")
			}
			ec, err := parseKV("context", ctxFlags)
			if err != nil {
				return err
			}
			pt, ok, err := readSource(a.stdin, "plaintext-file", file, "plaintext-stdin", useStdin, maxKMSInput)
			if err != nil {
				return err
			}
			if !ok {
				return usageErrorf("kms encrypt: give --plaintext-file FILE or --plaintext-stdin")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.Encrypt(cmd.Context(), client.EncryptRequest{Region: region, Key: key,
				Plaintext: base64.StdEncoding.EncodeToString(pt), Context: ec})
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, out)
			}
			fmt.Fprintln(a.stdout, out.Ciphertext)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "master key id or alias/NAME (required)")
	f.StringVar(&region, "region", defaultRegion, "region of the key")
	f.StringVar(&file, "plaintext-file", "", "read the plaintext from a file")
	f.BoolVar(&useStdin, "plaintext-stdin", false, "read the plaintext from standard input")
	f.StringArrayVar(&ctxFlags, "context", nil, "encryption context KEY=VALUE (repeatable; needed again to decrypt)")
	return cmd
}

func (a *app) kmsDecryptCmd() *cobra.Command {
	var (
		region, file string
		useStdin     bool
		ctxFlags     []string
	)
	cmd := &cobra.Command{
		Use:   "decrypt",
		Short: "Decrypt a base64 ciphertext; prints the raw plaintext bytes",
		Example: `  rotary kms decrypt --ciphertext-file msg.ct > msg.txt
  rotary kms decrypt --ciphertext-stdin --context app=billing < msg.ct`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ec, err := parseKV("context", ctxFlags)
			if err != nil {
				return err
			}
			ct, ok, err := readSource(a.stdin, "ciphertext-file", file, "ciphertext-stdin", useStdin, 2*maxKMSInput)
			if err != nil {
				return err
			}
			if !ok {
				return usageErrorf("kms decrypt: give --ciphertext-file FILE or --ciphertext-stdin")
			}
			ctText := strings.Join(strings.Fields(string(ct)), "")
			if ctText == "" {
				return usageErrorf("kms decrypt: the ciphertext is empty")
			}
			if _, err := base64.StdEncoding.DecodeString(ctText); err != nil {
				return usageErrorf("kms decrypt: the ciphertext is not base64 (as printed by rotary kms encrypt)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.Decrypt(cmd.Context(), client.DecryptRequest{Region: region, Ciphertext: ctText, Context: ec})
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, out)
			}
			pt, err := base64.StdEncoding.DecodeString(out.Plaintext)
			if err != nil {
				return fmt.Errorf("kms decrypt: the server's plaintext is not base64")
			}
			_, err = a.stdout.Write(pt)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "region of the key (default: the one the ciphertext names)")
	f.StringVar(&file, "ciphertext-file", "", "read the base64 ciphertext from a file")
	f.BoolVar(&useStdin, "ciphertext-stdin", false, "read the base64 ciphertext from standard input")
	f.StringArrayVar(&ctxFlags, "context", nil, "encryption context KEY=VALUE given at encryption (repeatable)")
	return cmd
}
