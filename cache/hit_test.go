package cache

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestGetFreshAnswersOnlyFreshHits: GetFresh answers exactly the reads Get
// answers fresh from memory, with Get's answer, counting them as hits; every
// other read (stale, invalidated, not held, a not-found) it leaves to Get,
// counting nothing.
func TestGetFreshAnswersOnlyFreshHits(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, store, nil)
	v1 := e.clock.version(1)
	e.c.Apply(record.Record{Namespace: "routes", Key: "a.example", Value: []byte("one"), Version: v1})
	e.clock.Advance(2 * time.Second)

	h, ok := e.c.GetFresh("routes", "a.example")
	if !ok {
		t.Fatal("a fresh value held: GetFresh did not answer")
	}
	ent, err := e.get("routes", "a.example")
	if err != nil || h.Err() != nil {
		t.Fatalf("errors: Get %v, GetFresh %v", err, h.Err())
	}
	if got := h.Entry(); got.Record.Version != ent.Record.Version || string(got.Record.Value) != string(ent.Record.Value) || got.Stale || got.Age != ent.Age || got.Age != 2*time.Second {
		t.Fatalf("GetFresh = %+v, Get = %+v", got, ent)
	}
	if string(h.Value()) != "one" || h.Version() != v1 || h.Record().Key != "a.example" {
		t.Fatalf("hit parts: value %q version %s key %q", h.Value(), h.Version(), h.Record().Key)
	}
	if got := e.metric("hits", "routes"); got != 2 {
		t.Fatalf("hits = %v after GetFresh and Get, want 2", got)
	}

	// Not held, and a key the version index answers: left to Get.
	if _, ok := e.c.GetFresh("routes", "b.example"); ok {
		t.Fatal("GetFresh answered a key not held")
	}
	// Invalidated: a newer version is known, the held one is not fresh.
	e.c.Invalidate("routes", "a.example", e.clock.version(2))
	if _, ok := e.c.GetFresh("routes", "a.example"); ok {
		t.Fatal("GetFresh answered an invalidated value as fresh")
	}
	// Past the fresh window: stale, left to Get (which refreshes it).
	e.c.Apply(record.Record{Namespace: "routes", Key: "c.example", Value: []byte("c"), Version: e.clock.version(3)})
	e.clock.Advance(11 * time.Second)
	if _, ok := e.c.GetFresh("routes", "c.example"); ok {
		t.Fatal("GetFresh answered a stale value")
	}
	if got := e.metric("hits", "routes"); got != 2 {
		t.Fatalf("hits = %v, want 2: only fresh answers count", got)
	}
	if got := e.metric("stale_hits", "routes"); got != 0 {
		t.Fatalf("stale_hits = %v: GetFresh counted a read it did not answer", got)
	}

	// A tombstone held fresh: Get's not-found, from memory.
	e.c.Apply(record.Record{Namespace: "routes", Key: "d.example", Version: e.clock.version(4), Tombstone: true})
	h, ok = e.c.GetFresh("routes", "d.example")
	if !ok || !errors.Is(h.Err(), origin.ErrNotFound) || !h.Record().Tombstone {
		t.Fatalf("deleted key: ok %v err %v", ok, h.Err())
	}
	if _, err := e.get("routes", "d.example"); err == nil || err.Error() != h.Err().Error() {
		t.Fatalf("Get's error %v, GetFresh's %v", err, h.Err())
	}
}

