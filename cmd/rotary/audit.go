package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

func (a *app) auditCmd() *cobra.Command {
	return group("audit", "Read and verify the audit log",
		`  rotary audit list --since 1h
  rotary audit checkpoint -o json > checkpoint.json
  rotary audit verify --checkpoint checkpoint.json`,
		a.auditListCmd(), a.auditVerifyCmd(), a.auditCheckpointCmd())
}

func (a *app) auditListCmd() *cobra.Command {
	var (
		since, secret string
		limit         int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit records",
		Example: `  rotary audit list --since 1h
  rotary audit list --since 2025-01-02T00:00:00Z --secret app/db -o json
  rotary audit list --limit 20`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			t0, err := parseSince(now, since)
			if err != nil {
				return err
			}
			if limit < 0 {
				return usageErrorf("--limit: must not be negative")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			recs, err := c.ListAudit(cmd.Context(), t0, secret, limit)
			if err != nil {
				return err
			}
			if a.json() {
				if recs == nil {
					recs = []client.AuditRecord{}
				}
				return printJSON(a.stdout, client.AuditList{Records: recs})
			}
			t := newTable(a.stdout, "SEQ", "TIME", "TOKEN", "ACTION", "TARGET", "RESULT", "DETAIL")
			for _, r := range recs {
				t.row(strconv.FormatInt(r.Seq, 10), r.Time.Local().Format(time.RFC3339)+" ("+relTime(now, r.Time)+")",
					r.TokenID, r.Action, r.Target, r.Result, r.Detail)
			}
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only records since an RFC 3339 time or a duration ago (1h, 7d)")
	f.StringVar(&secret, "secret", "", "only records about this secret")
	f.IntVar(&limit, "limit", 0, "at most this many records (default: the server's)")
	return cmd
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "verify [--checkpoint FILE]",
		Short: "Check the audit log's keyed hash chains; exits 1 naming the first bad record",
		Long: `Check every keyed hash chain of the audit log from its first record to its
head, and that every chain still holds the records the newest anchor
vouches for.
With --checkpoint (a file written by "rotary audit checkpoint -o json", or
- for standard input), also check the checkpoint's signature and that the
log still holds the record it vouches for with the same hash: this catches
the newest records being cut off, which the chain alone cannot show.`,
		Example: `  rotary audit verify
  rotary audit verify -o json
  rotary audit verify --checkpoint checkpoint.json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cp *client.AuditCheckpoint
			if file != "" {
				var (
					doc []byte
					err error
				)
				if file == "-" {
					doc, _, err = readSource(a.stdin, "checkpoint", "", "checkpoint", true, 64<<10)
				} else {
					doc, _, err = readSource(a.stdin, "checkpoint", file, "stdin", false, 64<<10)
				}
				if err != nil {
					return err
				}
				cp = new(client.AuditCheckpoint)
				dec := json.NewDecoder(bytes.NewReader(doc))
				dec.DisallowUnknownFields()
				if err := dec.Decode(cp); err != nil {
					return usageErrorf("--checkpoint %s: not a checkpoint JSON document: %v", file, err)
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var v client.AuditVerify
			if cp != nil {
				v, err = c.VerifyAuditCheckpoint(cmd.Context(), *cp)
			} else {
				v, err = c.VerifyAudit(cmd.Context())
			}
			if err != nil {
				return err
			}
			if a.json() {
				if err := printJSON(a.stdout, v); err != nil {
					return err
				}
			} else if v.OK {
				fmt.Fprintf(a.stdout, "audit log intact: %d records in %d chains bound by %d anchors, head %s\n", v.Records, v.Chains, v.Anchors, v.HeadHash)
				if v.CheckpointSeq != nil {
					fmt.Fprintf(a.stdout, "checkpoint matches: record %d is unchanged\n", *v.CheckpointSeq)
				}
			}
			if !v.OK {
				problem := cmp.Or(v.Problem, "the hash chain does not match")
				where := fmt.Sprintf("record %d", v.BadSeq)
				if v.BadChain != nil && *v.BadChain != 0 {
					where = fmt.Sprintf("chain %d record %d", *v.BadChain, v.BadSeq)
				}
				return exitError{code: exitFailure, msg: fmt.Sprintf("audit log altered at %s: %s", where, problem)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "checkpoint", "", "also check against this signed checkpoint (a JSON file, or - for standard input)")
	return cmd
}

func (a *app) auditCheckpointCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign an anchor of every audit chain's head for verifying later",
		Long: `Anchor the heads of every audit chain (or take the newest anchor if no
chain moved since), verify the log, and sign that anchor's number and hash
with the daemon's Ed25519 checkpoint key (derived from the root key).
Keep the JSON form (-o json) somewhere the daemon's database cannot reach,
and give it to "rotary audit verify --checkpoint FILE" later. The public key
is in the checkpoint; its signature can be checked offline.`,
		Example: `  rotary audit checkpoint -o json > checkpoint-$(date +%F).json
  rotary audit checkpoint`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cp, err := c.AuditCheckpoint(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, cp)
			}
			fmt.Fprintf(a.stdout, "checkpoint: chain %d record %d, hash %s, at %s\n", cp.Chain, cp.Seq, cp.Hash, cp.Time.Format(time.RFC3339))
			fmt.Fprintf(a.stdout, "public key (ed25519, base64): %s\n", cp.PublicKey)
			fmt.Fprintf(a.stdout, "signature (base64): %s\n", cp.Signature)
			fmt.Fprintln(a.stdout, "save it for audit verify --checkpoint with: rotary audit checkpoint -o json > FILE")
			return nil
		},
	}
}
