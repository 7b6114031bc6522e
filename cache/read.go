package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// The read path: Get and its variants, from the fresh hit (answered from
// the store alone) through the answers memory can give without the origin
// (stale values, not-founds held, misses the version index answers) to the
// wait for one shared origin read (load.go); and the namespaces a read
// resolves, with their windows and counters.

// Get returns the value of ns/key. It blocks only when the key is not held,
// is past its stale window, or has been invalidated; then it waits for one
// origin read shared with every concurrent reader of the key, bounded by ctx
// and RefreshTimeout. If that read fails and a value is held, the held value
// is returned marked stale and the error is only logged and counted.
//
// A deleted key (tombstone) and a key the origin does not have are both
// returned as an error wrapping origin.ErrNotFound; the Entry then describes
// the cached answer (a tombstone record, its staleness and age). Other errors
// mean the origin failed and nothing was held.
func (c *Cache) Get(ctx context.Context, ns, k string) (Entry, error) {
	return c.get(ctx, ns, k, false)
}

// GetRevalidated is Get for a caller that must not take a value past its
// fresh window for a current one: such a value is not served at once but
// read again from the origin first (one read shared with every concurrent
// reader of the key, as on a miss). Only if that read fails is the held
// value returned, marked stale. A cache node answers a client asking with
// "Cache-Control: max-age=0" this way, so that a sentinel never restarts
// its own fresh window from the node's stale copy.
func (c *Cache) GetRevalidated(ctx context.Context, ns, k string) (Entry, error) {
	return c.get(ctx, ns, k, true)
}

func (c *Cache) get(ctx context.Context, ns, k string, revalidate bool) (ent Entry, err error) {
	kk := key{ns, k}
	var now int64 // c.hitNow(), inlined by hand
	if c.coarse != nil {
		now = c.coarse.NowNano()
	} else {
		now = c.now()
	}
	held, ok := c.store.GetIfPresent(kk)
	if ok && now < held.hitUntil {
		// A fresh value, from the entry's first cache line (see entry):
		// held.answer(now, fresh), written into the results in place, a
		// field at a time (a record built whole is built on the stack and
		// copied, which costs a hit more than the line saves); ns and k
		// equal the record's.
		ent.Record.Namespace = ns
		ent.Record.Key = k
		ent.Record.Value = held.value
		ent.Record.Version = held.version
		ent.Record.Seal = held.seal
		ent.Age = time.Duration(now - held.checked)
		held.space.hits.Inc()
		return ent, nil
	}
	if ok && held.fresh(now) {
		// A fresh tombstone or not-found.
		held.space.hits.Inc()
		ent, err = held.answer(now, fresh)
		return ent, err
	}
	ent, err, held, done := c.fromMemory(kk, held, ok, now, revalidate)
	if done {
		return ent, err
	}
	return c.getSlow(ctx, kk, held)
}

// GetCached answers a read of ns/key as Get does, but only when that needs
// no waiting for the origin: a value held and not expired (a stale one
// starts its background refresh, as Get does), a not-found held, or a miss
// the version index answers (a key known deleted, or one a complete
// namespace does not have). ok false means Get would wait for an origin
// read. A stranger's random key in a complete namespace is answered here;
// one in a partial namespace is not. It never blocks.
func (c *Cache) GetCached(ns, k string) (ent Entry, err error, ok bool) {
	kk := key{ns, k}
	now := c.hitNow()
	held, found := c.store.GetIfPresent(kk)
	if found && held.fresh(now) {
		held.space.hits.Inc()
		ent, err = held.answer(now, fresh)
		return ent, err, true
	}
	ent, err, _, ok = c.fromMemory(kk, held, found, now, false)
	return ent, err, ok
}

// fromMemory is the part of a read that needs no origin read, given what
// the store holds for kk at now (held, if ok); done false means the read
// must wait for one, and held is what it may fall back to. Get and
// GetCached answer a fresh hit themselves before calling it.
func (c *Cache) fromMemory(kk key, held *entry, ok bool, now int64, revalidate bool) (ent Entry, err error, _ *entry, done bool) {
	if !ok {
		if ent, err, done := c.missFromMemory(kk); done {
			return ent, err, nil, true
		}
		held, ok = c.neg.GetIfPresent(kk)
	}
	if ok {
		switch st := held.state(now); st {
		case fresh:
			held.space.hits.Inc()
			ent, err = held.answer(now, st)
			return ent, err, held, true
		case stale:
			if revalidate {
				break // to the shared origin read
			}
			c.refreshAsync(kk, held)
			fallthrough
		case backoff:
			held.space.staleHits.Inc()
			ent, err = held.answer(now, st)
			return ent, err, held, true
		}
	}
	return Entry{}, nil, held, false
}

// missFromMemory answers a read of k, whose value is not held, from the
// version index when it can: a key known deleted, or one a complete
// namespace does not know, is not found. done reports whether it answered.
func (c *Cache) missFromMemory(k key) (ent Entry, err error, done bool) {
	if err := record.ValidateKey(k.ns, k.key); err != nil {
		return Entry{}, fmt.Errorf("cache: %w", err), true
	}
	sp := c.spaces.get(k.ns)
	v, tomb, known := c.known(k, sp)
	switch {
	case known && tomb:
		err = fmt.Errorf("%s/%s: deleted at version %s: %w", k.ns, k.key, v, origin.ErrNotFound)
	case !known && sp.idx != nil && sp.idx.complete.Load():
		v, err = 0, fmt.Errorf("%s/%s: %w", k.ns, k.key, origin.ErrNotFound)
	default:
		return Entry{}, nil, false
	}
	sp.indexAnswers.Inc()
	return Entry{Record: record.Record{Namespace: k.ns, Key: k.key, Version: v, Tombstone: true}}, err, true
}

