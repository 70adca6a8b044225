package hooks

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rotary-secrets/rotary/store"
)

type metrics struct {
	deliveries *prometheus.CounterVec
	latency    prometheus.Histogram
	dropped    *prometheus.CounterVec
	st         store.Store
}

func newMetrics(st store.Store) *metrics {
	return &metrics{
		st: st,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotary_hook_deliveries_total",
			Help: "Hook delivery attempts by hook and result (ok, retry, given_up).",
		}, []string{"hook", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rotary_hook_delivery_latency_seconds",
			Help:    "Time from an event's creation to its successful delivery to a hook.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotary_hook_dropped_total",
			Help: "Pending hook deliveries dropped because the hook's backlog was over its cap.",
		}, []string{"hook"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.deliveries, m.latency, m.dropped, stateCollector{m.st}}
}

// stateCollector reports each hook's backlog and failing state from the
// store at scrape time, so every daemon sharing it reports the same.
type stateCollector struct{ st store.Store }

var (
	backlogDesc = prometheus.NewDesc("rotary_hook_backlog", "Pending deliveries of a hook.", []string{"hook"}, nil)
	failingDesc = prometheus.NewDesc("rotary_hook_failing",
		"1 when a hook gave up a delivery and has not succeeded since.", []string{"hook"}, nil)
)

func (stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- backlogDesc; ch <- failingDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hs, err := c.st.ListHooks(ctx)
	if err != nil {
		return
	}
	for _, h := range hs {
		failing := 0.0
		if h.Failing {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(h.Backlog), h.Name)
		ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue, failing, h.Name)
	}
}
