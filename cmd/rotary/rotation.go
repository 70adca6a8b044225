package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

func (a *app) rotationCmd() *cobra.Command {
	return group("rotation", "Configure how a secret is rotated",
		`  rotary rotation set app/db --rotator postgres --schedule "0 3 * * *" --window 2h
  rotary rotation show app/db
  rotary rotation history app/db`,
		a.rotationSetCmd(), a.rotationShowCmd(),
		a.rotationToggleCmd(true), a.rotationToggleCmd(false), a.rotationHistoryCmd())
}

func (a *app) rotationSetCmd() *cobra.Command {
	var rotator, schedule, window, configJSON, configFile string
	var rebind, clearSchedule bool
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Change a secret's rotator, schedule, window or rotator config",
		Long: `Change a secret's rotation settings. Only the settings given change; the
others keep their stored values. The first ` + "`rotation set`" + ` of a secret needs
--rotator. Rotators: postgres, mysql, redis, random, plugin:NAME.
Schedules: 5-field cron ("0 3 * * *", optionally "CRON_TZ=Europe/Berlin 0 3 * * *"),
descriptors (@daily, @every 12h), rate(N minutes|hours|days). --clear-schedule
(or --schedule none) leaves manual rotation only. A schedule may not fire more
often than the server's min_rotation_interval. A window starts each rotation at
a random point inside it (--window 0 removes it).
Database rotator config (JSON): strategy (single-user, admin, alternating),
admin_secret, password {length, exclude_characters, require_each_class}, test_query.
A config given replaces the stored one as a whole; --config-json '{}' clears it.
Mistakes (an unknown config field, an admin_secret that does not exist or is
for another engine, a rotator for another engine than the secret's) are refused
here, not at the first rotation. What changed is printed (and is "changes" in
-o json).
A database rotation is bound to the account (engine, host, port, dbname, username)
the current value names; after the value moved to another account, --rebind binds
it to the new one.`,
		Example: `  rotary rotation set app/db --rotator postgres --schedule "0 3 * * *" --window 2h
  rotary rotation set app/db --rotator postgres --schedule @daily \
      --config-json '{"strategy":"admin","admin_secret":"admin/pg"}'
  rotary rotation set app/db --schedule "@every 12h"     # rotator and config stay
  rotary rotation set app/db --clear-schedule             # manual rotation only
  rotary rotation set app/api-key --rotator random --schedule "rate(30 days)"`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if clearSchedule && f.Changed("schedule") {
				return usageErrorf("give --schedule or --clear-schedule, not both")
			}
			if configJSON != "" && configFile != "" {
				return usageErrorf("give --config-json or --config-file, not both")
			}
			set := client.RotationSettings{Rotator: rotator, Rebind: rebind}
			if f.Changed("rotator") && rotator == "" {
				return usageErrorf("--rotator: must not be empty (postgres, mysql, redis, random or plugin:NAME)")
			}
			if f.Changed("schedule") {
				if strings.TrimSpace(schedule) == "" {
					return usageErrorf("--schedule: must not be empty (use --clear-schedule for manual rotation only)")
				}
				set.Schedule = schedule
			}
			if clearSchedule {
				set.Schedule = "none"
			}
			if f.Changed("window") {
				switch strings.TrimSpace(window) {
				case "", "0", "0s", "none":
					set.Window = "0s"
				default:
					w, err := wireDuration("window", window)
					if err != nil {
						return err
					}
					set.Window = w
				}
			}
			var raw []byte
			if f.Changed("config-json") {
				raw = []byte(configJSON)
			}
			if configFile != "" {
				b, _, err := readSource(a.stdin, "config-file", configFile, "", false, 64<<10)
				if err != nil {
					return err
				}
				raw = b
			}
			if raw != nil {
				var obj map[string]json.RawMessage
				if json.Unmarshal(raw, &obj) != nil || obj == nil {
					return usageErrorf("--config-json: not a JSON object (use '{}' to clear the config)")
				}
				set.Config = raw
			}
			if !rebind && set.Rotator == "" && set.Schedule == "" && set.Window == "" && set.Config == nil {
				return usageErrorf("nothing to change: give --rotator, --schedule, --clear-schedule, --window, --config-json, --config-file or --rebind")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.SetRotation(cmd.Context(), args[0], set)
			if err != nil {
				return err
			}
			if a.json() {
				// "changes" is always there, [] when nothing changed.
				changes := out.Changes
				if changes == nil {
					changes = []client.RotationChange{}
				}
				return printJSON(a.stdout, struct {
					client.RotationShow
					Changes []client.RotationChange `json:"changes"`
				}{out, changes})
			}
			if len(out.Changes) == 0 {
				fmt.Fprintln(a.stdout, "no change")
			}
			for _, ch := range out.Changes {
				fmt.Fprintln(a.stdout, changeText(ch))
			}
			if note := alternatingNote(out); note != "" {
				fmt.Fprintln(a.stdout, note)
			}
			fmt.Fprintln(a.stdout)
			return a.printRotation(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&rotator, "rotator", "", "postgres, mysql, redis, random or plugin:NAME (required the first time)")
	f.StringVar(&schedule, "schedule", "", `when to rotate: cron, @every D, rate(N unit), or "none"`)
	f.BoolVar(&clearSchedule, "clear-schedule", false, "remove the schedule: manual rotation only")
	f.StringVar(&window, "window", "", "start each rotation at a random point within this duration (e.g. 2h; 0 removes it)")
	f.StringVar(&configJSON, "config-json", "", "rotator config as JSON, replacing the stored one ('{}' clears it)")
	f.StringVar(&configFile, "config-file", "", "rotator config from a JSON file, replacing the stored one")
	f.BoolVar(&rebind, "rebind", false, "bind the rotation to the account the current value names, when it differs from the bound one")
	return cmd
}

func (a *app) printRotation(r client.RotationShow) error {
	now := time.Now()
	t := newTable(a.stdout)
	t.row("Secret:", r.Secret)
	t.row("Rotator:", r.Rotator)
	sched, loc := scheduleText(r.Schedule)
	if sched == "" {
		sched = "none (manual only)"
	}
	t.row("Schedule:", sched)
	if r.Window != "" {
		t.row("Window:", windowExplained(r.Window))
	}
	t.row("Enabled:", strconv.FormatBool(r.Enabled))
	if r.State != "" {
		t.row("State:", stateText(r.State, r.StateReason))
	}
	if r.BoundTo != "" {
		t.row("Bound to:", r.BoundTo)
	}
	if len(r.Config) > 0 {
		b, _ := json.Marshal(r.Config)
		t.row("Config:", string(b))
	}
	t.row(labelLastRotated+":", relTimePtr(now, r.LastRotatedAt))
	if r.LastError != "" {
		t.row(labelLastError+":", r.LastError)
	}
	if r.Failing {
		t.row("Failing:", "yes ("+failingNote+")")
	}
	if len(r.Next) > 0 {
		for i, n := range r.Next {
			label := " " // a continuation row, not an empty value
			if i == 0 {
				label = labelNext + "s:"
			}
			t.row(label, zoneTime(now, n, loc))
		}
	} else {
		t.row(labelNext+":", nextRotationText(now, r.RotationInfo, false))
	}
	return t.flush()
}

func (a *app) rotationShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a secret's rotation settings and state",
		Example: "  rotary rotation show app/db\n  rotary rotation show app/db -o json",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.ShowRotation(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, out)
			}
			return a.printRotation(out)
		},
	}
}

