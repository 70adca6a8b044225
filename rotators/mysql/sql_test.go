package mysql

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteString(t *testing.T) {
	for _, tc := range []struct {
		in, backslash, noBackslash string
	}{
		{``, `''`, `''`},
		{`plain`, `'plain'`, `'plain'`},
		{`o'brien`, `'o\'brien'`, `'o''brien'`},
		{`back\slash`, `'back\\slash'`, `'back\slash'`},
		{`\'`, `'\\\''`, `'\'''`},
		{`dq"uote`, `'dq\"uote'`, `'dq"uote'`},
		{"nul\x00", `'nul\0'`, "'nul\x00'"},
		{"nl\n\r\x1a", `'nl\n\r\Z'`, "'nl\n\r\x1a'"},
		{`semi;colon--`, `'semi;colon--'`, `'semi;colon--'`},
		{`pct%_x`, `'pct%_x'`, `'pct%_x'`},
		{`ünïcødé`, `'ünïcødé'`, `'ünïcødé'`},
		{"`tick`", "'`tick`'", "'`tick`'"},
		{`x' OR '1'='1`, `'x\' OR \'1\'=\'1'`, `'x'' OR ''1''=''1'`},
	} {
		if got := quoteString(tc.in, false); got != tc.backslash {
			t.Errorf("quoteString(%q, false) = %s, want %s", tc.in, got, tc.backslash)
		}
		if got := quoteString(tc.in, true); got != tc.noBackslash {
			t.Errorf("quoteString(%q, true) = %s, want %s", tc.in, got, tc.noBackslash)
		}
	}
}

// literalEnd returns where the literal starting at s[0] ends, reading it
// as the server does: the check that nothing escapes its quotes.
func literalEnd(s string, noBackslash bool) int {
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && !noBackslash:
			i++
		case s[i] == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == '\'':
			return i + 1
		}
	}
	return -1
}

func FuzzQuoteString(f *testing.F) {
	for _, s := range []string{"", "'", `\`, `\'`, "''", `o'brien`, "\x00", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, nb := range []bool{false, true} {
			q := quoteString(s, nb)
			if end := literalEnd(q, nb); end != len(q) {
				t.Fatalf("quoteString(%q, %v) = %s: the literal ends at %d of %d", s, nb, q, end, len(q))
			}
		}
	})
}

func TestNativeHash(t *testing.T) {
	// SELECT PASSWORD('123456') on MariaDB and MySQL 5.7.
	if got, want := nativeHash([]byte("123456")), "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"; got != want {
		t.Errorf("nativeHash(123456) = %s, want %s", got, want)
	}
}

func TestParseAccount(t *testing.T) {
	for _, tc := range []struct{ in, user, host string }{
		{"app@%", "app", "%"},
		{"a@b@localhost", "a@b", "localhost"},
		{"@localhost", "", "localhost"},
		{"o'brien;--@10.0.%", "o'brien;--", "10.0.%"},
	} {
		a, err := parseAccount(tc.in)
		if err != nil || a.User != tc.user || a.Host != tc.host {
			t.Errorf("parseAccount(%q) = %+v, %v; want %q@%q", tc.in, a, err, tc.user, tc.host)
		}
	}
	if _, err := parseAccount("nohost"); err == nil {
		t.Errorf("parseAccount(nohost) = nil error")
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", "a\x00b", "\xff", strings.Repeat("é", maxUserChars+1)} {
		if err := checkName("user", bad, maxUserChars); err == nil {
			t.Errorf("checkName(%q) = nil, want an error", bad)
		}
	}
	for _, ok := range []string{`o'brien`, `back\slash`, `with space`, `semi;colon--`, `pct%_x`, strings.Repeat("é", maxUserChars)} {
		if err := checkName("user", ok, maxUserChars); err != nil {
			t.Errorf("checkName(%q) = %v", ok, err)
		}
	}
}

