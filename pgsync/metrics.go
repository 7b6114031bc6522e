package pgsync

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the syncer's Prometheus collectors.
type metrics struct {
	published   prometheus.Counter
	republished prometheus.Counter
	reassigned  prometheus.Counter
	rejected    prometheus.Counter
	errors      *prometheus.CounterVec
	wakeups     *prometheus.CounterVec
	active      prometheus.Gauge
	lag         prometheus.Histogram
}

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "pgsync", Name: name, Help: help,
		})
	}
	return &metrics{
		published:   counter("published_total", "Outbox rows published and marked done."),
		republished: counter("republished_total", "Rows found already in the origin after a crash or takeover and only marked (their log entry and notification repeated)."),
		reassigned:  counter("reassigned_total", "Reserved versions that never took effect (crash before the write, or a newer version stored) and were replaced by fresh ones."),
		rejected:    counter("rejected_total", "Outbox rows that break the dataplane's limits, marked done with an error and not published."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "pgsync", Name: "errors_total",
			Help: "Failures that made the syncer back off and retry, by where they happened (db, origin).",
		}, []string{"stage"}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "pgsync", Name: "wakeups_total",
			Help: "Times the idle syncer looked for rows, by cause (notify, poll).",
		}, []string{"cause"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dataplane", Subsystem: "pgsync", Name: "active",
			Help: "1 while this syncer holds the outbox lock and publishes, 0 while it stands by or reconnects.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dataplane", Subsystem: "pgsync", Name: "lag_seconds",
			Help:    "Time from an outbox row's insert (created_at) to its publication.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.republished, m.reassigned, m.rejected, m.errors, m.wakeups, m.active, m.lag}
}

// register registers every collector on r, undoing the work on failure.
func (m *metrics) register(r prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			return fmt.Errorf("pgsync: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}
