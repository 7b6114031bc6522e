// Package cache is the memory stale-while-revalidate cache in front of an
// origin, used by every node.
//
// A read inside a key's fresh window is answered from memory; inside the stale
// window it is answered from memory at once (marked stale) while one
// background refresh asks the origin; past both it waits for the origin. A key
// once cached is never dropped for age, only by the size bound, so while the
// origin is unreachable every cached key keeps being served, marked stale.
//
// Every write is ordered by record version: the cache never replaces a version
// with an older one, and a refill that started before an invalidation and
// brings back an older version than the invalidation named is not installed
// as fresh (the "stale set" race). Concurrent misses of one key make one
// origin read.
package cache

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"golang.org/x/sync/singleflight"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// Loader is what the cache reads through. origin.Store satisfies it.
//
// Get returns the record of ns/key (possibly a tombstone), an error wrapping
// origin.ErrNotFound for a never-written key, or, when ifNewer is non-zero and
// the origin holds nothing newer, an error wrapping origin.ErrNotModified. It
// must be safe for concurrent use and should honour ctx.
type Loader interface {
	Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error)
}

// LoaderFunc adapts a function to Loader.
type LoaderFunc func(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error)

// Get calls f.
func (f LoaderFunc) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	return f(ctx, ns, key, ifNewer)
}

var _ Loader = origin.Store(nil)

// Errors of this package; others come from the Loader, wrapped.
var (
	// ErrClosed is returned for a read that would need the origin after
	// Close. Cached values are still served.
	ErrClosed = errors.New("cache closed")
	// ErrLoaderPanic wraps a panic of the Loader, turned into an error.
	ErrLoaderPanic = errors.New("loader panicked")
)

// Cache is a bounded, versioned stale-while-revalidate cache in front of a
// Loader. All methods are safe for concurrent use.
type Cache struct {
	loader  Loader
	opts    Options
	now     func() int64 // Unix ns
	coarse  *coarseClock // the default clock, stopped by Close
	log     *slog.Logger
	store   *otter.Cache[key, *entry] // values and tombstones
	neg     *otter.Cache[key, *entry] // not-founds of partial namespaces
	floors  *floors                   // the version index of partial namespaces
	loads   chan struct{}             // a slot per origin read in flight (MaxLoads)
	spaces  spaces
	metrics *metrics
	flight  singleflight.Group

	// ctx bounds every origin read; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	bgMu      sync.Mutex // guards closed, refreshes and additions to bg
	closed    bool
	refreshes int            // background refreshes running, at most opts.MaxRefreshes
	bg        sync.WaitGroup // background refreshes
	once      sync.Once      // Close

	// pendingMu orders loads against invalidations. It guards pending and
	// is held around every store write that must see an invalidation
	// (installs, Apply, Invalidate), always taken before otter's own locks.
	pendingMu sync.Mutex
	// pending holds, for each key being loaded, the highest version an
	// Invalidate named during the load, so that the load cannot install an
	// older version as fresh even when the key was not held.
	pending map[key]record.Version
}

