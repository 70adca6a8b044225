package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/sensitive"
)

// A template holds literal text and references $secret{NAME} or
// $secret{NAME#field} (the form of WSO2 Secure Vault).
const refOpen = "$secret{"

type tmplPart struct {
	text        string // literal text, when name is empty
	name, field string
	line        int
}

// parseTemplate splits a template into text and references. An unclosed
// or empty reference is an error naming its line.
func parseTemplate(file string, b []byte) ([]tmplPart, error) {
	var parts []tmplPart
	s := string(b)
	line := 1
	for {
		i := strings.Index(s, refOpen)
		if i < 0 {
			parts = append(parts, tmplPart{text: s})
			return parts, nil
		}
		parts = append(parts, tmplPart{text: s[:i]})
		line += strings.Count(s[:i], "\n")
		rest := s[i+len(refOpen):]
		j := strings.IndexAny(rest, "}\n")
		if j < 0 || rest[j] != '}' {
			return nil, usageErrorf("--template %s line %d: %s has no closing }", file, line, refOpen)
		}
		name, field, err := parseRef(rest[:j])
		if err != nil {
			return nil, usageErrorf("--template %s line %d: $secret{%s}: %v", file, line, rest[:j], err)
		}
		parts = append(parts, tmplPart{name: name, field: field, line: line})
		s = rest[j+1:]
	}
}

// refs returns the distinct secret names a template references.
func tmplSecrets(parts []tmplPart) []string {
	var names []string
	for _, p := range parts {
		if p.name != "" && !slices.Contains(names, p.name) {
			names = append(names, p.name)
		}
	}
	return names
}

// renderTemplate fills every reference from the cache. The first
// reference that cannot be resolved is an error naming it (and its line),
// never a value.
func (a *app) renderTemplate(ctx context.Context, c *client.Client, file string, parts []tmplPart) (sensitive.Bytes, error) {
	var buf bytes.Buffer
	for _, p := range parts {
		if p.name == "" {
			buf.WriteString(p.text)
			continue
		}
		v, err := resolveRef(ctx, c, p.name, p.field)
		if err != nil {
			wipeBuffer(&buf)
			ref := p.name
			if p.field != "" {
				ref += "#" + p.field
			}
			return nil, a.refError(fmt.Sprintf("--template %s line %d: $secret{%s}", file, p.line, ref), err)
		}
		buf.Write(v)
		sensitive.Bytes(v).Wipe()
	}
	return sensitive.Bytes(buf.Bytes()), nil
}

func wipeBuffer(b *bytes.Buffer) { clear(b.Bytes()[:b.Cap()]) }

