package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
)

// refreshCmds are the commands built on the Go client's events and cache:
// watch, exec and render.
func (a *app) refreshCmds() []*cobra.Command {
	return []*cobra.Command{a.watchCmd(), a.execCmd(), a.renderCmd()}
}

// cacheClient returns a client whose cache follows the daemon's events
// (events) or reads once and never refreshes.
func (a *app) cacheClient(events bool) (*client.Client, error) {
	opts := []client.Option{client.WithToken(a.token)}
	if !events {
		opts = append(opts, client.WithoutEvents(), client.WithPollInterval(0))
	}
	c, err := client.New(a.addr, opts...)
	if err != nil {
		return nil, usageErrorf("--addr: %v", err)
	}
	return c, nil
}

// checkPatterns refuses empty secret globs and commas (the server checks
// the rest).
func checkPatterns(what string, pats []string) error {
	for _, p := range pats {
		if p == "" || strings.Contains(p, ",") {
			return usageErrorf("%s %q: want a secret name or a glob such as prod/*", what, p)
		}
	}
	return nil
}

// interruptContext ends when SIGINT or SIGTERM arrives.
func interruptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func (a *app) watchCmd() *cobra.Command {
	var after int64
	cmd := &cobra.Command{
		Use:   "watch [NAME|GLOB ...]",
		Short: "Print every event of the matching secrets as one JSON line, until interrupted",
		Long: `Print the daemon's events (GET /v1/events) as one JSON object per line, with its
id, until interrupted: version_created, rotated, rotation_failed, deleted,
restored. Never a value. Without arguments, every secret the token may
describe; with arguments, only secrets matching one of the names or globs.

When the connection drops, watch reconnects and resumes after the last event
it printed, so nothing is lost or repeated (if the daemon trimmed events past
that point, a line {"event":"reset"} says some were lost). --after ID starts
after an event id instead of from now on.`,
		Example: `  rotary watch
  rotary watch 'prod/*' app/db
  rotary watch --after 1042 | jq -r 'select(.event=="rotated") | .secret'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPatterns("NAME", args); err != nil {
				return err
			}
			if after < 0 {
				return usageErrorf("--after %d: want an event id (0 or more)", after)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, stop := interruptContext(cmd.Context())
			defer stop()
			return a.watch(ctx, c, args, after)
		},
	}
	cmd.Flags().Int64Var(&after, "after", 0, "resume after this event id (default: from now on)")
	return cmd
}

// watch prints events until ctx ends. The first connection must work (a
// bad token or address is an error); later drops are retried with backoff
// and resume from the last id.
func (a *app) watch(ctx context.Context, c *client.Client, pats []string, after int64) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	connected, resume := false, after > 0
	backoff := 250 * time.Millisecond
	for {
		st, err := c.Events(ctx, client.EventsOptions{Secrets: pats, After: after, Resume: resume})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Refusals are final; only a daemon that went away is waited for.
			if !connected || client.StatusOf(err) != 0 && client.StatusOf(err) < 500 {
				return err
			}
			fmt.Fprintf(a.stderr, "warning: %s; reconnecting in %v\n", oneLine(describeError(err, a.addr).msg), backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		connected, backoff = true, 250*time.Millisecond
		stopClose := context.AfterFunc(ctx, func() { st.Close() })
		for {
			it, err := st.Next()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
					why := oneLine(err.Error())
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, client.ErrConnectionLost) {
						why = "the rotary server at " + a.addr + " went away (it stopped or restarted)"
					}
					fmt.Fprintf(a.stderr, "warning: event stream ended: %s; reconnecting to resume after event %d\n", why, st.LastID())
				}
				break
			}
			if it.Type == client.EventReset {
				err = enc.Encode(map[string]string{"event": client.EventReset})
			} else {
				err = enc.Encode(it.Event)
			}
			if err != nil {
				stopClose()
				st.Close()
				return fmt.Errorf("write event: %w", err)
			}
		}
		stopClose()
		st.Close()
		if st.Positioned() && (st.LastID() > after || !resume) {
			after, resume = st.LastID(), true
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}
