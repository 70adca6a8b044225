package e2e

// Rotation settings that mean what they say: `rotation set` merges with
// the stored settings, refuses mistakes when they are saved, and a
// schedule the daemon cannot follow is shown, logged and counted instead
// of silently dropping off the schedule.

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/lib/pq"

	"github.com/rotary-secrets/rotary/client"
)

// showRotation reads a secret's rotation settings as JSON.
func showRotation(c cli, name string) client.RotationShow {
	c.t.Helper()
	return okJSON[client.RotationShow](c, "rotation", "show", name)
}

// hasChange reports whether changes hold field: from -> to.
func hasChange(changes []client.RotationChange, field, from, to string) bool {
	for _, ch := range changes {
		if ch.Field == field && ch.From == from && ch.To == to {
			return true
		}
	}
	return false
}

func TestRotationSetMerges(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	name := uniq("app/key")
	c.ok("secret", "create", name, "--type", "password", "--value", "initial-"+randHex(8))

	// The first set needs a rotator.
	c.fail(2, []string{"rotator", "required"}, "rotation", "set", name, "--schedule", "@every 2h")
	c.fail(2, []string{"nothing to change"}, "rotation", "set", name)

	first := okJSON[client.RotationShow](c, "rotation", "set", name, "--rotator", "random", "--schedule", "@every 2h")
	if !hasChange(first.Changes, "rotator", "(none)", "random") || !hasChange(first.Changes, "schedule", "(none)", "@every 2h0m0s") {
		t.Fatalf("first set: changes %+v", first.Changes)
	}

	// Config alone: rotator and schedule stay.
	out := okJSON[client.RotationShow](c, "rotation", "set", name, "--config-json", `{"password":{"length":40}}`)
	if out.Rotator != "random" || out.Schedule != "@every 2h0m0s" || out.Config["password"] == nil {
		t.Fatalf("after --config-json: %+v", out.RotationInfo)
	}
	if len(out.Changes) != 1 || out.Changes[0].Field != "config.password" || out.Changes[0].From != "(none)" {
		t.Fatalf("after --config-json: changes %+v, want only config.password", out.Changes)
	}
	firstDue := out.NextRotationAt

	// Window alone: the rest stays.
	out = okJSON[client.RotationShow](c, "rotation", "set", name, "--window", "30m")
	if out.Rotator != "random" || out.Schedule != "@every 2h0m0s" || out.Config["password"] == nil || out.Window != "30m0s" {
		t.Fatalf("after --window: %+v", out.RotationInfo)
	}

	// Schedule alone, in text: the change is printed; config and window stay.
	text := c.ok("rotation", "set", name, "--schedule", "@every 3h")
	if !strings.Contains(text, "schedule: @every 2h -> @every 3h") {
		t.Fatalf("set --schedule printed:\n%s", text)
	}
	if strings.Contains(text, "config.") || strings.Contains(text, "rotator:") {
		t.Fatalf("set --schedule reports changes it did not make:\n%s", text)
	}
	out = showRotation(c, name)
	if out.Config["password"] == nil || out.Window != "30m0s" || out.Schedule != "@every 3h0m0s" || out.State != client.RotationScheduled {
		t.Fatalf("after --schedule: %+v", out.RotationInfo)
	}
	if firstDue == nil || out.NextRotationAt == nil {
		t.Fatalf("no next rotation time: %v %v", firstDue, out.NextRotationAt)
	}

	// The rotator alone (the same one): nothing changes, nothing is lost.
	same := okJSON[client.RotationShow](c, "rotation", "set", name, "--rotator", "random")
	if len(same.Changes) != 0 || same.Schedule != "@every 3h0m0s" || same.Config["password"] == nil {
		t.Fatalf("set --rotator random again: %+v changes %+v", same.RotationInfo, same.Changes)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(c.ok("rotation", "set", name, "--rotator", "random", "-o", "json")), &raw); err != nil || string(raw["changes"]) != "[]" {
		t.Fatalf("-o json of an unchanged set: changes %q (%v), want []", raw["changes"], err)
	}
	if text := c.ok("rotation", "set", name, "--rotator", "random"); !strings.HasPrefix(text, "no change\n") {
		t.Fatalf("an unchanged set printed:\n%s", text)
	}
	// A change of config keeps the due time.
	before := showRotation(c, name).NextRotationAt
	c.ok("rotation", "set", name, "--config-json", `{"password":{"length":48}}`)
	if after := showRotation(c, name).NextRotationAt; after == nil || !after.Equal(*before) {
		t.Fatalf("a config change moved the due time: %v -> %v", before, after)
	}

	// --clear-schedule: manual only, the window goes with the schedule,
	// the config stays.
	out = okJSON[client.RotationShow](c, "rotation", "set", name, "--clear-schedule")
	if out.Schedule != "" || out.Window != "" || out.NextRotationAt != nil || len(out.Next) != 0 || out.State != client.RotationManual {
		t.Fatalf("after --clear-schedule: %+v next %v", out.RotationInfo, out.Next)
	}
	if out.Config["password"] == nil || out.Rotator != "random" {
		t.Fatalf("--clear-schedule lost the config or rotator: %+v", out.RotationInfo)
	}
	if !hasChange(out.Changes, "schedule", "@every 3h0m0s", "none (manual only)") || !hasChange(out.Changes, "window", "30m0s", "(none)") {
		t.Fatalf("--clear-schedule: changes %+v", out.Changes)
	}
	c.fail(2, []string{"--schedule", "--clear-schedule"}, "rotation", "set", name, "--schedule", "@daily", "--clear-schedule")

	// --config-json '{}' clears the config.
	out = okJSON[client.RotationShow](c, "rotation", "set", name, "--config-json", "{}")
	if len(out.Config) != 0 || !hasChange(out.Changes, "config.password", `{"length":48}`, "(none)") {
		t.Fatalf("after --config-json {}: config %v changes %+v", out.Config, out.Changes)
	}
	// The rotation still works after all these changes.
	c.ok("rotate", name, "--wait")

	// The API merges too: a PUT with only a schedule keeps the rest.
	c.ok("rotation", "set", name, "--config-json", `{"password":{"length":33}}`)
	code, body := s.httpDo(t, "PUT", "/v1/secrets/"+client.PathEscape(name)+"/rotation", s.rootToken, "application/json", []byte(`{"schedule":"@every 4h"}`))
	if code != 200 {
		t.Fatalf("PUT schedule only: %d %s", code, body)
	}
	out = showRotation(c, name)
	if out.Schedule != "@every 4h0m0s" || out.Rotator != "random" || out.Config["password"] == nil {
		t.Fatalf("after a PUT of the schedule only: %+v", out.RotationInfo)
	}
	// null removes the schedule over the API.
	code, body = s.httpDo(t, "PUT", "/v1/secrets/"+client.PathEscape(name)+"/rotation", s.rootToken, "application/json", []byte(`{"schedule":null}`))
	if code != 200 || showRotation(c, name).Schedule != "" {
		t.Fatalf("PUT schedule null: %d %s", code, body)
	}
}

