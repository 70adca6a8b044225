package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

// maxValueBytes is the largest secret value (CONTRACT: values up to 64 KiB).
const maxValueBytes = 64 << 10

func (a *app) secretCmd() *cobra.Command {
	return group("secret", "Create, read and manage secrets",
		`  rotary secret create app/db --type password --value-stdin < pw.txt
  rotary secret get app/db`,
		a.secretCreateCmd(), a.secretPutCmd(), a.secretGetCmd(), a.secretDescribeCmd(),
		a.secretListCmd(), a.secretDeleteCmd(), a.secretRestoreCmd())
}

// valueFlagWarning goes to stderr whenever a value is given with --value.
const valueFlagWarning = "warning: --value puts the secret in the process list (ps) and your shell history; use --value-file or --value-stdin"

// valueFlags are --value, --value-file and --value-stdin.
type valueFlags struct {
	value    string
	file     string
	useStdin bool
}

func (v *valueFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.value, "value", "", "the value (visible in the process list; prefer --value-file or --value-stdin)")
	cmd.Flags().StringVar(&v.file, "value-file", "", "read the value from a file, byte for byte")
	cmd.Flags().BoolVar(&v.useStdin, "value-stdin", false, "read the value from standard input, byte for byte")
}

// read returns the value, or ok=false when no value flag was given.
func (v *valueFlags) read(a *app, cmd *cobra.Command) ([]byte, bool, error) {
	n := 0
	for _, f := range []string{"value", "value-file", "value-stdin"} {
		if cmd.Flags().Changed(f) {
			n++
		}
	}
	if n > 1 {
		return nil, false, usageErrorf("give only one of --value, --value-file and --value-stdin")
	}
	if cmd.Flags().Changed("value") {
		if len(v.value) > maxValueBytes {
			return nil, false, usageErrorf("--value: larger than the %s limit", sizeString(maxValueBytes))
		}
		fmt.Fprintln(a.stderr, valueFlagWarning)
		return []byte(v.value), true, nil
	}
	if cmd.Flags().Changed("value-file") && v.file == "" {
		return nil, false, usageErrorf("--value-file: empty path")
	}
	return readSource(a.stdin, "value-file", v.file, "value-stdin", v.useStdin, maxValueBytes)
}

func currentVersion(s client.Secret) (client.Version, bool) {
	for _, v := range s.Versions {
		for _, st := range v.Stages {
			if st == "current" {
				return v, true
			}
		}
	}
	return client.Version{}, false
}

func (a *app) secretCreateCmd() *cobra.Command {
	var (
		vf                            valueFlags
		typ, region, key, description string
		tags                          []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a secret, optionally with its first value",
		Long: `Create a secret. NAME is 1-256 letters, digits and /_+=.@- characters.
Types: generic (default), password, api-key, basic-auth, db-credentials, key-value,
private-key, symmetric-key, certificate, jwt. Values are validated for their type.`,
		Example: `  rotary secret create app/api-key --type api-key --value-file key.txt
  rotary secret create app/db --type db-credentials --tag team=payments --value-stdin < db.json
  rotary secret create app/empty --description "filled in later"`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tagMap, err := parseKV("tag", tags)
			if err != nil {
				return err
			}
			val, ok, err := vf.read(a, cmd)
			if err != nil {
				return err
			}
			req := client.CreateSecretRequest{Name: args[0], Type: typ, Region: region, Key: key,
				Description: description, Tags: tagMap}
			if ok {
				req.Value = client.NewValue(val)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.CreateSecret(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, s)
			}
			if v, ok := currentVersion(s); ok {
				fmt.Fprintf(a.stdout, "created secret %s (type %s, region %s, version %d)\n", s.Name, s.Type, s.Region, v.Version)
			} else {
				fmt.Fprintf(a.stdout, "created secret %s (type %s, region %s, no value yet)\n", s.Name, s.Type, s.Region)
			}
			return nil
		},
	}
	vf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "secret type (default generic)")
	f.StringVar(&region, "region", "", "region whose key encrypts the secret (default: the server's default region)")
	f.StringVar(&key, "key", "", "master key id or alias/NAME (default: the region's alias/default)")
	f.StringVar(&description, "description", "", "free-text description")
	f.StringArrayVar(&tags, "tag", nil, "tag KEY=VALUE (repeatable)")
	return cmd
}

func (a *app) secretPutCmd() *cobra.Command {
	var vf valueFlags
	cmd := &cobra.Command{
		Use:   "put NAME",
		Short: "Store a new value; it becomes current and the old current becomes previous",
		Example: `  rotary secret put app/db --value-stdin < new.json
  rotary secret put app/token --value-file token.txt`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			val, ok, err := vf.read(a, cmd)
			if err != nil {
				return err
			}
			if !ok {
				return usageErrorf("secret put: give one of --value, --value-file or --value-stdin")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			v, err := c.PutSecret(cmd.Context(), args[0], val)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, v)
			}
			fmt.Fprintf(a.stdout, "stored version %d of %s (%s)\n", v.Version, args[0], strings.Join(v.Stages, ","))
			return nil
		},
	}
	vf.register(cmd)
	return cmd
}

