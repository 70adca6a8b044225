package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/plugins"
	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/rotators/rotatortest"
)

// BenchmarkCallOverhead: one ValidateConfig round trip through the real
// gRPC boundary (mTLS, a plugin process), with p50 and p99.
func BenchmarkCallOverhead(b *testing.B) {
	path := rotatortest.BuildPlugin(b, "./examples/template")
	p, err := plugins.Launch(context.Background(), plugins.Config{Path: path, SHA256: rotatortest.FileSHA256(b, path)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	cfg := json.RawMessage(fmt.Sprintf(`{"accounts_dir":%q}`, b.TempDir()))
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := p.ValidateConfig(ctx, "basic-auth", cfg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkColdStart: Launch (sha256 check, start, handshake, Info) and
// Close of the template plugin.
func BenchmarkColdStart(b *testing.B) {
	path := rotatortest.BuildPlugin(b, "./examples/template")
	sum := rotatortest.FileSHA256(b, path)
	for b.Loop() {
		p, err := plugins.Launch(context.Background(), plugins.Config{Path: path, SHA256: sum})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}

// BenchmarkSupervisorRotator: one ValidateConfig round trip through the
// Supervisor's rotator (the shared process, metrics, restart checks), with
// p50 and p99: the supervisor's cost over BenchmarkCallOverhead.
func BenchmarkSupervisorRotator(b *testing.B) {
	path := rotatortest.BuildPlugin(b, "./examples/template")
	sum := rotatortest.FileSHA256(b, path)
	s, err := plugins.NewSupervisor(plugins.SupervisorConfig{
		Lookup: func(context.Context, string) (plugins.Config, error) {
			return plugins.Config{Path: path, SHA256: sum}, nil
		},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	r, err := s.Rotator(ctx, "template")
	if err != nil {
		b.Fatal(err)
	}
	v := r.(rotators.ConfigValidator)
	cfg := json.RawMessage(fmt.Sprintf(`{"accounts_dir":%q}`, b.TempDir()))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := v.ValidateConfig(ctx, "basic-auth", cfg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