// writeAtomic replaces path with data: a temporary file in the same
// folder with mode, written and synced, renamed over path, then the
// folder synced. A failure leaves path as it was.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// splitWords splits a command line into words like a shell without
// expansions: spaces separate, '...' and "..." quote, \ escapes outside
// single quotes. No shell runs: give "sh -c '...'" for one.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote == '\'':
			if ch == '\'' {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\\' && i+1 < len(s) && quote != '\'':
			i++
			cur.WriteByte(s[i])
			inWord = true
		case quote == '"':
			if ch == '"' {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, inWord = ch, true
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func (a *app) renderCmd() *cobra.Command {
	var in, out, mode, execLine string
	var watch bool
	cmd := &cobra.Command{
		Use:   "render --template IN --out OUT [--watch] [--mode 0600] [--exec CMD]",
		Short: "Write a file from a template with $secret{NAME} and $secret{NAME#field} references",
		Long: `Replace every $secret{NAME} in the template with the secret's current value and
every $secret{NAME#field} with one field of a JSON value, and write the result
to OUT atomically: a temporary file in OUT's folder with --mode (default 0600),
synced, renamed over OUT, and the folder synced. Readers see the old file or
the new one, never a part.

A reference that cannot be resolved (no such secret, no such field, no
permission) is an error naming it and its line; OUT is left untouched.

With --watch, render follows the daemon's events and renders again each time a
referenced secret gets a new current version (a rotation, a put), then runs
--exec (split into words; no shell, give sh -c '...' for one). It runs until
interrupted; a failed re-render or command is reported on stderr and the watch
goes on.`,
		Example: `  rotary render --template app.conf.tmpl --out /etc/app/app.conf
  rotary render --template pgbouncer.ini.tmpl --out /etc/pgbouncer/userlist.txt \
      --watch --exec "sh -c 'kill -HUP \$(cat /run/pgbouncer.pid)'"`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return usageErrorf("--template and --out are required")
			}
			m, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || m > 0o777 {
				return usageErrorf("--mode %q: want octal permissions such as 0600 or 0640", mode)
			}
			var argv []string
			if execLine != "" {
				if !watch {
					return usageErrorf("--exec runs after each re-render: it needs --watch")
				}
				if argv, err = splitWords(execLine); err != nil || len(argv) == 0 {
					return usageErrorf("--exec %q: %v", execLine, cmpErr(err, "empty command"))
				}
			}
			src, err := os.ReadFile(in)
			if err != nil {
				return usageErrorf("--template: %v", err)
			}
			parts, err := parseTemplate(in, src)
			if err != nil {
				return err
			}
			if st, err := os.Stat(out); err == nil && st.IsDir() {
				return usageErrorf("--out %s is a folder", out)
			}
			c, err := a.cacheClient(watch)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if !watch {
				data, err := a.renderTemplate(ctx, c, in, parts)
				if err != nil {
					return err
				}
				defer data.Wipe()
				if err := writeAtomic(out, data, os.FileMode(m)); err != nil {
					return fmt.Errorf("--out %s: %w", out, err)
				}
				return nil
			}
			ctx, stop := interruptContext(ctx)
			defer stop()
			return a.renderWatch(ctx, c, in, out, os.FileMode(m), parts, argv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "template", "", "template file")
	f.StringVar(&out, "out", "", "file to write")
	f.StringVar(&mode, "mode", "0600", "permissions of OUT (octal)")
	f.BoolVar(&watch, "watch", false, "render again on every new current version of a referenced secret, until interrupted")
	f.StringVar(&execLine, "exec", "", "with --watch, a command to run after each re-render (no shell)")
	return cmd
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// renderWatch renders once (an error there is final), then again on each
// event of a referenced secret, until ctx ends.
func (a *app) renderWatch(ctx context.Context, c *client.Client, in, out string, mode os.FileMode, parts []tmplPart, argv []string) error {
	changed := make(chan client.Event, 64)
	for _, n := range tmplSecrets(parts) {
		stop, err := c.Watch(n, func(e client.Event) {
			select {
			case changed <- e:
			default:
			}
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := c.WaitConnected(wctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("connect to the daemon's events: %w", err)
	}
	data, err := a.renderTemplate(ctx, c, in, parts)
	if err != nil {
		return err
	}
	if err := writeAtomic(out, data, mode); err != nil {
		data.Wipe()
		return fmt.Errorf("--out %s: %w", out, err)
	}
	last := data
	defer func() { last.Wipe() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-changed:
			next, err := a.renderTemplate(ctx, c, in, parts)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(a.stderr, "warning: rotary render: %s; %s left as it was\n", oneLine(describeError(err, a.addr).msg), out)
				continue
			}
			if next.Equal(last) {
				next.Wipe()
				continue
			}
			if err := writeAtomic(out, next, mode); err != nil {
				next.Wipe()
				fmt.Fprintf(a.stderr, "warning: rotary render: --out %s: %s\n", out, oneLine(err.Error()))
				continue
			}
			last.Wipe()
			last = next
			fmt.Fprintf(a.stderr, "rotary render: wrote %s after %s of %s (version %d)\n", out, e.Event, e.Secret, e.Version)
			if len(argv) > 0 {
				cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
				cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
				cmd.Env = childEnv(os.Environ(), nil, nil)
				if err := cmd.Run(); err != nil && ctx.Err() == nil {
					fmt.Fprintf(a.stderr, "warning: rotary render: --exec %s: %s\n", argv[0], oneLine(err.Error()))
				}
			}
		}
	}
}
