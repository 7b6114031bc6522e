package gossip

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/metricset"
)

// metrics are a node's Prometheus collectors. With a nil Registerer they
// still count (so tests and Stats can read them) but are exported nowhere.
type metrics struct {
	sent      *prometheus.CounterVec // path
	received  *prometheus.CounterVec // path
	dropped   *prometheus.CounterVec // reason
	rejected  *prometheus.CounterVec // path
	applied   *prometheus.CounterVec // path
	lag       *prometheus.HistogramVec
	repairs   *prometheus.CounterVec // source
	panics    prometheus.Counter
	reconnect *prometheus.CounterVec // result
	retries   prometheus.Counter
	acks      prometheus.Counter
	unacked   prometheus.Counter
	members   *prometheus.GaugeVec   // state
	cps       *prometheus.CounterVec // event: checkpoint messages (checkpoint.go)
	refusals  *prometheus.CounterVec // reason: changes this node refused and reported

	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

const (
	metricNS  = "dataplane"
	metricSub = "gossip"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "messages_sent_total",
			Help: "Change messages sent, by path (push: direct to own region, relay: direct to another region's relays, gossip: broadcast queue).",
		}, []string{"path"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "messages_received_total",
			Help: "Valid change messages received (including duplicates), by path.",
		}, []string{"path"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "messages_dropped_total",
			Help: "Messages dropped or work shed, by reason: malformed bytes; a version too far ahead (future); not signed by a trusted publisher key (unsigned, untrusted_key, bad_signature, digest_mismatch); relays or acks that found the send queue full; gossip repair messages pruned from a full queue (gossip_queue_full); pushes sent without retries because QueueMax pushes awaited acknowledgement (push_retry_shed).",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "messages_rejected_total",
			Help: "Valid changes not applied because the node already held that version or a newer one (duplicates, reordering), by path.",
		}, []string{"path"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "changes_applied_total",
			Help: "Changes newer than what the node held, handed to the applier, by the path that delivered them first.",
		}, []string{"path"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "apply_lag_seconds",
			Help:    "Time from a change's version (publisher's clock) to its apply on this node, by path.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms .. 33 s
		}, []string{"path"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "antientropy_repairs_total",
			Help: "Changes gossip had missed, learned from a push/pull digest.",
		}, []string{"source"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "applier_panics_total",
			Help: "Panics recovered from the applier.",
		}),
		reconnect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "reconnects_total",
			Help: "Attempts to rejoin lost members or seeds, by result.",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "push_retries_total",
			Help: "Eager pushes and relays sent again because the target had not acknowledged them.",
		}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "push_acks_total",
			Help: "Acknowledgements received for this node's eager pushes and relays.",
		}),
		unacked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "push_unacked_total",
			Help: "Eager pushes and relays some target never acknowledged after every retry; each goes to gossip repair.",
		}),
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "members",
			Help: "Cluster members as this node sees them: alive (memberlist's live members, this node included; suspects count as alive, memberlist does not expose them) and dead (failed or left, not yet rejoined).",
		}, []string{"state"}),
		cps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "checkpoints_total",
			Help: "Checkpoint messages, by event: sent (each target of a push or relay), received (each handed to the node), relayed (forwarded on to a share of this region), not_relayed (a relay message not newer than the last forwarded for its namespace, or refused by the node), send_failed (the stream to a target failed), send_shed (the send queue was full).",
		}, []string{"event"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNS, Subsystem: metricSub, Name: "refusals_reported_total",
			Help: "Changes this node refused and reported (to the pusher, in answers to receipt queries and in its fleet report), by reason.",
		}, []string{"reason"}),
		reg: reg,
	}
	m.collectors = []prometheus.Collector{m.sent, m.received, m.dropped, m.rejected, m.applied, m.lag, m.repairs, m.panics, m.reconnect, m.retries, m.acks, m.unacked, m.members, m.cps, m.refusals}
	if err := metricset.Register(reg, "gossip", "give each node its own Registerer (or wrap it with a label)", m.collectors...); err != nil {
		return nil, err
	}
	return m, nil
}

// unregister removes the collectors, so a node can be restarted on the same
// Registerer.
func (m *metrics) unregister() { metricset.Unregister(m.reg, m.collectors...) }