func (a *app) rotationToggleCmd(enable bool) *cobra.Command {
	use, short := "disable", "Stop scheduled rotation of a secret (manual rotation still works)"
	if enable {
		use, short = "enable", "Resume scheduled rotation of a secret"
	}
	return &cobra.Command{
		Use:     use + " NAME",
		Short:   short,
		Example: "  rotary rotation " + use + " app/db",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.EnableRotation(cmd.Context(), args[0], enable)
			if err != nil {
				return err
			}
			if a.json() {
				return printJSON(a.stdout, out)
			}
			return a.printRotation(out)
		},
	}
}

func (a *app) rotationHistoryCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:     "history NAME",
		Short:   "List a secret's rotations, newest first, with their steps",
		Example: "  rotary rotation history app/db\n  rotary rotation history app/db --limit 5 -o json",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usageErrorf("--limit: must be positive")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			runs, err := c.RotationHistory(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if a.json() {
				if runs == nil {
					runs = []client.Run{}
				}
				return printJSON(a.stdout, client.RunList{Runs: runs})
			}
			now := time.Now()
			t := newTable(a.stdout, "RUN", "TRIGGER", "STATE", "STEP", "VERSION", "STARTED", "DURATION", "STEPS", "EFFECTS", "ERROR")
			for _, r := range runs {
				dur := ""
				if r.EndedAt != nil {
					dur = r.EndedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
				}
				var steps []string
				for _, s := range r.Steps {
					steps = append(steps, s.Step+":"+s.Result)
				}
				t.row(r.ID, r.Trigger, r.State, r.Step, strconv.FormatInt(r.PendingVersion, 10),
					relTime(now, r.StartedAt), dur, strings.Join(steps, " "), r.EffectsSummary(), r.Error)
			}
			return t.flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many rotations")
	return cmd
}

