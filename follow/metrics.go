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
	const ns, sub = "dataplane", "follow"
	m := &metrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "log_reads_total",
			Help: "Reads of the origin change log, by trigger (start, interval, rejoin, digest, rewind, recover) and result (ok, error, truncated).",
		}, []string{"trigger", "result"}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "changes_total",
			Help: "Changes read from the log and handed to the node (which ignores those it already holds).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "changes_refused_total",
			Help: "Log entries not handed on, by reason: malformed, or not signed by a trusted publisher key (unsigned, untrusted_key, bad_signature, digest_mismatch).",
		}, []string{"reason"}),
		revalid: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "full_revalidations_total",
			Help: "Times the log was trimmed past the cursor and snapshots could not cover the gap: everything held was revalidated.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "target_panics_total",
			Help: "Panics recovered from the node while it applied log changes.",
		}),
		reg: reg,
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
