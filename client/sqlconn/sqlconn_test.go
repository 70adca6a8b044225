package sqlconn

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/client"
)

func TestNewChecksItsArguments(t *testing.T) {
	t.Parallel()
	c, err := client.New("http://127.0.0.1:1", client.WithToken("t"), client.WithoutEvents(), client.WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		c              *client.Client
		secret, driver string
		want           string
	}{
		{nil, "s", "postgres", "client"},
		{c, "", "postgres", "secret"},
		{c, "s", "sqlite3", `"sqlite3"`},
	} {
		if _, err := New(tc.c, tc.secret, tc.driver); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v, %q, %q) = %v, want an error mentioning %s", tc.c != nil, tc.secret, tc.driver, err, tc.want)
		}
	}
	k, err := New(c, "app/db", "mysql")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Driver().(*mysql.MySQLDriver); !ok {
		t.Errorf("Driver() = %T", k.Driver())
	}
	k.(interface{ Close() error }).Close()
}

func TestIsAuthFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pq.Error{Code: "28P01"}, true},
		{&pq.Error{Code: "28000"}, true},
		{fmt.Errorf("wrapped: %w", &pq.Error{Code: "28P01"}), true},
		{&pq.Error{Code: "53300"}, false}, // too many connections
		{&mysql.MySQLError{Number: 1045}, true},
		{&mysql.MySQLError{Number: 1040}, false},
		{errors.New("password authentication failed"), false}, // text is not trusted
		{&loginError{msg: "x", auth: true}, true},
	} {
		if got := isAuthFailure(tc.err); got != tc.want {
			t.Errorf("isAuthFailure(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !errors.Is(&loginError{auth: true}, ErrAuth) || errors.Is(&loginError{}, ErrAuth) {
		t.Error("loginError does not match ErrAuth as it should")
	}
}