func (a *app) secretGetCmd() *cobra.Command {
	var (
		version int64
		stage   string
		field   string
	)
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a secret's value exactly as stored",
		Long: `Print a secret's value exactly as stored, with no added newline.
--field prints one top-level field of a JSON object value (strings raw, other
values as JSON), with a newline after it on a terminal and none when piped.
-o json prints {"name","version","stages","value"}.`,
		Example: `  rotary secret get app/db
  rotary secret get app/db --field password
  rotary secret get app/db --stage previous
  rotary secret get app/db --version 3 -o json`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("version") && version <= 0 {
				return usageErrorf("--version: must be a positive version number")
			}
			if version > 0 && stage != "" {
				return usageErrorf("--version and --stage are mutually exclusive")
			}
			switch stage {
			case "", "current", "previous", "pending":
			default:
				return usageErrorf("--stage: %q is not one of current, previous, pending", stage)
			}
			if cmd.Flags().Changed("field") && field == "" {
				return usageErrorf("--field: empty field name")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sv, err := c.GetSecret(cmd.Context(), args[0], version, stage)
			if err != nil {
				return err
			}
			val, err := sv.Bytes()
			if err != nil {
				return fmt.Errorf("secret %s: %v", args[0], err)
			}
			if field != "" {
				fv, err := jsonField(args[0], val, field)
				if err != nil {
					return err
				}
				val = fv
				sv.Value, sv.Encoding = string(fv), ""
			}
			if a.json() {
				return printJSON(a.stdout, sv)
			}
			if field != "" && a.isTerminal(a.stdout) && !bytes.HasSuffix(val, []byte("\n")) {
				// A field on a terminal ends its line so the prompt does
				// not run on; piped, it stays byte for byte.
				val = append(val, '\n')
			}
			_, err = a.stdout.Write(val)
			return err
		},
	}
	f := cmd.Flags()
	f.Int64Var(&version, "version", 0, "read this version")
	f.StringVar(&stage, "stage", "", "read the version in this stage: current, previous or pending")
	f.StringVar(&field, "field", "", "print one top-level field of a JSON value")
	return cmd
}

// jsonField extracts one top-level field of a JSON object value: strings
// raw, anything else as compact JSON. Errors never include the value.
func jsonField(name string, val []byte, field string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(val, &obj); err != nil {
		return nil, usageErrorf("--field %s: the value of %s is not a JSON object", field, name)
	}
	raw, ok := obj[field]
	if !ok {
		return nil, usageErrorf("--field %s: the value of %s has no field %q", field, name, field)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s), nil
	}
	return raw, nil
}

func (a *app) secretDescribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a secret's metadata, versions and rotation (never its value)",
		Example: `  rotary secret describe app/db
  rotary secret describe app/db -o json`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.DescribeSecret(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, s)
			}
			return a.printSecret(s)
		},
	}
}

