package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rotary-secrets/rotary/client"
)

// snapshot is what must not change when a bad request is refused.
func snapshot(c cli, prefix, existing string) (client.Secret, []string) {
	c.t.Helper()
	d := okJSON[client.Secret](c, "secret", "describe", existing)
	list := okJSON[client.SecretList](c, "secret", "list", "--prefix", prefix)
	var names []string
	for _, s := range list.Secrets {
		names = append(names, s.Name)
	}
	return d, names
}

func TestBadInputCLI(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	prefix := uniq("bad")
	existing := prefix + "/ok"
	c.ok("secret", "create", existing, "--value", "original")
	before, beforeNames := snapshot(c, prefix, existing)

	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"secret", "create", prefix + "/has space", "--value", "x"}, exitUsage, []string{"invalid input", "name"}},
		{[]string{"secret", "create", prefix + "/star*", "--value", "x"}, exitUsage, []string{"invalid input", "name"}},
		{[]string{"secret", "create", prefix + "/" + strings.Repeat("n", 260), "--value", "x"}, exitUsage, []string{"invalid input", "name"}},
		{[]string{"secret", "create", prefix + "/t", "--type", "no-such-type", "--value", "x"}, exitUsage, []string{"invalid input", "no-such-type"}},
		{[]string{"secret", "create", prefix + "/creds", "--type", "db-credentials", "--value", "{not json"}, exitUsage, []string{"invalid input", "db-credentials"}},
		{[]string{"secret", "create", prefix + "/big", "--value-file", big}, exitUsage, []string{"--value-file", "64 KiB"}},
		{[]string{"secret", "put", existing, "--value-file", big}, exitUsage, []string{"--value-file", "64 KiB"}},
		{[]string{"secret", "put", existing, "--value-file", filepath.Join(t.TempDir(), "missing")}, exitUsage, []string{"--value-file"}},
		{[]string{"secret", "put", existing}, exitUsage, []string{"--value"}},
		{[]string{"secret", "put", existing, "--value", "a", "--value-file", big}, exitUsage, []string{"only one"}},
		{[]string{"secret", "create", prefix + "/tag", "--tag", "novalue"}, exitUsage, []string{"--tag"}},
		{[]string{"secret", "get", existing, "--version", "99"}, exitNotFound, []string{"not found"}},
		{[]string{"secret", "get", existing, "--stage", "pending"}, exitNotFound, []string{"not found"}},
		{[]string{"secret", "get", existing, "--stage", "bogus"}, exitUsage, []string{"--stage"}},
		{[]string{"secret", "put", prefix + "/missing", "--value", "x"}, exitNotFound, []string{"not found"}},
		{[]string{"secret", "delete", existing, "--recovery-window", "31d"}, exitUsage, []string{"--recovery-window"}},
		{[]string{"key", "create", "--region", "default", "--rotation-period", "yearly"}, exitUsage, []string{"--rotation-period"}},
		{[]string{"secret", "list", "--bogus"}, exitUsage, []string{"--bogus"}},
	}
	for _, tc := range cases {
		c.fail(tc.code, tc.want, tc.args...)
	}
	after, afterNames := snapshot(c, prefix, existing)
	if !reflect.DeepEqual(before, after) || !reflect.DeepEqual(beforeNames, afterNames) {
		t.Errorf("refused requests changed the store:\nbefore %+v %v\nafter  %+v %v", before, beforeNames, after, afterNames)
	}
	if got := c.ok("secret", "get", existing); got != "original" {
		t.Errorf("value after refused requests = %q, want original", got)
	}
}

