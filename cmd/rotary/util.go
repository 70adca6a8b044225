package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// parseDuration parses Go duration syntax plus days: "90s", "15m", "12h",
// "7d", "1d12h", "1.5d". Every duration flag and config value uses it.
func parseDuration(s string) (time.Duration, error) {
	orig := s
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	var total time.Duration
	for s != "" {
		// One number and its unit.
		i := 0
		for i < len(s) && (s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		j := i
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		num, unit := s[:i], s[i:j]
		if num == "" || unit == "" {
			return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 15m, 12h, 7d)", orig)
		}
		var d time.Duration
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f > float64(1<<63-1)/float64(24*time.Hour) {
				return 0, fmt.Errorf("invalid duration %q", orig)
			}
			d = time.Duration(f * float64(24*time.Hour))
		} else {
			var err error
			d, err = time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 15m, 12h, 7d)", orig)
			}
		}
		if total+d < total {
			return 0, fmt.Errorf("invalid duration %q: too large", orig)
		}
		total += d
		s = s[j:]
	}
	if neg {
		total = -total
	}
	return total, nil
}

// durationFlag parses a positive duration given to flag (an empty value
// means "not set" and returns "").
func durationFlag(flag, v string) (time.Duration, error) {
	d, err := parseDuration(v)
	if err != nil {
		return 0, usageErrorf("--%s: %v", flag, err)
	}
	if d <= 0 {
		return 0, usageErrorf("--%s: %q must be positive", flag, v)
	}
	return d, nil
}

// wireDuration turns a duration flag into the Go syntax every server
// parser accepts ("" stays "").
func wireDuration(flag, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	d, err := durationFlag(flag, v)
	if err != nil {
		return "", err
	}
	return formatDuration(d), nil
}

// formatDuration writes d in parseDuration syntax, in days when it is a
// whole number of days ("7d"), else in Go syntax ("36h0m0s").
func formatDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// parseKV parses repeated KEY=VALUE flags (--tag, --context). Keys must be
// non-empty and unique; values may be empty and may contain '='.
func parseKV(flag string, items []string) (map[string]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(items))
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageErrorf("--%s %q: want KEY=VALUE", flag, it)
		}
		if _, dup := m[k]; dup {
			return nil, usageErrorf("--%s: key %q given twice", flag, k)
		}
		m[k] = v
	}
	return m, nil
}

// parseSince parses --since: an RFC 3339 time or a duration ago (1h, 7d).
func parseSince(now time.Time, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := parseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageErrorf("--since %q: want an RFC 3339 time (2025-01-02T15:04:05Z) or a duration ago (1h, 7d)", v)
}

// readSource reads the contents named by one of a file flag or a stdin
// flag. It returns ok=false when neither was used.
func readSource(stdin io.Reader, fileFlag, file, stdinFlag string, useStdin bool, limit int64) ([]byte, bool, error) {
	switch {
	case file != "" && useStdin:
		return nil, false, usageErrorf("--%s and --%s are mutually exclusive", fileFlag, stdinFlag)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, false, usageErrorf("--%s: %v", fileFlag, err)
		}
		defer f.Close()
		b, err := readLimited(f, limit)
		if err != nil {
			return nil, false, usageErrorf("--%s %s: %v", fileFlag, file, err)
		}
		return b, true, nil
	case useStdin:
		b, err := readLimited(stdin, limit)
		if err != nil {
			return nil, false, usageErrorf("--%s: %v", stdinFlag, err)
		}
		return b, true, nil
	}
	return nil, false, nil
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than the %s limit", sizeString(limit))
	}
	return b, nil
}

// printJSON writes v as one indented JSON document.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		if c == "" {
			cols[i] = "-"
		}
		cols[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(cols[i])
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// relTime renders t relative to now: "5m ago", "in 3h", "just now".
func relTime(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d > -time.Second && d < time.Second {
		return "just now"
	}
	if d < 0 {
		return shortDuration(-d) + " ago"
	}
	return "in " + shortDuration(d)
}

func relTimePtr(now time.Time, t *time.Time) string {
	if t == nil {
		return "-"
	}
	return relTime(now, *t)
}

// shortDuration rounds d to the nearest of its largest unit: 45s, 12m,
// 5h, 3d.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute-time.Second/2:
		return fmt.Sprintf("%ds", d.Round(time.Second)/time.Second)
	case d < time.Hour-time.Minute/2:
		return fmt.Sprintf("%dm", d.Round(time.Minute)/time.Minute)
	case d < 48*time.Hour-time.Hour/2:
		return fmt.Sprintf("%dh", d.Round(time.Hour)/time.Hour)
	default:
		return fmt.Sprintf("%dd", d.Round(24*time.Hour)/(24*time.Hour))
	}
}

// kvString renders a map as sorted k=v pairs.
func kvString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