func TestRotationSetRefusesMistakes(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	c := s.root(t)
	pgName := uniq("db/pg")
	c.ok("secret", "create", pgName, "--type", "db-credentials", "--value", pgValue("app_user", "pw-"+randHex(8), 5432))
	myAdmin := uniq("db/my-admin")
	c.ok("secret", "create", myAdmin, "--type", "db-credentials", "--value",
		`{"engine":"mysql","host":"127.0.0.1","port":3306,"dbname":"mysql","username":"root","password":"x-`+randHex(6)+`"}`)
	pwSecret := uniq("app/pw")
	c.ok("secret", "create", pwSecret, "--type", "password", "--value", "pw-"+randHex(8))

	// A rotator for another engine than the value's.
	c.fail(2, []string{"rotator", "mysql", `"postgres"`}, "rotation", "set", pgName, "--rotator", "mysql")
	c.fail(2, []string{"rotator", "redis", `"postgres"`}, "rotation", "set", pgName, "--rotator", "redis")
	// An unknown config field.
	c.fail(2, []string{"config", "unknown field", "stratgy"}, "rotation", "set", pgName, "--rotator", "postgres", "--config-json", `{"stratgy":"admin"}`)
	c.fail(2, []string{"config", "unknown field", "lenght"}, "rotation", "set", pwSecret, "--rotator", "random", "--config-json", `{"password":{"lenght":20}}`)
	// An admin_secret that does not exist, is of another engine or type.
	c.fail(2, []string{"admin_secret", "no-such/admin", "no such secret"}, "rotation", "set", pgName, "--rotator", "postgres",
		"--config-json", `{"strategy":"admin","admin_secret":"no-such/admin"}`)
	c.fail(2, []string{"admin_secret", myAdmin, "engine", "mysql"}, "rotation", "set", pgName, "--rotator", "postgres",
		"--config-json", `{"strategy":"admin","admin_secret":"`+myAdmin+`"}`)
	c.fail(2, []string{"admin_secret", pwSecret, "password secret"}, "rotation", "set", pgName, "--rotator", "postgres",
		"--config-json", `{"strategy":"admin","admin_secret":"`+pwSecret+`"}`)
	// A schedule under the daemon's minimum (1s in dev mode) or that never fires.
	c.fail(2, []string{"schedule", "never fires"}, "rotation", "set", pgName, "--rotator", "postgres", "--schedule", "0 0 30 2 *")
	// Nothing was stored by the refused changes.
	c.fail(3, []string{"no rotation is configured"}, "rotation", "show", pgName)

	// Negative control: the right rotator and a valid admin secret work.
	pgAdmin := uniq("db/pg-admin")
	c.ok("secret", "create", pgAdmin, "--type", "db-credentials", "--value", pgValue("admin_user", "pw-"+randHex(8), 5432))
	out := okJSON[client.RotationShow](c, "rotation", "set", pgName, "--rotator", "postgres", "--schedule", "@every 2h",
		"--config-json", `{"strategy":"admin","admin_secret":"`+pgAdmin+`"}`)
	if out.Config["strategy"] != "admin" || out.BoundTo == "" {
		t.Fatalf("valid settings: %+v", out.RotationInfo)
	}
	// A refused change of stored settings leaves them as they were.
	c.fail(2, []string{"rotator", "mysql"}, "rotation", "set", pgName, "--rotator", "mysql")
	c.fail(2, []string{"admin_secret", "no such secret"}, "rotation", "set", pgName, "--config-json", `{"strategy":"admin","admin_secret":"gone/x"}`)
	if got := showRotation(c, pgName); got.Rotator != "postgres" || got.Config["admin_secret"] != pgAdmin || got.Schedule != "@every 2h0m0s" {
		t.Fatalf("after refused changes: %+v", got.RotationInfo)
	}

	// A disabled rotation shows no next rotation times.
	c.ok("rotation", "disable", pgName)
	got := showRotation(c, pgName)
	if got.NextRotationAt != nil || len(got.Next) != 0 || got.State != client.RotationDisabled {
		t.Fatalf("disabled: next %v %v state %q", got.NextRotationAt, got.Next, got.State)
	}
	if text := c.ok("rotation", "show", pgName); !strings.Contains(text, "none (disabled)") {
		t.Fatalf("rotation show of a disabled rotation:\n%s", text)
	}
	// Changing a disabled rotation's schedule shows no next times either.
	set := okJSON[client.RotationShow](c, "rotation", "set", pgName, "--schedule", "@every 3h")
	if set.Enabled || set.NextRotationAt != nil || len(set.Next) != 0 {
		t.Fatalf("set on a disabled rotation: enabled %v next %v %v", set.Enabled, set.NextRotationAt, set.Next)
	}
	for _, row := range okJSON[client.Status](c, "status").Secrets {
		if row.Name == pgName && (row.NextRotation != nil || row.State != client.RotationDisabled) {
			t.Fatalf("status of a disabled rotation: %+v", row)
		}
	}
	c.ok("rotation", "enable", pgName)
	if got := showRotation(c, pgName); got.NextRotationAt == nil || len(got.Next) != 3 || got.State != client.RotationScheduled {
		t.Fatalf("enabled again: %+v next %v", got.RotationInfo, got.Next)
	}
}