// New returns a cache reading through l. It fails on invalid options, naming
// the field, or when the metrics cannot be registered.
func New(l Loader, o Options) (*Cache, error) {
	if l == nil {
		return nil, errNilLoader
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o = o.withDefaults()
	o.Windows = maps.Clone(o.Windows) // the caller may reuse its map
	c := &Cache{
		loader:  l,
		opts:    o,
		log:     o.Logger.With("component", "cache"),
		pending: make(map[key]record.Version),
		loads:   make(chan struct{}, o.MaxLoads),
	}
	if o.Now != nil {
		c.now = func() int64 { return o.Now().UnixNano() }
	} else {
		// Reading the precise time costs more than the rest of a hit on
		// some machines (43 ns for time.Now on the 2-core CI VM); the
		// windows are seconds long, so a millisecond's precision will do.
		c.coarse = newCoarseClock(time.Millisecond)
		c.now = c.coarse.NowNano
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	store, err := otter.New(&otter.Options[key, *entry]{
		MaximumWeight: uint64(o.MaxBytes),
		Weigher:       weight,
		// Counting only: runs under otter's bucket lock and must not call
		// the cache.
		OnAtomicDeletion: func(ev otter.DeletionEvent[key, *entry]) {
			if ev.WasEvicted() {
				ev.Value.space.evictions.Inc()
			}
		},
		Logger: otterLogger{c.log},
	})
	if err != nil {
		c.stopClock()
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.store = store
	neg, err := otter.New(&otter.Options[key, *entry]{MaximumSize: o.MaxNegative})
	if err == nil {
		c.floors, err = newFloors(o.MaxFloors, int64(o.MaxOriginLag), c.now)
	}
	if err != nil {
		store.StopAllGoroutines()
		c.stopClock()
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.neg = neg
	c.metrics = newMetrics(
		func() float64 { return float64(store.EstimatedSize()) },
		func() float64 { return float64(store.WeightedSize()) },
		func() float64 { return float64(o.MaxBytes) },
		func() float64 {
			n := 0
			for _, ns := range o.Complete {
				n += c.IndexLen(ns)
			}
			return float64(n)
		},
	)
	c.spaces = spaces{opts: &c.opts, metrics: c.metrics, byName: make(map[string]*space)}
	for _, ns := range o.Complete {
		// Created first, so a complete namespace always has a space (and
		// an index) of its own, never the shared overflow one.
		c.spaces.get(ns).idx = newNSIndex()
	}
	if o.Registerer != nil {
		if err := c.metrics.register(o.Registerer); err != nil {
			c.stopStores()
			c.stopClock()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cache) isClosed() bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	return c.closed
}

// Peek returns what the cache holds for ns/key without loading, counting or
// touching the eviction policy; for debug endpoints. A not-found is held as a
// tombstone of version 0. It never blocks.
func (c *Cache) Peek(ns, k string) (Entry, bool) {
	e, ok := c.store.GetEntryQuietly(key{ns, k})
	if !ok {
		return Entry{}, false
	}
	now := c.now()
	ent, _ := e.Value.answer(now, e.Value.state(now))
	return ent, true
}

// All iterates over the held entries, tombstones and not-founds included,
// without loading or counting; for revalidating everything after the change
// log was truncated, and for debug endpoints. It never blocks on the origin.
// Entries changed during the iteration may be seen in either state.
func (c *Cache) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, e := range c.store.All() {
			now := c.now()
			ent, _ := e.answer(now, e.state(now))
			if !yield(ent) {
				return
			}
		}
	}
}

// Invalidate records that version v of ns/key exists: a held entry older than
// v is served no longer as fresh, and the next Get waits for the origin
// (falling back to the held value, marked stale, if the origin fails). A load
// in flight, or any later refill, that returns a version older than v is not
// served as fresh: v is kept in the version index whether or not the key is
// held. It reports whether anything was learned or marked, and never blocks
// on the origin.
func (c *Cache) Invalidate(ns, k string, v record.Version) bool {
	if record.ValidateKey(ns, k) != nil || v == 0 || c.refuseFuture(ns, k, v) {
		return false
	}
	kk := key{ns, k}
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	marked := c.learn(kk, c.spaces.get(ns), v, false)
	c.neg.Invalidate(kk) // a not-found older than v
	if floor, loading := c.pending[kk]; loading && v > floor {
		c.pending[kk] = v
		marked = true
	}
	var sp *space
	c.store.ComputeIfPresent(kk, func(cur *entry) (*entry, otter.ComputeOp) {
		sp = cur.space
		if v <= cur.version || v <= cur.floor {
			return cur, otter.CancelOp
		}
		n := cur.clone()
		n.floor = v
		n.setFailed(0, n.behind())
		marked = true
		return n.ready(), otter.WriteOp
	})
	if marked {
		if sp == nil {
			sp = c.spaces.get(ns)
		}
		sp.invalidations.Inc()
	}
	return marked
}

// Apply installs rec, which arrived by gossip or in a snapshot, if it is
// newer than the version held (or nothing is held), as fresh as of now. An
// older or equal version, or an invalid record, is ignored (the latter
// logged). It reports whether rec was installed, and never blocks on the
// origin. Callers that want to update only keys already held check Peek
// first.
func (c *Cache) Apply(rec record.Record) bool {
	return c.apply(rec, true)
}

// ApplyVerified is Apply for a record whose signature the caller has just
// checked with the same Verifier as Options.Verifier (the node's gossip
// layer does, before it hands a change on): it skips a second check. Any
// other caller uses Apply.
func (c *Cache) ApplyVerified(rec record.Record) bool { return c.apply(rec, false) }

// ApplyBatch applies recs as Apply does, one after the other in order, and
// returns how many were installed. With Options.Verifier set, it first
// verifies their signatures on every core at once (a warm-up of N records
// costs N signature checks: spread over GOMAXPROCS goroutines they take
// 1/GOMAXPROCS of the time), then applies the records that passed; the
// others are refused and counted as by Apply.
func (c *Cache) ApplyBatch(recs []record.Record) int {
	ok := c.verifyAll(recs)
	applied := 0
	for i, r := range recs {
		if ok != nil && !ok[i] {
			continue
		}
		if c.apply(r, ok == nil) {
			applied++
		}
	}
	return applied
}

// verifyAll checks the signatures of recs in parallel and reports which
// passed (refusals counted and logged); nil when there is no Verifier.
func (c *Cache) verifyAll(recs []record.Record) []bool {
	if c.opts.Verifier == nil {
		return nil
	}
	ok := make([]bool, len(recs))
	workers := min(runtime.GOMAXPROCS(0), (len(recs)+63)/64)
	if workers <= 1 {
		for i, r := range recs {
			ok[i] = c.refuseUnsigned(r) == nil
		}
		return ok
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				end := int(next.Add(64))
				start := end - 64
				if start >= len(recs) {
					return
				}
				for i := start; i < min(end, len(recs)); i++ {
					ok[i] = c.refuseUnsigned(recs[i]) == nil
				}
			}
		}()
	}
	wg.Wait()
	return ok
}

// apply is Apply; verify is false for records already verified and for the
// deletes Reload derives from a snapshot (no publisher signed those).
func (c *Cache) apply(rec record.Record, verify bool) bool {
	if err := rec.Validate(); err != nil {
		c.log.Warn("ignoring invalid record", "err", err)
		return false
	}
	if c.refuseFuture(rec.Namespace, rec.Key, rec.Version) {
		return false
	}
	if verify && c.refuseUnsigned(rec) != nil {
		return false
	}
	sp := c.spaces.get(rec.Namespace)
	k := key{rec.Namespace, rec.Key}
	if sp.idx == nil && !c.opts.ApplyAll && !c.holds(k) {
		// A partial namespace keeps values only of the keys it is asked
		// for: remember the version, so a later refill is checked against
		// it, but do not fill memory with keys nobody read here.
		c.pendingMu.Lock()
		learned := c.learn(k, sp, rec.Version, rec.Tombstone)
		c.neg.Invalidate(k)
		c.pendingMu.Unlock()
		return learned
	}
	n := newEntry(rec, sp, c.now())
	applied := c.install(k, n, false) == n
	if applied {
		sp.applys.Inc()
	}
	return applied
}

// refuseFuture reports, counts and logs a version too far ahead of this
// cache's clock (Options.MaxFutureSkew).
func (c *Cache) refuseFuture(ns, k string, v record.Version) bool {
	ahead := v.Time().UnixNano() - c.now()
	if ahead <= int64(c.opts.MaxFutureSkew) {
		return false
	}
	c.spaces.get(ns).future.Inc()
	c.log.Warn("refusing a version from the future", "namespace", ns, "key", k, "version", v, "ahead", time.Duration(ahead), "max_skew", c.opts.MaxFutureSkew)
	return true
}

// refuseUnsigned checks rec with Options.Verifier, if any, and counts and
// logs a refusal.
func (c *Cache) refuseUnsigned(rec record.Record) error {
	if c.opts.Verifier == nil {
		return nil
	}
	err := c.opts.Verifier.VerifyRecord(rec)
	if err != nil {
		c.metrics.sigRefused.WithLabelValues(sign.Reason(err)).Inc()
		c.log.Warn("refusing a record not signed by a trusted publisher key", "err", err)
	}
	return err
}

// holds reports whether k is held or loading.
func (c *Cache) holds(k key) bool {
	c.pendingMu.Lock()
	_, loading := c.pending[k]
	c.pendingMu.Unlock()
	return loading || c.peek(k) != nil
}

// Reload applies snapshot s as the whole truth of s.Namespace up to
// s.Version: every record in it (as Apply does), and, for every key the
// cache holds or indexes in that namespace that the snapshot lacks, a
// delete at s.Version (snapshots drop tombstones past a horizon, so a key
// absent from one was deleted, or never existed). It returns the changes
// that were news, in no particular order, and never reads the origin.
func (c *Cache) Reload(s record.Snapshot) []record.Change {
	var news []record.Change
	ok := c.verifyAll(s.Records)
	for i, r := range s.Records {
		if ok != nil && !ok[i] {
			continue
		}
		if r.Namespace == s.Namespace && c.apply(r, ok == nil) {
			news = append(news, r.Change())
		}
	}
	keys := make([]string, len(s.Records))
	for i, r := range s.Records {
		keys[i] = r.Key
	}
	if !slices.IsSorted(keys) {
		slices.Sort(keys)
	}
	absent := func(k string, v record.Version, tomb bool) bool {
		if tomb || v == 0 || v >= s.Version {
			return false
		}
		_, found := slices.BinarySearch(keys, k)
		return !found
	}
	var gone []string
	if sp := c.spaces.get(s.Namespace); sp.idx != nil {
		for ch := range sp.idx.all(s.Namespace) {
			if absent(ch.Key, ch.Version, ch.Tombstone) {
				gone = append(gone, ch.Key)
			}
		}
	} else {
		for e := range c.All() {
			if r := e.Record; r.Namespace == s.Namespace && absent(r.Key, r.Version, r.Tombstone) {
				gone = append(gone, r.Key)
			}
		}
	}
	for _, k := range gone {
		del := record.Record{Namespace: s.Namespace, Key: k, Version: s.Version, Tombstone: true}
		if c.apply(del, false) {
			news = append(news, del.Change())
		}
	}
	return news
}

// MarkComplete declares the index of complete namespace ns up to date
// (loaded from a snapshot and followed by the change log since): from now
// on a miss of a key it does not know is answered "not found" with no
// origin read. It reports false for a namespace not in Options.Complete.
func (c *Cache) MarkComplete(ns string) bool {
	sp := c.spaces.get(ns)
	if sp.idx == nil {
		return false
	}
	sp.idx.complete.Store(true)
	return true
}

// IsComplete reports whether ns is a complete namespace whose index is up to
// date (see MarkComplete).
func (c *Cache) IsComplete(ns string) bool {
	sp := c.spaces.get(ns)
	return sp.idx != nil && sp.idx.complete.Load()
}

// Known returns the newest version known of ns/key, held or not, and
// whether it is a tombstone (a version learned by Invalidate is not).
func (c *Cache) Known(ns, k string) (record.Change, bool) {
	kk := key{ns, k}
	v, tomb, ok := c.known(kk, c.spaces.get(ns))
	return record.Change{Namespace: ns, Key: k, Version: v, Tombstone: tomb}, ok
}

// Index iterates over every version known in complete namespace ns, values
// held or not; nothing for a partial namespace. Changes made during the
// iteration may or may not be seen.
func (c *Cache) Index(ns string) iter.Seq[record.Change] {
	sp := c.spaces.get(ns)
	if sp.idx == nil {
		return func(func(record.Change) bool) {}
	}
	return sp.idx.all(ns)
}

// IndexLen returns the number of keys in the version index of complete
// namespace ns (0 for a partial one).
func (c *Cache) IndexLen(ns string) int {
	if sp := c.spaces.get(ns); sp.idx != nil {
		return sp.idx.size()
	}
	return 0
}

// Usage reports the estimated bytes of values held and the bound
// (Options.MaxBytes). A node near its bound evicts values; their versions
// stay known (see IndexLen).
func (c *Cache) Usage() (bytes, maxBytes uint64) {
	return c.store.WeightedSize(), uint64(c.opts.MaxBytes)
}

// Close stops background refreshes and cancels origin reads in flight,
// waiting for the refreshes to end, and unregisters the metrics. Afterwards
// Get still serves what is held, and returns ErrClosed where it would need
// the origin. Close is idempotent.
func (c *Cache) Close() {
	c.once.Do(func() {
		c.bgMu.Lock()
		c.closed = true
		c.bgMu.Unlock()
		c.cancel()
		c.bg.Wait()
		c.stopStores()
		c.stopClock()
		if r := c.opts.Registerer; r != nil {
			for _, m := range c.metrics.collectors() {
				r.Unregister(m)
			}
		}
	})
}

func (c *Cache) stopStores() {
	c.store.StopAllGoroutines()
	c.neg.StopAllGoroutines()
	c.floors.table.StopAllGoroutines()
}

func (c *Cache) stopClock() {
	if c.coarse != nil {
		c.coarse.Stop()
	}
}

// otterLogger sends otter's warnings to slog.
type otterLogger struct{ log *slog.Logger }

func (l otterLogger) Warn(ctx context.Context, msg string, err error) {
	l.log.WarnContext(ctx, msg, "err", err)
}

func (l otterLogger) Error(ctx context.Context, msg string, err error) {
	l.log.ErrorContext(ctx, msg, "err", err)
}