func (a *app) printSecret(s client.Secret) error {
	now := time.Now()
	t := newTable(a.stdout)
	t.row("Name:", s.Name)
	t.row("Type:", s.Type)
	t.row("Region:", s.Region)
	t.row("Key:", s.KeyID)
	if s.Description != "" {
		t.row("Description:", s.Description)
	}
	if len(s.Tags) > 0 {
		t.row("Tags:", kvString(s.Tags))
	}
	if len(s.Metadata) > 0 {
		t.row("Metadata:", kvString(s.Metadata))
	}
	t.row("Created:", fmt.Sprintf("%s (%s)", s.CreatedAt.Local().Format(time.RFC3339), relTime(now, s.CreatedAt)))
	t.row("Updated:", fmt.Sprintf("%s (%s)", s.UpdatedAt.Local().Format(time.RFC3339), relTime(now, s.UpdatedAt)))
	if s.DeletedAt != nil {
		t.row("Deleted:", relTimePtr(now, s.DeletedAt))
		t.row("Purge:", relTimePtr(now, s.PurgeAt))
	}
	if r := s.Rotation; r != nil && r.Rotator != "" {
		state := "disabled"
		if r.Enabled {
			state = "enabled"
		}
		t.row("Rotation:", fmt.Sprintf("%s, %s", r.Rotator, state))
		sched, _ := scheduleText(r.Schedule)
		t.row("Schedule:", cmp.Or(sched, "none (manual only)"))
		if r.Window != "" {
			t.row("Window:", windowText(r.Window))
		}
		if r.State != "" {
			t.row("State:", stateText(r.State, r.StateReason))
		}
		t.row(labelLastRotated+":", relTimePtr(now, r.LastRotatedAt))
		t.row(labelNext+":", nextRotationText(now, *r, false))
		if r.LastError != "" {
			t.row(labelLastError+":", r.LastError)
		}
		if r.Failing {
			t.row("Failing:", "yes ("+failingNote+")")
		}
	} else {
		t.row("Rotation:", "none")
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(s.Versions) == 0 {
		fmt.Fprintln(a.stdout, "\nNo versions.")
		return nil
	}
	fmt.Fprintln(a.stdout)
	vt := newTable(a.stdout, "VERSION", "STAGES", "FINGERPRINT", "CREATED", "REASON")
	for _, v := range s.Versions {
		// No fingerprint: the token may describe but not read the secret.
		vt.row(strconv.FormatInt(v.Version, 10), strings.Join(v.Stages, ","), cmp.Or(v.Fingerprint, "-"),
			relTime(now, v.CreatedAt), v.Reason)
	}
	return vt.flush()
}

func (a *app) secretListCmd() *cobra.Command {
	var (
		prefix   string
		deleted  bool
		pageSize int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List secrets (names and metadata, never values)",
		Example: `  rotary secret list
  rotary secret list --deleted        # also those scheduled for deletion, with their purge time
  rotary secret list --prefix app/ -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if pageSize < 0 || pageSize > 1000 {
				return usageErrorf("--page-size: %d is outside 1 to 1000", pageSize)
			}
			list, err := c.ListAllSecrets(cmd.Context(), client.ListSecretsOptions{Prefix: prefix, Deleted: deleted, Limit: pageSize})
			if err != nil {
				return err
			}
			if a.json() {
				if list == nil {
					list = []client.Secret{}
				}
				return printJSON(a.stdout, client.SecretList{Secrets: list})
			}
			now := time.Now()
			header := []string{"NAME", "TYPE", "REGION", "UPDATED", "ROTATOR", "SCHEDULE", "NEXT ROTATION"}
			if deleted {
				header = append(header, "STATUS", "PURGE AT")
			}
			t := newTable(a.stdout, append(header, "TAGS")...)
			for _, s := range list {
				rotator, sched, next := "", "", ""
				if r := s.Rotation; r != nil && r.Rotator != "" {
					rotator = r.Rotator
					sched, _ = scheduleText(r.Schedule)
					if sched == "" {
						sched = "manual"
					}
					next = nextRotationText(now, *r, true)
				}
				row := []string{s.Name, s.Type, s.Region, relTime(now, s.UpdatedAt), rotator, sched, next}
				if deleted {
					status, purge := "active", ""
					if s.DeletedAt != nil {
						status = "deleted " + relTimePtr(now, s.DeletedAt)
						if s.PurgeAt != nil {
							purge = fmt.Sprintf("%s (%s)", s.PurgeAt.Local().Format("2006-01-02 15:04 MST"), relTimePtr(now, s.PurgeAt))
						}
					}
					row = append(row, status, purge)
				}
				t.row(append(row, kvString(s.Tags))...)
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only names starting with this prefix")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "include secrets scheduled for deletion, with their purge time")
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "secrets per request (the server's default 100, at most 1000); every page is fetched")
	return cmd
}

func (a *app) secretDeleteCmd() *cobra.Command {
	var (
		window string
		force  bool
	)
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Schedule a secret's deletion (restorable until purged), or delete it now with --force",
		Example: `  rotary secret delete app/old
  rotary secret delete app/old --recovery-window 30d
  rotary secret delete app/old --force`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if force && window != "" {
				return usageErrorf("--recovery-window and --force are mutually exclusive")
			}
			if window != "" {
				d, err := durationFlag("recovery-window", window)
				if err != nil {
					return err
				}
				if d < 24*time.Hour || d > 30*24*time.Hour {
					return usageErrorf("--recovery-window: %q is outside 1d to 30d", window)
				}
				window = d.String()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.DeleteSecret(cmd.Context(), args[0], window, force)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, s)
			}
			if force || s.PurgeAt == nil {
				fmt.Fprintf(a.stdout, "deleted secret %s\n", args[0])
			} else {
				fmt.Fprintf(a.stdout, "secret %s scheduled for deletion %s (%s); restore it with: rotary secret restore %s\n",
					args[0], relTimePtr(time.Now(), s.PurgeAt), s.PurgeAt.Local().Format(time.RFC3339), args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&window, "recovery-window", "", "days before the secret is purged, 1d to 30d (default 7d)")
	cmd.Flags().BoolVar(&force, "force", false, "delete now, without a recovery window")
	return cmd
}

func (a *app) secretRestoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "restore NAME",
		Short:   "Cancel a secret's scheduled deletion",
		Example: `  rotary secret restore app/old`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.RestoreSecret(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "restored secret %s\n", args[0])
			return nil
		},
	}
}