// Hit is a read answered fresh from memory by GetFresh. It points at the
// held entry, which never changes once stored, so a hit copies nothing
// until its parts are asked for, and its parts describe the answer as of
// the read however the key changes later.
type Hit struct {
	e   *entry
	now int64
	// value is set for a value (not a tombstone or a not-found), so that
	// Err needs only the entry's first cache line.
	value bool
}

// Record returns the record served: for a deleted key its tombstone, for a
// key the origin does not have a tombstone of version 0. Its Value is
// shared by every reader and must not be modified.
func (h Hit) Record() record.Record { return h.e.record() }

// Value returns the record's value, shared by every reader: it must not be
// modified.
func (h Hit) Value() []byte { return h.e.value }

// Version returns the record's version.
func (h Hit) Version() record.Version { return h.e.version }

// Age is the time since the origin (or Apply) last confirmed the value.
func (h Hit) Age() time.Duration { return time.Duration(h.now - h.e.checked) }

// Err is what Get returns with this answer: nil, or for a deleted key and a
// key the origin does not have an error wrapping origin.ErrNotFound.
func (h Hit) Err() error {
	if h.value {
		return nil
	}
	if nf := h.e.notFound(); nf != nil {
		return nf
	}
	return nil
}

// Entry returns the hit as Get returns it (Stale is false).
func (h Hit) Entry() Entry {
	return Entry{Record: h.e.record(), Age: h.Age()}
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
	if ok && now < e.hitUntil {
		e.space.hits.Inc()
		return Hit{e, now, true}, true
	}
	if !ok || !e.fresh(now) {
		return Hit{}, false
	}
	e.space.hits.Inc()
	return Hit{e, now, e.notFound() == nil}, true
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
	return now < e.freshUntil && e.floor <= e.version
}

// getSlow waits for a load of k, or for ctx, and answers with its result.
func (c *Cache) getSlow(ctx context.Context, k key, held *entry) (Entry, error) {
	sp := c.spaces.get(k.ns)
	if c.isClosed() {
		return c.fallback(k, held, sp, ErrClosed)
	}
	ch := c.flight.DoChan(k.flightKey(), func() (any, error) { return c.load(k, sp) })
	select {
	case r := <-ch:
		if r.Err != nil {
			sp.misses.Inc()
			return Entry{}, r.Err
		}
		e := r.Val.(*entry)
		now := c.now()
		st := e.state(now)
		if st == fresh {
			sp.misses.Inc()
		} else {
			sp.staleHits.Inc()
		}
		return e.answer(now, st)
	case <-ctx.Done():
		return c.fallback(k, held, sp, ctx.Err())
	}
}

// fallback serves what is held, marked stale, when no answer can be had;
// with nothing held it returns err.
func (c *Cache) fallback(k key, held *entry, sp *space, err error) (Entry, error) {
	if cur := c.peek(k); cur != nil {
		held = cur // never older than what the caller saw, maybe newer
	}
	if held == nil {
		sp.misses.Inc()
		return Entry{}, fmt.Errorf("cache: get %s/%s: %w", k.ns, k.key, err)
	}
	now := c.now()
	st := held.state(now)
	if st == fresh {
		sp.hits.Inc()
	} else {
		sp.staleHits.Inc()
	}
	return held.answer(now, st)
}

// refreshAsync starts a background refresh of k unless one of held already
// runs, the cache is closed, or MaxRefreshes are running (then the refresh
// is shed and counted; a later read tries again).
func (c *Cache) refreshAsync(k key, held *entry) {
	if !held.refreshing.CompareAndSwap(false, true) {
		return
	}
	c.bgMu.Lock()
	if c.closed || c.refreshes >= c.opts.MaxRefreshes {
		shed := !c.closed
		c.bgMu.Unlock()
		held.refreshing.Store(false)
		if shed {
			held.space.refreshesShed.Inc()
		}
		return
	}
	c.refreshes++
	c.bg.Add(1)
	c.bgMu.Unlock()
	go func() {
		defer c.bg.Done()
		defer func() {
			c.bgMu.Lock()
			c.refreshes--
			c.bgMu.Unlock()
		}()
		defer held.refreshing.Store(false)
		sp := held.space
		// Do, not DoChan: load never panics (it recovers the Loader), and
		// the result is in the store when Do returns.
		_, _, _ = c.flight.Do(k.flightKey(), func() (any, error) { return c.load(k, sp) })
	}()
}

// space is what the cache knows about one namespace: its windows and its
// counters, resolved once so that the hit path does no label lookup. Entries
// point to their space.
type space struct {
	fresh, stale, negative int64 // nanoseconds

	hits, staleHits           stripedCounter // share their cells with the family's child
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
		hits:          *m.hits.with(label),
		staleHits:     *m.staleHits.with(label),
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
