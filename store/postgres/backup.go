package postgres

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// DumpCommand returns the pg_dump command line that backs up this store:
// its database and schema (as the server reports them), and the host,
// port and user of the DSN. It never holds the password: pg_dump takes it
// the way psql does (~/.pgpass, PGPASSWORD, a prompt). rotary does not copy
// a PostgreSQL store itself; pg_dump takes one consistent snapshot while
// daemons run.
func (s *Store) DumpCommand(ctx context.Context) (string, error) {
	var db, schema, user string
	if err := s.db.QueryRowContext(ctx, `SELECT current_database(), current_schema(), current_user`).Scan(&db, &schema, &user); err != nil {
		return "", fmt.Errorf("postgres: dump command: %w", err)
	}
	host, port := dsnHostPort(s.dsn)
	args := []string{"pg_dump", "--format=custom", "--schema=" + shellQuote(schema)}
	if host != "" {
		args = append(args, "--host="+shellQuote(host))
	}
	if port != "" {
		args = append(args, "--port="+shellQuote(port))
	}
	args = append(args, "--username="+shellQuote(user), "--dbname="+shellQuote(db), "--file=rotary-"+shellQuote(db)+".pgdump")
	return strings.Join(args, " "), nil
}

// dsnHostPort returns host and port of a lib/pq DSN, URL or key=value.
func dsnHostPort(dsn string) (host, port string) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", ""
		}
		host, port = u.Hostname(), u.Port()
		if q := u.Query(); host == "" {
			host, port = q.Get("host"), q.Get("port")
		}
		return host, port
	}
	for _, m := range kvPair.FindAllStringSubmatch(dsn, -1) {
		v := m[2]
		if strings.HasPrefix(v, "'") {
			v = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'"))
		}
		switch m[1] {
		case "host":
			host = v
		case "port":
			port = v
		}
	}
	return host, port
}

var (
	kvPair   = regexp.MustCompile(`(?:^|\s)(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
	shellArg = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)
)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellArg.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
