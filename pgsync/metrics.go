package pgsync

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/metricset"
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
	sub := metricset.Subsystem("pgsync")
	return &metrics{
		published:   sub.Counter("published_total", "Outbox rows published and marked done."),
		republished: sub.Counter("republished_total", "Rows found already in the origin after a crash or takeover and only marked (their log entry and notification repeated)."),
		reassigned:  sub.Counter("reassigned_total", "Reserved versions that never took effect (crash before the write, or a newer version stored) and were replaced by fresh ones."),
		rejected:    sub.Counter("rejected_total", "Outbox rows that break the dataplane's limits, marked done with an error and not published."),
		errors:      sub.CounterVec("errors_total", "Failures that made the syncer back off and retry, by where they happened (db, origin).", "stage"),
		wakeups:     sub.CounterVec("wakeups_total", "Times the idle syncer looked for rows, by cause (notify, poll).", "cause"),
		active:      sub.Gauge("active", "1 while this syncer holds the outbox lock and publishes, 0 while it stands by or reconnects."),
		lag: sub.Histogram("lag_seconds", "Time from an outbox row's insert (created_at) to its publication.",
			prometheus.ExponentialBuckets(0.001, 4, 10)),
	}
}

// register registers every collector on r, or none.
func (m *metrics) register(r prometheus.Registerer) error {
	return metricset.Register(r, "pgsync", "give each syncer its own Registerer",
		m.published, m.republished, m.reassigned, m.rejected, m.errors, m.wakeups, m.active, m.lag)
}
