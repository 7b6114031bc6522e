package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// frozen is a lagging replica: it answers from a copy taken earlier,
// whatever has been written since.
type frozen struct {
	mu    sync.Mutex
	recs  map[key]record.Record
	calls atomic.Int64
}

func (f *frozen) put(r record.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recs == nil {
		f.recs = make(map[key]record.Record)
	}
	f.recs[key{r.Namespace, r.Key}] = r
}

func (f *frozen) Get(_ context.Context, ns, k string, ifNewer record.Version) (record.Record, error) {
	f.calls.Add(1)
	f.mu.Lock()
	r, ok := f.recs[key{ns, k}]
	f.mu.Unlock()
	switch {
	case !ok:
		return record.Record{}, origin.ErrNotFound
	case ifNewer != 0 && r.Version <= ifNewer:
		return record.Record{}, origin.ErrNotModified
	}
	return r, nil
}

// TestEvictedKeysNeverComeBackFromALaggingOrigin is the resurrection of
// issue 11: version 2 of thousands of keys (half of them deletes) is
// applied to a cache far too small to hold them, and a lagging origin
// still answers version 1. No read may return version 1 as fresh, and no
// deleted key may return a value, whether its namespace is complete or
// partial, its floor remembered or forgotten.
func TestEvictedKeysNeverComeBackFromALaggingOrigin(t *testing.T) {
	t.Parallel()
	const keys = 2000
	for _, tc := range []struct {
		name      string
		ns        string
		maxFloors int
	}{
		{"complete", "routes", 0},
		{"partial", "config", 0},
		{"partial with floors forgotten", "config", 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			replica := &frozen{}
			current := mem.New()
			var lagging atomic.Bool
			loader := LoaderFunc(func(ctx context.Context, ns, k string, ifNewer record.Version) (record.Record, error) {
				if lagging.Load() {
					return replica.Get(ctx, ns, k, ifNewer)
				}
				return current.Get(ctx, ns, k, ifNewer)
			})
			e := newEnv(t, current, loader, func(o *Options) {
				o.MaxBytes = 50 * 300 // about 50 entries
				o.MaxFloors = tc.maxFloors
			})
			v1, v2 := e.clock.version(1), e.clock.version(2)
			name := func(i int) string { return fmt.Sprintf("k%05d", i) }
			for i := range keys {
				r := e.publish(tc.ns, name(i), "one", v1)
				replica.put(r)
				// A node reads (partial) or is told (complete) of v1.
				if tc.ns == "routes" {
					e.c.Apply(r)
				} else if _, err := e.get(tc.ns, name(i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range keys {
				value := "two"
				if i%2 == 1 {
					value = "" // a delete
				}
				e.c.Apply(e.publish(tc.ns, name(i), value, v2))
			}
			e.c.MarkComplete(tc.ns)
			e.c.store.CleanUp()
			if n := e.c.store.EstimatedSize(); n >= keys/2 {
				t.Fatalf("%d entries held: the cache is not small enough to evict", n)
			}
			lagging.Store(true) // from now on the origin answers v1
			served, refused := 0, 0
			for i := range keys {
				ent, err := e.get(tc.ns, name(i))
				switch {
				case err == nil && i%2 == 1:
					t.Fatalf("%s (deleted at %s) served version %s", name(i), v2, ent.Record.Version)
				case err == nil && ent.Record.Version == v1 && !ent.Stale:
					t.Fatalf("%s served version 1 as fresh after version 2 was known", name(i))
				case err == nil && ent.Record.Version == v2:
					served++
				case err == nil:
					served++ // v1, marked stale: only when the floor was forgotten
					if tc.maxFloors == 0 {
						t.Fatalf("%s served version 1 (stale) though its floor was known", name(i))
					}
				case errors.Is(err, origin.ErrNotFound) && i%2 == 1:
				case errors.Is(err, origin.ErrUnavailable):
					refused++
				default:
					t.Fatalf("%s: %v", name(i), err)
				}
			}
			t.Logf("%s: %d served, %d refused while the origin lags", tc.name, served, refused)
			lagging.Store(false) // the replica caught up
			for i := 0; i < keys; i += 2 {
				// A value served stale below a forgotten floor is
				// refreshed in the background by the read.
				eventually(t, name(i)+" to serve version 2", func() bool {
					ent, err := e.get(tc.ns, name(i))
					if err == nil && ent.Record.Version == v1 && !ent.Stale {
						t.Fatalf("%s served version 1 as fresh", name(i))
					}
					return err == nil && ent.Record.Version == v2
				})
			}
		})
	}
}

// TestCompleteNamespaceMissesAreFree: once a complete namespace is marked
// complete, reads of 10,000 random keys it does not know make no origin
// read, and deletes are answered from the index.
func TestCompleteNamespaceMissesAreFree(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	v := e.clock.version(1)
	e.c.Apply(e.publish("routes", "known.example", "x", v))
	e.c.Apply(record.Record{Namespace: "routes", Key: "gone.example", Version: v, Tombstone: true})
	if !e.c.MarkComplete("routes") || e.c.MarkComplete("config") {
		t.Fatal("MarkComplete accepted a partial namespace or refused a complete one")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		k := fmt.Sprintf("%016x.example", rng.Uint64())
		if _, err := e.get("routes", k); !errors.Is(err, origin.ErrNotFound) {
			t.Fatalf("Get(routes/%s) = %v, want ErrNotFound", k, err)
		}
	}
	if _, err := e.get("routes", "gone.example"); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	e.mustGet("routes", "known.example", v, false)
	if n := l.calls.Load(); n != 0 {
		t.Fatalf("%d origin reads, want 0", n)
	}
}

// TestNotFoundsCannotPushOutValues: a flood of reads of made-up keys in a
// partial namespace fills only the bounded table of not-founds; the values
// held stay held.
func TestNotFoundsCannotPushOutValues(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, func(o *Options) {
		o.MaxBytes = 200 * 300
		o.MaxNegative = 100
	})
	v := e.clock.version(1)
	for i := range 100 {
		e.publish("config", fmt.Sprint("real", i), "x", v)
		e.mustGet("config", fmt.Sprint("real", i), v, false)
	}
	for i := range 10_000 {
		if _, err := e.get("config", fmt.Sprint("made-up", i)); !errors.Is(err, origin.ErrNotFound) {
			t.Fatal(err)
		}
	}
	e.c.store.CleanUp()
	e.c.neg.CleanUp()
	if n := e.c.neg.EstimatedSize(); n > 100 {
		t.Fatalf("%d not-founds held, bound is 100", n)
	}
	calls := l.calls.Load()
	for i := range 100 {
		e.mustGet("config", fmt.Sprint("real", i), v, false)
	}
	if n := l.calls.Load() - calls; n != 0 {
		t.Fatalf("%d values were pushed out by not-founds", n)
	}
}

// TestMaxLoadsBoundsOriginReads: 200 concurrent misses of distinct keys
// never have more than MaxLoads origin reads in flight.
func TestMaxLoadsBoundsOriginReads(t *testing.T) {
	t.Parallel()
	store := mem.New()
	var inFlight, peak atomic.Int64
	l := LoaderFunc(func(ctx context.Context, ns, k string, ifNewer record.Version) (record.Record, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		return store.Get(ctx, ns, k, ifNewer)
	})
	e := newEnv(t, store, l, func(o *Options) { o.MaxLoads = 4 })
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.get("config", fmt.Sprint("k", i)); !errors.Is(err, origin.ErrNotFound) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 4 || p == 0 {
		t.Fatalf("peak origin reads in flight = %d, want 1..4", p)
	}
}

// TestForgottenFloorsExpire: a floor folded into its stripe stops applying
// once it is older than MaxOriginLag, so partial keys do not stay stale for
// ever.
func TestForgottenFloorsExpire(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, store, func(o *Options) {
		o.MaxFloors = 1
		o.MaxOriginLag = time.Minute
	})
	v1 := e.clock.version(1)
	e.publish("config", "a", "x", v1)
	e.clock.Advance(time.Second)
	// Floors of keys in a's stripe, more than the table holds: some are
	// forgotten into the stripe.
	stripe := e.c.floors.stripe(key{"config", "a"})
	for i, n := 0, 0; n < 50; i++ {
		k := fmt.Sprint("other", i)
		if e.c.floors.stripe(key{"config", k}) != stripe {
			continue
		}
		e.c.Invalidate("config", k, e.clock.version(2))
		n++
	}
	e.c.floors.table.CleanUp()
	if e.c.floors.forgotten.Load() == 0 {
		t.Fatal("no floor was forgotten")
	}
	e.mustGet("config", "a", v1, true) // below a forgotten floor: stale
	e.clock.Advance(2 * time.Minute)
	e.c.store.Invalidate(key{"config", "a"})
	e.mustGet("config", "a", v1, false) // the forgotten floors are too old to matter
}

