package follow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/metricset"
)

// metrics are a follower's Prometheus collectors. With a nil Registerer
// they still count but are exported nowhere.
type metrics struct {
	reads   *prometheus.CounterVec // trigger, result
	changes prometheus.Counter
	refused *prometheus.CounterVec // reason
	revalid prometheus.Counter
	panics  prometheus.Counter

	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sub := metricset.Subsystem("follow")
	m := &metrics{
		reads: sub.CounterVec("log_reads_total",
			"Reads of the origin change log, by trigger (start, interval, rejoin, digest, rewind, recover) and result (ok, error, truncated).",
			"trigger", "result"),
		changes: sub.Counter("changes_total", "Changes read from the log and handed to the node (which ignores those it already holds)."),
		refused: sub.CounterVec("changes_refused_total",
			"Log entries not handed on, by reason: malformed, or not signed by a trusted publisher key (unsigned, untrusted_key, bad_signature, digest_mismatch).",
			"reason"),
		revalid: sub.Counter("full_revalidations_total", "Times the log was trimmed past the cursor and snapshots could not cover the gap: everything held was revalidated."),
		panics:  sub.Counter("target_panics_total", "Panics recovered from the node while it applied log changes."),
		reg:     reg,
	}
	m.collectors = []prometheus.Collector{m.reads, m.changes, m.refused, m.revalid, m.panics}
	if err := metricset.Register(reg, "follow", "give each follower its own Registerer", m.collectors...); err != nil {
		return nil, err
	}
	return m, nil
}

// unregister removes the collectors, so a follower can be restarted on the
// same Registerer.
func (m *metrics) unregister() { metricset.Unregister(m.reg, m.collectors...) }
