package main

import (
	"cmp"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

func (a *app) auditCmd() *cobra.Command {
	return group("audit", "Read and verify the audit log",
		`  rotary audit list --since 1h
  rotary audit verify`,
		a.auditListCmd(), a.auditVerifyCmd())
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
	return &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain; exits 1 naming the first bad record",
		Example: `  rotary audit verify
  rotary audit verify -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			v, err := c.VerifyAudit(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				if err := printJSON(a.stdout, v); err != nil {
					return err
				}
			} else if v.OK {
				fmt.Fprintf(a.stdout, "audit log intact: %d records, head %s\n", v.Records, v.HeadHash)
			}
			if !v.OK {
				problem := cmp.Or(v.Problem, "the hash chain does not match")
				return exitError{code: exitFailure, msg: fmt.Sprintf("audit log altered at record %d: %s", v.BadSeq, problem)}
			}
			return nil
		},
	}
}