// TestFutureVersionsRefused: a version more than MaxFutureSkew ahead of the
// clock is refused from every entry point (Apply: gossip, snapshots, peers,
// local files; Invalidate: gossip, the log; a load: the origin), counted,
// and later legitimate versions of the key still apply.
func TestFutureVersionsRefused(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, store, nil)
	far := record.MakeVersion(e.clock.Now().Add(time.Hour), 0)
	near := record.MakeVersion(e.clock.Now().Add(2*time.Second), 0) // within the default 5 s
	evil := record.Record{Namespace: "routes", Key: "a.example", Value: []byte("evil"), Version: far}
	if e.c.Apply(evil) {
		t.Fatal("Apply accepted a version an hour ahead")
	}
	if e.c.Invalidate("routes", "a.example", far) {
		t.Fatal("Invalidate accepted a version an hour ahead")
	}
	if _, known := e.c.Known("routes", "a.example"); known {
		t.Fatal("a refused version reached the index")
	}
	if news := e.c.Reload(record.Snapshot{Namespace: "routes", Version: far, Records: []record.Record{evil}}); len(news) != 0 {
		t.Fatalf("Reload applied %v", news)
	}
	// The origin itself holds a far-future version: the load is refused.
	if err := store.CompareAndSwap(context.Background(), record.Record{Namespace: "config", Key: "x", Value: []byte("1"), Version: far}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.get("config", "x"); err == nil || !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("load of a future version: %v, want ErrInvalid", err)
	}
	got := testutilCounter(e, "routes") + testutilCounter(e, "config")
	if got < 4 {
		t.Fatalf("future_refused_total = %v, want at least 4", got)
	}
	ok := record.Record{Namespace: "routes", Key: "a.example", Value: []byte("good"), Version: near}
	if !e.c.Apply(ok) {
		t.Fatal("a version 2 s ahead (within MaxFutureSkew) was refused")
	}
	e.mustGet("routes", "a.example", near, false)
}