// TestRotationSetKeepsAdminStrategy: changing the schedule of an
// admin-strategy rotation keeps the strategy, and the next rotation still
// goes through the admin role (the rotated role may not change its own
// password).
func TestRotationSetKeepsAdminStrategy(t *testing.T) {
	t.Parallel()
	db := pgSuper(t)
	s := startDev(t)
	c := s.root(t)
	user := "e2e_keepadm_" + randHex(4)
	pw0 := pgRole(t, db, user)
	adm, admPw := pgAdminRole(t, db)
	name := "pg/" + user
	admName := "pg/admin-" + randHex(4)
	c.ok("secret", "create", name, "--type", "db-credentials", "--value", pgValue(user, pw0, 5432))
	c.ok("secret", "create", admName, "--type", "db-credentials", "--value", pgValue(adm, admPw, 5432))
	c.ok("rotation", "set", name, "--rotator", "postgres", "--config-json", `{"strategy":"admin","admin_secret":"`+admName+`"}`)
	c.ok("rotation", "set", name, "--schedule", "@every 2h")
	got := showRotation(c, name)
	if got.Config["strategy"] != "admin" || got.Config["admin_secret"] != admName || got.Schedule != "@every 2h0m0s" {
		t.Fatalf("after --schedule: %+v", got.RotationInfo)
	}
	// The rotated role may not change its own password any more (ALTER
	// ROLE is refused in its read-only transactions): only the admin path
	// can rotate it now.
	if _, err := db.Exec(fmt.Sprintf(`ALTER ROLE %s SET default_transaction_read_only = on`, pq.QuoteIdentifier(user))); err != nil {
		t.Fatal(err)
	}
	c.ok("rotate", name, "--wait")
	u1, pw1 := pgCurrent(c, name)
	mustLogin(t, "rotated through the admin", u1, pw1)
	mustRefuse(t, "old", user, pw0)

	// Negative control: without the admin strategy (the config cleared)
	// the rotation fails, so the one above went through the admin.
	c.ok("rotation", "set", name, "--config-json", "{}")
	c.fail(1, []string{"rotation"}, "rotate", name, "--wait")
	mustLogin(t, "still current after the failed single-user rotation", u1, pw1)
}