func (a *app) rotateCmd() *cobra.Command {
	var wait, emergency, keep bool
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Rotate a secret now (the one-off and emergency rotation)",
		Long: `Rotate a secret now, whatever its schedule. --wait blocks until the rotation
has ended and exits non-zero if it failed. --emergency also makes the previous
credential useless at once (for the alternating strategy both users get new
passwords) and ends the old credential's open sessions unless --keep-sessions.`,
		Example: `  rotary rotate app/db --wait
  rotary rotate app/db --emergency --wait
  rotary rotate app/db --emergency --keep-sessions --wait`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keep && !emergency {
				return usageErrorf("--keep-sessions only applies with --emergency")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.Rotate(cmd.Context(), args[0], client.RotateOptions{Wait: wait, Emergency: emergency, KeepSessions: keep})
			if err != nil {
				return daemonGone(err, a.addr, args[0], wait)
			}
			if a.json() {
				return printJSON(a.stdout, out)
			}
			if out.Run == nil {
				fmt.Fprintf(a.stdout, "rotation of %s started (follow it with: rotary rotation history %s)\n", args[0], args[0])
				return nil
			}
			r := out.Run
			if r.State != "succeeded" {
				return exitError{code: 1, msg: fmt.Sprintf("rotation of %s ended %s: %s", args[0], r.State, r.Error)}
			}
			fmt.Fprintf(a.stdout, "rotated %s: version %d is current (run %s, trigger %s)\n", args[0], r.PendingVersion, r.ID, r.Trigger)
			// What else it did on the target: sessions ended, credentials
			// made useless (an emergency's purpose, so say when none).
			if fx := r.EffectsSummary(); fx != "" {
				fmt.Fprintln(a.stdout, fx)
			} else if emergency {
				fmt.Fprintln(a.stdout, "the rotator reported no sessions ended and no credential made useless")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "wait until the rotation has ended; exit non-zero if it failed")
	f.BoolVar(&emergency, "emergency", false, "also make the previous credential useless now and end its sessions")
	f.BoolVar(&keep, "keep-sessions", false, "with --emergency: do not end the old credential's open sessions")
	return cmd
}

// daemonGone rewrites the error of a rotate call the daemon did not
// answer because it stopped (503 while shutting down, or the connection
// closed mid-request): the rotation, if it started, resumes at the
// daemon's next start. Exit 5, like a daemon that cannot be reached.
func daemonGone(err error, addr, name string, wait bool) error {
	next := fmt.Sprintf("a rotation that started resumes from its step when the daemon starts again (see: rotary rotation history %s)", name)
	if !wait {
		next = fmt.Sprintf("the rotation of %s was not started; run it again once the daemon is back", name)
		if errors.Is(err, client.ErrConnectionLost) {
			next = fmt.Sprintf("if the rotation of %s started, it resumes when the daemon starts again (see: rotary rotation history %s)", name, name)
		}
	}
	switch {
	case errors.Is(err, client.ErrConnectionLost):
		return exitError{code: exitUnreachable, word: codeUnavailable,
			msg: fmt.Sprintf("the rotary server at %s went away before it answered; %s", addr, next)}
	case client.StatusOf(err) == http.StatusServiceUnavailable && strings.Contains(err.Error(), "shutting down"):
		return exitError{code: exitUnreachable, word: codeUnavailable,
			msg: fmt.Sprintf("the rotary server at %s is shutting down; %s", addr, next)}
	}
	return err
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "One row per secret with rotation: rotator, last and next rotation, last result",
		Example: "  rotary status\n  rotary status -o json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rows, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				if rows == nil {
					rows = []client.StatusRow{}
				}
				return printJSON(a.stdout, client.Status{Secrets: rows})
			}
			now := time.Now()
			t := newTable(a.stdout, "NAME", "TYPE", "ROTATOR", "SCHEDULE", "STATE", "LAST ROTATED", "NEXT ROTATION", "LAST RESULT", "LAST ERROR")
			for _, r := range rows {
				info := client.RotationInfo{Rotator: r.Rotator, Schedule: r.Schedule, Enabled: r.Enabled,
					NextRotationAt: r.NextRotation, State: r.State, StateReason: r.StateReason}
				result := r.LastResult
				if r.Failing {
					result += " (" + failingNote + ")"
				}
				sched, _ := scheduleText(r.Schedule)
				t.row(r.Name, r.Type, r.Rotator, sched, stateText(r.State, r.StateReason), relTimePtr(now, r.LastRotatedAt),
					nextRotationText(now, info, true), result, r.LastError)
			}
			return t.flush()
		},
	}
}