// TestStripedCounterCountsEveryAdd: adds from many goroutines at once are
// all counted, and the family is exposed as a counter vector with the
// namespace label, as a CounterVec would be.
func TestStripedCounterCountsEveryAdd(t *testing.T) {
	t.Parallel()
	v := newStripedVec("test_total", "Adds.")
	a, b := v.with("a"), v.with("b")
	if v.with("a") != a {
		t.Fatal("with made a second counter for one label")
	}
	const goroutines, adds = 16, 10_000
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			c := a
			if i%4 == 0 {
				c = b
			}
			for range adds {
				c.Inc()
				if i%2 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	if got, want := a.value()+b.value(), uint64(goroutines*adds); got != want {
		t.Fatalf("counted %d adds, want %d", got, want)
	}
	if got, want := b.value(), uint64(goroutines/4*adds); got != want {
		t.Fatalf("b counted %d, want %d", got, want)
	}
	want := `# HELP dataplane_cache_test_total Adds.
# TYPE dataplane_cache_test_total counter
dataplane_cache_test_total{namespace="a"} 120000
dataplane_cache_test_total{namespace="b"} 40000
`
	if err := testutil.CollectAndCompare(v, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestHitMetricsExposed: a registry gathers the hit counters under their
// names, per namespace.
func TestHitMetricsExposed(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, store, nil)
	e.c.Apply(record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: e.clock.version(1)})
	for range 3 {
		if _, err := e.get("keys", "k"); err != nil {
			t.Fatal(err)
		}
	}
	n, err := testutil.GatherAndCount(e.reg, "dataplane_cache_hits_total", "dataplane_cache_stale_hits_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("%d series, want 4 (hits and stale hits of routes and keys, both made at New)", n)
	}
	if got := e.metric("hits", "keys"); got != 3 {
		t.Fatalf("hits = %v, want 3", got)
	}
}

// TestHitLine: an entry stored as a fresh value, by Apply or by a load, is
// taken for fresh by its first cache line (hitUntil) until its fresh window
// ends; one invalidated, one whose load failed, a tombstone and a
// not-found never are, so that the hit path sends them the whole way.
func TestHitLine(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &failing{next: store}
	e := newEnv(t, store, l, nil)
	held := func(ns, k string) *entry {
		t.Helper()
		h := e.c.peek(key{ns, k})
		if h == nil {
			t.Fatalf("%s/%s not held", ns, k)
		}
		return h
	}
	v1 := e.clock.version(1)
	e.c.Apply(record.Record{Namespace: "routes", Key: "a", Value: []byte("a"), Version: v1})
	if h := held("routes", "a"); h.hitUntil != h.freshUntil || h.hitUntil == noHit {
		t.Fatalf("applied value: hitUntil %d, freshUntil %d", h.hitUntil, h.freshUntil)
	}
	e.publish("config", "b", "b", e.clock.version(2))
	if _, err := e.get("config", "b"); err != nil {
		t.Fatal(err)
	}
	if h := held("config", "b"); h.hitUntil != h.freshUntil {
		t.Fatalf("loaded value: hitUntil %d, freshUntil %d", h.hitUntil, h.freshUntil)
	}

	e.c.Invalidate("routes", "a", e.clock.version(3))
	if h := held("routes", "a"); h.hitUntil != noHit {
		t.Fatalf("invalidated value: hitUntil %d, want noHit", h.hitUntil)
	}
	if ent, err := e.get("config", "b"); err != nil || ent.Stale {
		t.Fatalf("config/b: %+v, %v", ent, err)
	}

	// Past its fresh window with the origin down: the failed load marks it.
	l.down.Store(true)
	e.clock.Advance(11 * time.Second)
	if ent, err := e.get("config", "b"); err != nil || !ent.Stale {
		t.Fatalf("config/b stale with the origin down: %+v, %v", ent, err)
	}
	eventually(t, "the failed refresh of config/b", func() bool { return held("config", "b").failed() != 0 })
	if h := held("config", "b"); h.hitUntil != noHit {
		t.Fatalf("failed load: hitUntil %d, want noHit", h.hitUntil)
	}
	l.down.Store(false)

	e.c.Apply(record.Record{Namespace: "routes", Key: "c", Version: e.clock.version(4), Tombstone: true})
	if h := held("routes", "c"); h.hitUntil != noHit {
		t.Fatalf("tombstone: hitUntil %d, want noHit", h.hitUntil)
	}
	if _, err := e.get("config", "nothing"); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("config/nothing: %v", err)
	}
	if h := held("config", "nothing"); h.hitUntil != noHit {
		t.Fatalf("not-found: hitUntil %d, want noHit", h.hitUntil)
	}
}

// TestEntryIsOnePairOfCacheLines pins the entry at 128 bytes, a size class
// whose objects are 128-byte aligned, with the fields a fresh hit of a
// value reads in its first 64 bytes, so that such a hit reads one cache line
// of it (see entry). A field added to entry belongs in entryCold unless
// every read needs it.
func TestEntryIsOnePairOfCacheLines(t *testing.T) {
	var e entry
	if got := unsafe.Sizeof(e); got != 2*64 {
		t.Fatalf("entry is %d bytes, want 128", got)
	}
	// What a fresh hit of a value reads, in the first line.
	for name, end := range map[string]uintptr{
		"hitUntil": unsafe.Offsetof(e.hitUntil) + unsafe.Sizeof(e.hitUntil),
		"space":    unsafe.Offsetof(e.space) + unsafe.Sizeof(e.space),
		"checked":  unsafe.Offsetof(e.checked) + unsafe.Sizeof(e.checked),
		"value":    unsafe.Offsetof(e.value) + unsafe.Sizeof(e.value),
		"version":  unsafe.Offsetof(e.version) + unsafe.Sizeof(e.version),
		"seal":     unsafe.Offsetof(e.seal) + unsafe.Sizeof(e.seal),
	} {
		if end > 64 {
			t.Errorf("entry.%s ends at byte %d, past the first cache line", name, end)
		}
	}
}
