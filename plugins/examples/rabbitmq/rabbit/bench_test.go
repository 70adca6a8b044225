package rabbit_test

import (
	"context"
	"os"
	"testing"

	"github.com/rotary-secrets/rotary/internal/testenv"
	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/plugins/examples/rabbitmq/rabbit"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// BenchmarkRotation measures whole admin-strategy rotations of one
// RabbitMQ user (Create, Set through the management API, Test with a real
// AMQP login, Finish) against the machine's broker: in process, and
// through the plugin binary over gRPC as the daemon runs it.
func BenchmarkRotation(b *testing.B) {
	waitRabbit(b)
	bin := rotatortest.BuildPlugin(b, "github.com/rotary-secrets/rotary/plugins/examples/rabbitmq")
	p, err := plugins.Launch(context.Background(), plugins.Config{Path: bin, SHA256: rotatortest.FileSHA256(b, bin), Env: []string{"PATH=" + os.Getenv("PATH")}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for _, tc := range []struct {
		name string
		r    rotators.Rotator
	}{{"in-process", rabbit.New()}, {"plugin", p.Rotator()}} {
		b.Run(tc.name, func(b *testing.B) {
			user := testenv.Unique("rt-bench-")
			cfg := config(rotators.StrategyAdmin, "rabbit/admin")
			admin := newAdmin(b)
			cur := createUser(b, user, "", appPerms)
			sec := rotators.Secret{Name: "rabbit/" + user, Type: rabbit.SecretType, Region: "default", Version: 2}
			ctx := context.Background()
			for b.Loop() {
				resp, err := tc.r.Create(ctx, rotators.CreateRequest{Secret: sec, Config: cfg, Current: cur})
				if err != nil {
					b.Fatal(err)
				}
				pending := resp.Value
				if err := tc.r.Set(ctx, rotators.SetRequest{Secret: sec, Config: cfg, Current: cur, Pending: pending, Admin: admin}); err != nil {
					b.Fatal(err)
				}
				if err := tc.r.Test(ctx, rotators.TestRequest{Secret: sec, Config: cfg, Value: pending}); err != nil {
					b.Fatal(err)
				}
				if err := tc.r.Finish(ctx, rotators.FinishRequest{Secret: sec, Config: cfg, Current: pending, Previous: cur, Admin: admin}); err != nil {
					b.Fatal(err)
				}
				cur = pending
				sec.Version++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
		})
	}
}
