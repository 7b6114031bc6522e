package cache

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus collectors. Every counter has a
// "namespace" label.
type metrics struct {
	hits, staleHits                  *stripedVec // counted on the hit path
	misses                           *prometheus.CounterVec
	originReads, originErrors        *prometheus.CounterVec
	revalidations                    *prometheus.CounterVec
	evictions, invalidations, applys *prometheus.CounterVec
	refreshesShed                    *prometheus.CounterVec
	indexAnswers, behind             *prometheus.CounterVec
	future                           *prometheus.CounterVec
	sigRefused                       *prometheus.CounterVec // reason
	entries                          prometheus.GaugeFunc
	bytes, maxBytes, indexed         prometheus.GaugeFunc
}

func newMetrics(entries, bytes, maxBytes, indexed func() float64) *metrics {
	gauge := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dataplane", Subsystem: "cache", Name: name, Help: help,
		}, f)
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "cache", Name: name, Help: help,
		}, []string{"namespace"})
	}
	return &metrics{
		hits:          newStripedVec("hits_total", "Reads answered fresh from memory without waiting."),
		staleHits:     newStripedVec("stale_hits_total", "Reads answered with a stale value: at once while refreshing, or after the origin failed."),
		misses:        counter("misses_total", "Reads that waited for the origin and got its answer (or its error)."),
		originReads:   counter("origin_reads_total", "Calls of the loader (origin reads)."),
		originErrors:  counter("origin_errors_total", "Origin reads that failed (not counting not-found and not-modified)."),
		revalidations: counter("revalidations_total", "Origin reads answered not-modified: the held version is still current."),
		evictions:     counter("evictions_total", "Entries dropped by the size bound."),
		invalidations: counter("invalidations_total", "Invalidations that marked a held or loading entry stale."),
		applys:        counter("applied_total", "Records installed by Apply (gossip, snapshots)."),
		refreshesShed: counter("refreshes_shed_total", "Background refreshes not started because Options.MaxRefreshes were already running; the stale value was served and a later read retries."),
		indexAnswers:  counter("index_answers_total", "Misses of complete namespaces (or of keys known deleted) answered not-found from the version index, with no origin read."),
		future:        counter("future_refused_total", "Versions refused because their time was more than Options.MaxFutureSkew ahead of this node's clock (a forged change or a publisher whose clock runs ahead)."),
		sigRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "cache", Name: "signature_refused_total",
			Help: "Records refused because Options.Verifier did not accept their signature, by reason (unsigned, untrusted_key, bad_signature, digest_mismatch).",
		}, []string{"reason"}),
		behind: counter("origin_behind_total", "Origin answers older than a version the node knows, not served (a lagging replica or cache node)."),
		entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dataplane", Subsystem: "cache", Name: "entries",
			Help: "Entries held, estimated.",
		}, entries),
		bytes:    gauge("bytes", "Estimated bytes of the values held (the size bound counts these).", bytes),
		maxBytes: gauge("max_bytes", "The size bound (Options.MaxBytes): near it, values are evicted (their versions stay known).", maxBytes),
		indexed:  gauge("index_keys", "Keys in the version index of complete namespaces, values held or not.", indexed),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.hits, m.staleHits, m.misses, m.originReads, m.originErrors,
		m.revalidations, m.evictions, m.invalidations, m.applys, m.refreshesShed,
		m.indexAnswers, m.behind, m.future, m.sigRefused, m.entries, m.bytes, m.maxBytes, m.indexed,
	}
}

// register registers every collector on r, undoing the work on failure.
func (m *metrics) register(r prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			return fmt.Errorf("cache: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}

// space is what the cache knows about one namespace: its windows and its
// counters, resolved once so that the hit path does no label lookup. Entries
// point to their space.
type space struct {
	fresh, stale, negative int64 // nanoseconds

	hits, staleHits           *stripedCounter
	misses                    prometheus.Counter
	originReads, originErrors prometheus.Counter
	revalidations             prometheus.Counter
	evictions, invalidations  prometheus.Counter
	applys                    prometheus.Counter
	refreshesShed             prometheus.Counter
	indexAnswers, behind      prometheus.Counter
	future                    prometheus.Counter

	// idx is the version index of a complete namespace; nil for partial
	// namespaces, whose versions live in Cache.floors.
	idx *nsIndex
}

// maxSpaces bounds the distinct namespaces tracked with their own label;
// further unconfigured namespaces share otherSpace, so a flood of made-up
// namespaces cannot grow the metrics or this table without limit.
const maxSpaces = 64

// otherSpace is the label of namespaces beyond maxSpaces.
const otherSpace = "_other"

// spaces resolves namespaces to their space.
type spaces struct {
	opts    *Options
	metrics *metrics

	mu     sync.RWMutex // guards byName
	byName map[string]*space
}

func (s *spaces) get(ns string) *space {
	s.mu.RLock()
	sp := s.byName[ns]
	s.mu.RUnlock()
	if sp != nil {
		return sp
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp = s.byName[ns]; sp != nil {
		return sp
	}
	label := ns
	w, configured := s.opts.Windows[ns]
	if !configured {
		w = s.opts.Default
		if len(s.byName) >= maxSpaces {
			if sp = s.byName[otherSpace]; sp == nil {
				sp = s.newSpace(otherSpace, w)
				s.byName[otherSpace] = sp
			}
			return sp
		}
	}
	sp = s.newSpace(label, w)
	s.byName[ns] = sp
	return sp
}

func (s *spaces) newSpace(label string, w Window) *space {
	m := s.metrics
	return &space{
		fresh:         int64(w.Fresh),
		stale:         int64(w.Stale),
		negative:      int64(s.opts.NegativeTTL),
		hits:          m.hits.with(label),
		staleHits:     m.staleHits.with(label),
		misses:        m.misses.WithLabelValues(label),
		originReads:   m.originReads.WithLabelValues(label),
		originErrors:  m.originErrors.WithLabelValues(label),
		revalidations: m.revalidations.WithLabelValues(label),
		evictions:     m.evictions.WithLabelValues(label),
		invalidations: m.invalidations.WithLabelValues(label),
		applys:        m.applys.WithLabelValues(label),
		refreshesShed: m.refreshesShed.WithLabelValues(label),
		indexAnswers:  m.indexAnswers.WithLabelValues(label),
		behind:        m.behind.WithLabelValues(label),
		future:        m.future.WithLabelValues(label),
	}
}

// window returns the fresh and stale durations that apply to e: not-founds
// use NegativeTTL and no stale window.
func (sp *space) window(negative bool) (fresh, stale int64) {
	if negative {
		return sp.negative, 0
	}
	return sp.fresh, sp.stale
}