// Statements built from hostile names: the names stay inside their
// literals and, on MariaDB, the password is never in the text.
func TestStatementBuilders(t *testing.T) {
	const pw = "Sup3r-Secret_pw.~"
	hash := nativeHash([]byte(pw))
	maria := flavor{MariaDB: true}
	mariaNB := flavor{MariaDB: true, NoBackslashEscapes: true}
	mysql8 := flavor{}
	acct := account{User: `o'brien\x;DROP USER root--`, Host: `%'`}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"own MariaDB", setOwnPasswordSQL(maria, []byte(pw)), "SET PASSWORD = '" + hash + "'"},
		{"own MySQL", setOwnPasswordSQL(mysql8, []byte(pw)), "ALTER USER USER() IDENTIFIED BY '" + pw + "'"},
		{"alter MariaDB", alterPasswordSQL(maria, acct, []byte(pw)),
			`ALTER USER 'o\'brien\\x;DROP USER root--'@'%\'' IDENTIFIED BY PASSWORD '` + hash + "'"},
		{"alter MariaDB NO_BACKSLASH_ESCAPES", alterPasswordSQL(mariaNB, acct, []byte(pw)),
			`ALTER USER 'o''brien\x;DROP USER root--'@'%''' IDENTIFIED BY PASSWORD '` + hash + "'"},
		{"alter MySQL", alterPasswordSQL(mysql8, account{User: "a'b", Host: "%"}, []byte(`p'w\`)),
			`ALTER USER 'a\'b'@'%' IDENTIFIED BY 'p\'w\\'`},
		{"create MariaDB", createUserSQL(maria, acct, []byte(pw)),
			`CREATE USER IF NOT EXISTS 'o\'brien\\x;DROP USER root--'@'%\'' IDENTIFIED BY PASSWORD '` + hash + "'"},
		{"show grants", showGrantsSQL(maria, account{User: "pct%_x", Host: "%"}), `SHOW GRANTS FOR 'pct%_x'@'%'`},
		{"kill", killSQL(18446744073709551615), "KILL CONNECTION 18446744073709551615"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
	}
	for _, f := range []flavor{maria, mariaNB} {
		for _, s := range []string{setOwnPasswordSQL(f, []byte(pw)), alterPasswordSQL(f, acct, []byte(pw)), createUserSQL(f, acct, []byte(pw))} {
			if strings.Contains(s, pw) {
				t.Errorf("MariaDB statement holds the password: %s", s)
			}
		}
	}
}

func TestRewriteGrant(t *testing.T) {
	from := account{User: "app", Host: "%"}
	to := account{User: "app_b", Host: "%"}
	hostile := account{User: "o'b`r\\n ;--%_ü", Host: "%"}
	hostileTo := account{User: "o'b`r\\n ;--%_ü_b", Host: "%"}
	f := flavor{MariaDB: true}
	for _, tc := range []struct {
		name     string
		line     string
		from, to account
		want     string // "" with skip: nothing to run
		skip     bool
		err      bool
	}{
		{name: "usage with password", line: "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9'", skip: true},
		{name: "usage bare", line: "GRANT USAGE ON *.* TO `app`@`%`", skip: true},
		{name: "usage with options",
			line: "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9' REQUIRE SUBJECT 'x '' TO `app`@`%` WITH GRANT OPTION' WITH MAX_QUERIES_PER_HOUR 5",
			want: "ALTER USER 'app_b'@'%' REQUIRE SUBJECT 'x '' TO `app`@`%` WITH GRANT OPTION' WITH MAX_QUERIES_PER_HOUR 5"},
		{name: "usage via plugin", line: "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED VIA ed25519 USING 'abc WITH x' OR unix_socket WITH MAX_USER_CONNECTIONS 3",
			want: "ALTER USER 'app_b'@'%' WITH MAX_USER_CONNECTIONS 3"},
		{name: "global privileges", line: "GRANT RELOAD, PROCESS ON *.* TO `app`@`%` WITH GRANT OPTION",
			want: "GRANT RELOAD, PROCESS ON *.* TO 'app_b'@'%' WITH GRANT OPTION"},
		{name: "global grant option only", line: "GRANT USAGE ON *.* TO `app`@`%` WITH GRANT OPTION",
			want: "GRANT USAGE ON *.* TO 'app_b'@'%' WITH GRANT OPTION"},
		{name: "database", line: "GRANT SELECT, INSERT ON `test`.* TO `app`@`%`", want: "GRANT SELECT, INSERT ON `test`.* TO 'app_b'@'%'"},
		{name: "columns", line: "GRANT SELECT (`Host`, `User`) ON `mysql`.`db` TO `app`@`%`", want: "GRANT SELECT (`Host`, `User`) ON `mysql`.`db` TO 'app_b'@'%'"},
		{name: "object named like an account", line: "GRANT SELECT ON `x TO ``app``@``%`` `.`t` TO `app`@`%`",
			want: "GRANT SELECT ON `x TO ``app``@``%`` `.`t` TO 'app_b'@'%'"},
		{name: "routine", line: "GRANT EXECUTE ON PROCEDURE `db`.`p` TO `app`@`%`", want: "GRANT EXECUTE ON PROCEDURE `db`.`p` TO 'app_b'@'%'"},
		{name: "role", line: "GRANT `r``ole` TO `app`@`%` WITH ADMIN OPTION", want: "GRANT `r``ole` TO 'app_b'@'%' WITH ADMIN OPTION"},
		{name: "proxy", line: "GRANT PROXY ON `other`@`%` TO `app`@`%`", want: "GRANT PROXY ON `other`@`%` TO 'app_b'@'%'"},
		{name: "default role", line: "SET DEFAULT ROLE `r` FOR `app`@`%`", want: "SET DEFAULT ROLE `r` FOR 'app_b'@'%'"},
		{name: "hostile names", from: hostile, to: hostileTo, line: "GRANT SELECT ON `test`.* TO `o'b``r\\n ;--%_ü`@`%`",
			want: `GRANT SELECT ON ` + "`test`" + `.* TO 'o\'b` + "`" + `r\\n ;--%_ü_b'@'%'`},
		{name: "another account", line: "GRANT SELECT ON `test`.* TO `root`@`%`", err: true},
		{name: "another host", line: "GRANT SELECT ON `test`.* TO `app`@`localhost`", err: true},
		{name: "unterminated", line: "GRANT SELECT ON `test.* TO `app`@`%", err: true},
		{name: "unknown statement", line: "REVOKE ALL ON *.* FROM `app`@`%`", err: true},
		{name: "no account", line: "GRANT SELECT ON `test`.* TO", err: true},
		{name: "stacked", line: "GRANT SELECT ON `test`.* TO `app`@`%`; DROP USER root", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr, tt := from, to
			if tc.from.User != "" {
				fr, tt = tc.from, tc.to
			}
			got, action, err := rewriteGrant(tc.line, fr, tt, f)
			switch {
			case tc.err:
				if err == nil {
					t.Fatalf("rewriteGrant(%s) = %q, want an error", tc.line, got)
				}
			case err != nil:
				t.Fatalf("rewriteGrant(%s): %v", tc.line, err)
			case tc.skip:
				if action != grantSkip {
					t.Fatalf("rewriteGrant(%s) = %q, want skip", tc.line, got)
				}
			case action != grantExec || got != tc.want:
				t.Fatalf("rewriteGrant(%s)\n got %s\nwant %s", tc.line, got, tc.want)
			}
		})
	}
}

func FuzzRewriteGrant(f *testing.F) {
	for _, s := range []string{
		"GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9'",
		"GRANT SELECT (`Host`, `User`) ON `mysql`.`db` TO `app`@`%` WITH GRANT OPTION",
		"SET DEFAULT ROLE `r` FOR `app`@`%`",
		"GRANT `r``ole` TO `app`@`%`",
		"GRANT USAGE ON *.* TO `app`@`%` REQUIRE SUBJECT 'a\\'b' WITH MAX_QUERIES_PER_HOUR 5",
	} {
		f.Add(s)
	}
	from := account{User: "app", Host: "%"}
	to := account{User: "x'y`z\\", Host: "%"}
	f.Fuzz(func(t *testing.T, line string) {
		got, action, err := rewriteGrant(line, from, to, flavor{MariaDB: true})
		if err != nil || action == grantSkip {
			return
		}
		// The new account appears as one literal, and everything before it
		// is the server's text untouched.
		lit := to.literal(false)
		i := strings.Index(got, lit)
		if i < 0 {
			t.Fatalf("rewriteGrant(%q) = %q: the new account is missing", line, got)
		}
		if !strings.HasPrefix(got, "ALTER USER ") && !strings.HasPrefix(line, got[:i]) {
			t.Fatalf("rewriteGrant(%q) = %q: the text before the account changed", line, got)
		}
		if utf8.ValidString(line) && !utf8.ValidString(got) {
			t.Fatalf("rewriteGrant produced invalid UTF-8")
		}
	})
}