func TestBadInputHTTP(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	prefix := uniq("rawbad")
	existing := prefix + "/ok"
	c.ok("secret", "create", existing, "--value", "original")
	before, beforeNames := snapshot(c, prefix, existing)

	jsonBody := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	putPath := "/v1/secrets/" + client.PathEscape(existing) + "/versions"
	huge := bytes.Repeat([]byte("y"), 64<<10+1)
	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		status      []int
		mention     string // in the error text, lower case
	}{
		{"malformed JSON", "POST", "/v1/secrets", "application/json", []byte(`{"name": "` + prefix + `/x", `), []int{400}, ""},
		{"not an object", "POST", "/v1/secrets", "application/json", []byte(`[1,2]`), []int{400}, ""},
		{"unknown field", "POST", "/v1/secrets", "application/json",
			[]byte(`{"name":"` + prefix + `/x","valu":{"data":"v"}}`), []int{400}, "valu"},
		{"trailing data", "POST", "/v1/secrets", "application/json",
			[]byte(`{"name":"` + prefix + `/x"} {"name":"y"}`), []int{400}, ""},
		{"wrong content type", "POST", "/v1/secrets", "text/plain",
			jsonBody(client.CreateSecretRequest{Name: prefix + "/x", Value: client.NewValue([]byte("v"))}), []int{415}, ""},
		{"no content type", "POST", "/v1/secrets", "",
			jsonBody(client.CreateSecretRequest{Name: prefix + "/x", Value: client.NewValue([]byte("v"))}), []int{415}, ""},
		{"invalid name", "POST", "/v1/secrets", "application/json",
			jsonBody(client.CreateSecretRequest{Name: prefix + "/a b", Value: client.NewValue([]byte("v"))}), []int{400}, "name"},
		{"empty name", "POST", "/v1/secrets", "application/json",
			jsonBody(client.CreateSecretRequest{Name: "", Value: client.NewValue([]byte("v"))}), []int{400}, "name"},
		{"unknown type", "POST", "/v1/secrets", "application/json",
			jsonBody(client.CreateSecretRequest{Name: prefix + "/x", Type: "nope", Value: client.NewValue([]byte("v"))}), []int{400}, "nope"},
		{"bad value encoding", "POST", "/v1/secrets", "application/json",
			[]byte(`{"name":"` + prefix + `/x","value":{"data":"v","encoding":"rot13"}}`), []int{400}, "encoding"},
		{"value over 64 KiB (create)", "POST", "/v1/secrets", "application/json",
			jsonBody(client.CreateSecretRequest{Name: prefix + "/x", Value: client.NewValue(huge)}), []int{400, 413}, ""},
		{"value over 64 KiB (put)", "POST", putPath, "application/json",
			jsonBody(client.PutSecretRequest{Value: client.NewValue(huge)}), []int{400, 413}, ""},
		{"body over the limit", "POST", putPath, "application/json",
			jsonBody(client.PutSecretRequest{Value: client.NewValue(bytes.Repeat([]byte("z"), 300<<10))}), []int{413}, ""},
		{"put without value", "POST", putPath, "application/json", []byte(`{}`), []int{400}, "value"},
		{"bad version query", "GET", "/v1/secrets/" + client.PathEscape(existing) + "/value?version=abc", "", nil, []int{400}, "version"},
		{"bad stage query", "GET", "/v1/secrets/" + client.PathEscape(existing) + "/value?stage=nope", "", nil, []int{400}, "stage"},
		{"bad recovery window", "DELETE", "/v1/secrets/" + client.PathEscape(existing) + "?recovery_window=1h", "", nil, []int{400}, "recovery"},
		{"bad policy", "PUT", "/v1/policies/" + prefix, "application/json", []byte(`{"rules":[{"secrets":"*","actions":["fly"]}]}`), []int{400}, "fly"},
	}
	for _, tc := range cases {
		status, body := s.httpDo(t, tc.method, tc.path, s.rootToken, tc.contentType, tc.body)
		ok := false
		for _, st := range tc.status {
			ok = ok || st == status
		}
		var eb client.ErrorBody
		jerr := json.Unmarshal(body, &eb)
		switch {
		case !ok:
			t.Errorf("%s: %s %s answered %d, want %v: %s", tc.name, tc.method, tc.path, status, tc.status, trunc(body))
		case jerr != nil || eb.Error == "":
			t.Errorf("%s: the %d answer is not {\"error\": ...}: %s", tc.name, status, trunc(body))
		case tc.mention != "" && !strings.Contains(strings.ToLower(eb.Error), tc.mention):
			t.Errorf("%s: error %q does not mention %q", tc.name, eb.Error, tc.mention)
		}
	}
	// unauthenticated requests are refused before the body is looked at
	if status, _ := s.httpDo(t, "POST", "/v1/secrets", "", "application/json", []byte(`{"name":"`+prefix+`/y"}`)); status != http.StatusUnauthorized {
		t.Errorf("POST /v1/secrets without a token answered %d, want 401", status)
	}
	if status, _ := s.httpDo(t, "GET", "/v1/secrets/"+client.PathEscape(existing), "e2e-wrong-"+randHex(8), "", nil); status != http.StatusUnauthorized {
		t.Errorf("GET with a wrong token answered %d, want 401", status)
	}
	if status, _ := s.httpDo(t, "GET", "/v1/secrets/"+client.PathEscape(prefix+"/nope"), s.rootToken, "", nil); status != http.StatusNotFound {
		t.Errorf("GET an unknown secret answered %d, want 404", status)
	}

	after, afterNames := snapshot(c, prefix, existing)
	if !reflect.DeepEqual(before, after) || !reflect.DeepEqual(beforeNames, afterNames) {
		t.Errorf("refused requests changed the store:\nbefore %+v %v\nafter  %+v %v", before, beforeNames, after, afterNames)
	}
	if got := c.ok("secret", "get", existing); got != "original" {
		t.Errorf("value after refused requests = %q, want original", got)
	}
	c.ok("audit", "verify")
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