func testutilCounter(e *env, ns string) float64 {
	return testutil.ToFloat64(e.c.metrics.future.WithLabelValues(ns))
}

// TestGetCachedNeverReadsTheOrigin: GetCached answers what memory can (a
// value held, a stranger in a complete namespace) and reports, without an
// origin read, what it cannot (a partial namespace's unknown key, an
// expired value).
func TestGetCachedNeverReadsTheOrigin(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	v := e.clock.version(1)
	e.c.Apply(e.publish("routes", "a.example", "x", v))
	e.c.MarkComplete("routes")
	for _, tc := range []struct {
		ns, key  string
		ok       bool
		notFound bool
	}{
		{"routes", "a.example", true, false},
		{"routes", "stranger.example", true, true},
		{"config", "unknown", false, false},
	} {
		ent, err, ok := e.c.GetCached(tc.ns, tc.key)
		if ok != tc.ok || ok && errors.Is(err, origin.ErrNotFound) != tc.notFound || ok && !tc.notFound && ent.Record.Version != v {
			t.Errorf("GetCached(%s/%s) = %+v, %v, %v", tc.ns, tc.key, ent, err, ok)
		}
	}
	e.clock.Advance(2 * time.Minute) // past Fresh and Stale
	if _, _, ok := e.c.GetCached("routes", "a.example"); ok {
		t.Error("an expired value was answered from memory")
	}
	if n := l.calls.Load(); n != 0 {
		t.Fatalf("GetCached made %d origin reads", n)
	}
}
