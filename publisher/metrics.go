package publisher

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/metricset"
)

// metrics are the publisher's Prometheus collectors.
type metrics struct {
	writes           *prometheus.CounterVec
	unchanged        prometheus.Counter
	rejected         prometheus.Counter
	stale            prometheus.Counter
	errors           prometheus.Counter
	notifyErrors     prometheus.Counter
	snapshotErrors   prometheus.Counter
	snapshotDuration prometheus.Histogram
	snapshotRecords  prometheus.Counter
	trimSkipped      prometheus.Counter
	late             prometheus.Counter
	restamps         prometheus.Counter
	repaired         prometheus.Counter
	ackMissing       prometheus.Counter
	clockRefused     prometheus.Counter
	receipts         *prometheus.CounterVec
}

func newMetrics() *metrics {
	sub := metricset.Subsystem("publisher")
	counter := sub.Counter
	return &metrics{
		writes:         sub.CounterVec("writes_total", "Records written to the origin with a new version, by operation (put, delete).", "op"),
		unchanged:      counter("unchanged_total", "Writes skipped because the same value or version was already stored."),
		rejected:       counter("rejected_total", "Writes and import lines rejected as invalid."),
		stale:          counter("stale_total", "PutVersion calls refused because the origin holds a newer version."),
		errors:         counter("errors_total", "Writes that failed in the origin."),
		notifyErrors:   counter("notify_errors_total", "Notifier calls that failed after a durable write (the change log still carries the change)."),
		snapshotErrors: counter("snapshot_errors_total", "Namespace snapshots that could not be built or written."),
		snapshotRecords: counter("snapshot_records_written_total",
			"Records written into snapshots: the changed records of each pass (all of a namespace when a store without snapshot parts rewrites it whole)."),
		trimSkipped: counter("log_trim_skipped_total", "Snapshot passes that left the change log untrimmed because a namespace's snapshot failed."),
		late:        counter("late_total", "Publish attempts that overran the settle budget (their version is given up)."),
		restamps:    counter("restamps_total", "Publish attempts made under a fresh version after an attempt overran the settle budget."),
		repaired:    counter("repaired_total", "Crashed or late publishes the repair pass published again under a fresh version."),
		ackMissing: counter("acknowledged_missing_total",
			"Acknowledged writes found missing from the change log (an entry removed in the origin) and published again under a fresh version."),
		clockRefused: counter("clock_refused_total",
			"Writes refused because this host's clock was further from the origin's than Timing.ClockSkew."),
		receipts: sub.CounterVec("receipts_total",
			"Receipts waited for (Receipt, ?wait=), by result: met, incomplete (the wait ended first), refused (members refused the change so the share cannot be met).",
			"result"),
		snapshotDuration: sub.Histogram("snapshot_duration_seconds", "Time to build and write one namespace snapshot.",
			prometheus.ExponentialBuckets(0.001, 4, 10)),
	}
}

// register registers every collector on r, or none.
func (m *metrics) register(r prometheus.Registerer) error {
	return metricset.Register(r, "publisher", "give each publisher its own Registerer",
		m.writes, m.unchanged, m.rejected, m.stale, m.errors, m.notifyErrors,
		m.snapshotErrors, m.snapshotDuration, m.snapshotRecords, m.trimSkipped,
		m.late, m.restamps, m.repaired, m.ackMissing, m.clockRefused, m.receipts,
	)
}