// TestRotationSetConcurrent: two `rotation set` with different flags at
// once both take effect, on each store.
func TestRotationSetConcurrent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *server) {
		c := s.root(t)
		name := uniq("app/conc")
		c.ok("secret", "create", name, "--type", "password", "--value", "v-"+randHex(8))
		c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 2h")
		for i := range 6 {
			sched := fmt.Sprintf("@every %dh", 3+i)
			length := 20 + i
			var wg sync.WaitGroup
			errs := make([]string, 2)
			for j, args := range [][]string{
				{"rotation", "set", name, "--schedule", sched},
				{"rotation", "set", name, "--config-json", fmt.Sprintf(`{"password":{"length":%d}}`, length)},
			} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, stderr, code := c.run(args...); code != 0 {
						errs[j] = fmt.Sprintf("%v: exit %d: %s", args, code, stderr)
					}
				}()
			}
			wg.Wait()
			for _, e := range errs {
				if e != "" {
					t.Fatal(e)
				}
			}
			got := showRotation(c, name)
			pw, _ := got.Config["password"].(map[string]any)
			if got.Schedule != fmt.Sprintf("@every %dh0m0s", 3+i) || pw == nil || pw["length"] != float64(length) {
				b, _ := json.Marshal(got.RotationInfo)
				t.Fatalf("round %d: one of two concurrent changes was lost: %s", i, b)
			}
		}
	})
}

