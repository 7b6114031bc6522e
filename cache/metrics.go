package cache

import (
	"fmt"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

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

// cacheLine is the size, in bytes, a counter cell is padded to: two 64-byte
// lines, since the adjacent-line prefetcher of x86 cores moves lines in
// pairs.
const cacheLine = 128

// counterCells returns how many cells a stripedCounter spreads its adds
// over: four per processor the scheduler runs goroutines on, so that the
// goroutines running at one time rarely share one, rounded up to a power of
// two and at most 64.
func counterCells() int {
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 64 {
		n *= 2
	}
	return n
}

// stripedCounter is a counter for the hit path. An atomic add on one cache
// line that every core writes makes the cores take turns owning that line
// (measured: 14-17% of a hit on 2 cores); here each add goes to one of
// several cells on lines of their own, chosen by the calling goroutine's
// stack address as otter's read buffer chooses its stripe: a goroutine
// keeps adding to one cell, goroutines running at one time mostly add to
// different ones. Reading sums the cells. A copy shares the cells: a space
// holds its counters by value, so that a hit follows one pointer less.
//
// Inc indexes the cells from base, the address of the first, unchecked
// (the mask keeps the index in range): one load and one branch less than
// indexing the slice, a hit being counted on every read.
type stripedCounter struct {
	base  unsafe.Pointer // &cells[0]
	mask  uintptr        // len(cells) - 1, len(cells) a power of two
	cells []counterCell
}

type counterCell struct {
	n atomic.Uint64
	_ [cacheLine - 8]byte
}

func newStripedCounter(cells int) *stripedCounter {
	cs := make([]counterCell, cells)
	return &stripedCounter{base: unsafe.Pointer(&cs[0]), mask: uintptr(cells - 1), cells: cs}
}

// Inc adds one.
func (s *stripedCounter) Inc() {
	var x byte
	// The bits below 2 KiB (the smallest goroutine stack) follow the call
	// depth rather than the goroutine; the multiply mixes the upper bits,
	// where neighbouring stacks differ, into the top bits taken.
	h := (uint64(uintptr(unsafe.Pointer(&x))>>11) * 0x9e3779b97f4a7c15) >> 40
	(*counterCell)(unsafe.Add(s.base, (uintptr(h)&s.mask)*unsafe.Sizeof(counterCell{}))).n.Add(1)
}

// value returns the sum of the cells: every add that happened before the
// call, some of those during it.
func (s *stripedCounter) value() uint64 {
	var v uint64
	for i := range s.cells {
		v += s.cells[i].n.Load()
	}
	return v
}

// stripedVec is a counter family with one label, namespace, whose children
// are stripedCounters: a Prometheus collector exposing exactly what a
// CounterVec with that label would.
type stripedVec struct {
	desc  *prometheus.Desc
	cells int

	mu       sync.Mutex // guards children
	children map[string]*stripedCounter
}

var _ prometheus.Collector = (*stripedVec)(nil)

func newStripedVec(name, help string) *stripedVec {
	return &stripedVec{
		desc:     prometheus.NewDesc(prometheus.BuildFQName("dataplane", "cache", name), help, []string{"namespace"}, nil),
		cells:    counterCells(),
		children: make(map[string]*stripedCounter),
	}
}

// with returns the counter of namespace label ns, created at zero.
func (v *stripedVec) with(ns string) *stripedCounter {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.children[ns]
	if c == nil {
		c = newStripedCounter(v.cells)
		v.children[ns] = c
	}
	return c
}

// Describe implements prometheus.Collector.
func (v *stripedVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *stripedVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	children := maps.Clone(v.children)
	v.mu.Unlock()
	for ns, c := range children {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, float64(c.value()), ns)
	}
}