// boundUsers reads the user names of a "Bound to" identity: username="a"
// or, for an alternating pair, username="a"|"b".
var boundUsers = regexp.MustCompile(`(?:^| )username=("(?:[^"\\]|\\.)*")(?:\|("(?:[^"\\]|\\.)*"))?`)

// alternatingNote says what the alternating strategy makes on the server,
// when a rotation set changed the rotator or config of a database rotation
// to it: the second user of the pair, created by the first rotation if
// missing. Empty otherwise.
func alternatingNote(r client.RotationShow) string {
	if r.Config["strategy"] != "alternating" || (r.Rotator != "postgres" && r.Rotator != "mysql") {
		return ""
	}
	changed := false
	for _, ch := range r.Changes {
		changed = changed || ch.Field == "rotator" || strings.HasPrefix(ch.Field, "config")
	}
	if !changed {
		return ""
	}
	first, second := "the secret's user", ""
	if m := boundUsers.FindStringSubmatch(r.BoundTo); m != nil {
		first, _ = strconv.Unquote(m[1])
		second, _ = strconv.Unquote(m[2])
	}
	if alt, ok := r.Config["alternate_username"].(string); ok && alt != "" && second == "" {
		second = alt
	}
	if second == "" {
		second = first + "_b"
	}
	admin, _ := r.Config["admin_secret"].(string)
	what := fmt.Sprintf("role %q on the server if it does not exist, with the admin secret %s: LOGIN, with %s's INHERIT,\n"+
		"  CONNECTION LIMIT, VALID UNTIL and role memberships (privileges granted to %s directly are not copied:\n"+
		"  grant them to a group role both are members of); later rotations add the memberships it lacks", second, admin, first, first)
	if r.Rotator == "mysql" {
		what = fmt.Sprintf("user %q on %s's account host if it does not exist, with the admin secret %s,\n"+
			"  and gives it every grant SHOW GRANTS lists for %s; later rotations add the grants it lacks", second, first, admin, first)
	}
	return fmt.Sprintf("alternating: rotations take turns between %q and %q. The first rotation creates\n  %s.", first, second, what)
}