// TestRotationUnschedulable: a daemon whose min_rotation_interval is
// above a stored schedule (raised since, or a dev database reused) does
// not silently drop the secret: it is shown as unschedulable with the
// reason, logged once, counted in a metric, and a new schedule brings it
// back.
func TestRotationUnschedulable(t *testing.T) {
	t.Parallel()
	fx := newPGFixture(t)
	dev := startPGServer(t, fx, "") // min_rotation_interval: 1s
	c := dev.root(t)
	name := uniq("app/fast")
	ok := uniq("app/slow")
	for _, n := range []string{name, ok} {
		c.ok("secret", "create", n, "--type", "password", "--value", "v-"+randHex(8))
	}
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 30m")
	c.ok("rotation", "set", ok, "--rotator", "random", "--schedule", "@every 2h")
	dev.stop()

	prod := startPGServer(t, fx, "", schConfigSet("min_rotation_interval", "1h"))
	c = prod.root(t)
	prod.waitLog("rotation is not scheduled", readyTimeout)

	got := showRotation(c, name)
	if got.State != client.RotationUnschedulable || !strings.Contains(got.StateReason, "min_rotation_interval") || !strings.Contains(got.StateReason, "1h") {
		t.Fatalf("show: state %q reason %q", got.State, got.StateReason)
	}
	if text := c.ok("rotation", "show", name); !strings.Contains(text, "unschedulable") || !strings.Contains(text, "min_rotation_interval") {
		t.Fatalf("rotation show:\n%s", text)
	}
	// Negative control: the schedule above the minimum is scheduled.
	if got := showRotation(c, ok); got.State != client.RotationScheduled || got.StateReason != "" {
		t.Fatalf("the valid schedule: state %q reason %q", got.State, got.StateReason)
	}
	var row client.StatusRow
	for _, r := range okJSON[client.Status](c, "status").Secrets {
		if r.Name == name {
			row = r
		}
	}
	if row.State != client.RotationUnschedulable || !strings.Contains(row.StateReason, "min_rotation_interval") {
		t.Fatalf("status row: %+v", row)
	}
	if text := c.ok("status"); !strings.Contains(text, "STATE") || !strings.Contains(text, "unschedulable") {
		t.Fatalf("status:\n%s", text)
	}
	if v := metricValue(t, prod.metrics(t), "rotary_rotations_unschedulable"); v != 1 {
		t.Fatalf("rotary_rotations_unschedulable = %v, want 1", v)
	}

	// Saving that schedule now is refused, naming the interval.
	c.fail(2, []string{"min_rotation_interval", "1h"}, "rotation", "set", name, "--schedule", "@every 30m")
	// Runs (which compute the next due time) do not log it again.
	c.ok("rotate", name, "--wait")
	c.ok("rotate", name, "--wait")
	if got := showRotation(c, name); got.State != client.RotationUnschedulable || got.NextRotationAt != nil {
		t.Fatalf("after runs: state %q next %v", got.State, got.NextRotationAt)
	}
	logs := prod.logs.String()
	if n := strings.Count(logs, "rotation is not scheduled"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, name) {
		t.Fatalf("the log does not name the secret:\n%s", logs)
	}

	// A valid schedule brings it back.
	out := okJSON[client.RotationShow](c, "rotation", "set", name, "--schedule", "@every 2h")
	if out.State != client.RotationScheduled || out.NextRotationAt == nil || len(out.Next) != 3 {
		t.Fatalf("rescheduled: %+v next %v", out.RotationInfo, out.Next)
	}
	prod.waitLog("rotation schedulable again", readyTimeout)
}
