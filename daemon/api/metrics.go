package api

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rotary-secrets/rotary/store"
)

// metrics holds the API's Prometheus collectors in a registry of its own.
// Labels are route patterns and status codes, never names or values.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// rejected counts requests answered without an audit record of their
	// own: failed authentication (every one, recorded or suppressed) and
	// unknown routes. suppressed counts the failed authentications that
	// went only into a summary record.
	rejected   *prometheus.CounterVec
	suppressed prometheus.Counter
}

// Reasons of rotary_http_rejected_requests_total.
var rejectReasons = []string{"auth_missing", "auth_invalid", "auth_expired", "auth_revoked", "unknown_route"}

func newMetrics(st store.Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotary_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rotary_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotary_http_rejected_requests_total",
			Help: "Requests refused before any handler ran, by reason: failed authentication (auth_*) and unknown routes.",
		}, []string{"reason"}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rotary_audit_failed_auth_suppressed_total",
			Help: "Failed authentications over the per-address rate that got no audit record of their own (summed into a summary record).",
		}),
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	counts := &storeCounts{st: st}
	m.reg.MustRegister(m.requests, m.latency, m.rejected, m.suppressed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rotary_secrets", Help: "Secrets in the store (including those scheduled for deletion)."},
			func() float64 { return counts.get().secrets }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rotary_master_keys", Help: "Master keys in the store."},
			func() float64 { return counts.get().keys }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rotary_audit_chain_length", Help: "Records in the audit hash chain."},
			func() float64 { return counts.get().audit }),
	)
	return m
}

// Registry lets other parts of the daemon register their collectors.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		code := rec.status
		if code == 0 {
			code = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// storeCounts reads counts from the store at most once every few seconds,
// so a scrape never adds load proportional to the data.
type storeCounts struct {
	st   store.Store
	mu   sync.Mutex
	at   time.Time
	last struct{ secrets, keys, audit float64 }
}

func (c *storeCounts) get() struct{ secrets, keys, audit float64 } {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < 5*time.Second {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := c.st.CountSecrets(ctx); err == nil {
		c.last.secrets = float64(n)
	}
	if n, err := c.st.CountKeys(ctx); err == nil {
		c.last.keys = float64(n)
	}
	if heads, err := c.st.AuditHeads(ctx); err == nil {
		var n int64
		for _, h := range heads {
			n += h.Seq
		}
		c.last.audit = float64(n)
	}
	c.at = time.Now()
	return c.last
}

// Unwrap lets http.ResponseController reach the connection (a stream
// lifts the server's write deadline).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
