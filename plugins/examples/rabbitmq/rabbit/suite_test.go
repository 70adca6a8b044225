package rabbit_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/rotary-secrets/rotary/plugins/examples/rabbitmq/rabbit"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// TestConformance runs the rotator conformance suite against the real
// broker, for both strategies. The suite's plaintext and hostile-host
// checks run for db-credentials only; TestNoPlaintext and TestParseValue
// cover them for this key-value shape.
//
// The strategies run in parallel: RabbitMQ answers every refused login
// after about three seconds, and the suite tries many.
func TestConformance(t *testing.T) {
	waitRabbit(t)
	for _, strategy := range []string{rotators.StrategyAdmin, rotators.StrategyAlternating} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			rotatortest.Run(t, harness(strategy))
		})
	}
}

// TestConformanceThroughPlugin runs the same suite against the built
// plugin binary (plugins/examples/rabbitmq) through the real gRPC boundary,
// as the daemon would use it (admin strategy; alternating runs in-process
// above, the boundary is the same).
func TestConformanceThroughPlugin(t *testing.T) {
	t.Parallel()
	waitRabbit(t)
	bin := rotatortest.BuildPlugin(t, "github.com/rotary-secrets/rotary/plugins/examples/rabbitmq")
	rotatortest.RunPlugin(t, bin, nil, harness(rotators.StrategyAdmin))
}

func harness(strategy string) rotatortest.Harness {
	return rotatortest.Harness{
		Rotator:    rabbit.New(),
		SecretType: rabbit.SecretType,
		NewAccount: func(t *testing.T, username string, alsoDrop ...string) rotators.Value {
			return createUser(t, username, "", appPerms, alsoDrop...)
		},
		Admin:       func(t *testing.T) rotators.Value { return newAdmin(t) },
		Login:       login,
		OpenSession: openSession,
		Strategies:  []string{strategy},
		// Names with URL hazards besides the suite's quoting hazards: every
		// name travels percent-encoded in a management API path.
		HostileNames: append(slices.Clone(rotatortest.DefaultHostileNames), `sl/ash`, `..`, `q?x=1&y#f`, `pct%2Fenc`),
		Config: func(strategy, adminSecret, _ string) json.RawMessage {
			return config(strategy, adminSecret)
		},
		OldKeepsWorking: func(strategy string) bool { return strategy == rotators.StrategyAlternating },
	}
}
