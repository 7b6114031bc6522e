package cache

import (
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/record"
)

// Hit is a read answered fresh from memory by GetFresh. It points at the
// held entry, which never changes once stored, so a hit copies nothing
// until its parts are asked for, and its parts describe the answer as of
// the read however the key changes later.
type Hit struct {
	e   *entry
	now int64
}

// Record returns the record served: for a deleted key its tombstone, for a
// key the origin does not have a tombstone of version 0. Its Value is
// shared by every reader and must not be modified.
func (h Hit) Record() record.Record { return h.e.rec }

// Value returns the record's value, shared by every reader: it must not be
// modified.
func (h Hit) Value() []byte { return h.e.rec.Value }

// Version returns the record's version.
func (h Hit) Version() record.Version { return h.e.rec.Version }

// Age is the time since the origin (or Apply) last confirmed the value.
func (h Hit) Age() time.Duration { return time.Duration(h.now - h.e.checked) }

// Err is what Get returns with this answer: nil, or for a deleted key and a
// key the origin does not have an error wrapping origin.ErrNotFound.
func (h Hit) Err() error {
	if nf := h.e.notFound(); nf != nil {
		return nf
	}
	return nil
}

// Entry returns the hit as Get returns it (Stale is false).
func (h Hit) Entry() Entry {
	return Entry{Record: h.e.rec, Age: h.Age()}
}

// GetFresh answers a read of ns/key only when the key is held and fresh:
// then it counts a hit and returns what Get would, without building it.
// ok false means the read is anything else (stale, expired, not held,
// answered by the version index or a not-found held): call Get, which
// answers and counts it. It never blocks and never allocates.
//
// Entries that are held but not fresh are looked up twice that way (here
// and by Get); otter's record of reads is lossy by design, so the second
// read of one key changes its eviction policy no more than its own drops do.
func (c *Cache) GetFresh(ns, k string) (h Hit, ok bool) {
	var now int64 // c.hitNow(), inlined by hand
	if c.coarse != nil {
		now = c.coarse.NowNano()
	} else {
		now = c.now()
	}
	e, ok := c.store.GetIfPresent(key{ns, k})
	if !ok || !e.fresh(now) {
		return Hit{}, false
	}
	e.space.hits.Inc()
	return Hit{e, now}, true
}

// hitNow is c.now() for the hit path: the default clock read directly
// rather than through a function value. Callers inline it by hand where
// every instruction counts (Get, GetFresh).
func (c *Cache) hitNow() int64 {
	if c.coarse != nil {
		return c.coarse.NowNano()
	}
	return c.now()
}

// fresh reports whether e is served as fresh at now: state(now) == fresh,
// small enough to be inlined into the hit path.
func (e *entry) fresh(now int64) bool {
	return now < e.freshUntil && e.floor <= e.rec.Version
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
// different ones. Reading sums the cells.
type stripedCounter struct {
	cells []counterCell
	mask  uintptr
}

type counterCell struct {
	n atomic.Uint64
	_ [cacheLine - 8]byte
}

func newStripedCounter(cells int) *stripedCounter {
	return &stripedCounter{cells: make([]counterCell, cells), mask: uintptr(cells - 1)}
}

// Inc adds one.
func (s *stripedCounter) Inc() {
	var x byte
	// The bits below 2 KiB (the smallest goroutine stack) follow the call
	// depth rather than the goroutine; the multiply mixes the upper bits,
	// where neighbouring stacks differ, into the top bits taken.
	h := (uint64(uintptr(unsafe.Pointer(&x))>>11) * 0x9e3779b97f4a7c15) >> 40
	s.cells[uintptr(h)&s.mask].n.Add(1)
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
