package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

func TestFreshHitDoesNotLoad(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	v := e.clock.version(1)
	e.publish("routes", "a.example", "one", v)

	e.mustGet("routes", "a.example", v, false)
	for range 10 {
		e.clock.Advance(900 * time.Millisecond) // 9 s in all: inside Fresh
		ent := e.mustGet("routes", "a.example", v, false)
		if string(ent.Record.Value) != "one" {
			t.Fatalf("value %q", ent.Record.Value)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times, want 1", n)
	}
	if got := e.metric("hits", "routes"); got != 10 {
		t.Fatalf("hits = %v, want 10", got)
	}
	if got := e.metric("misses", "routes"); got != 1 {
		t.Fatalf("misses = %v, want 1", got)
	}
}

func TestStaleServedAtOnceAndRefreshedOncePerKey(t *testing.T) {
	t.Parallel()
	store := mem.New()
	g := newGate(store, 0)
	l := &counting{next: g}
	e := newEnv(t, store, l, nil)
	v1 := e.clock.version(1)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	v2 := e.clock.version(2)
	e.publish("routes", "a.example", "two", v2)
	e.clock.Advance(11 * time.Second) // past Fresh, inside Stale
	g.mu.Lock()
	g.armed = 1 // the refresh blocks
	g.mu.Unlock()

	// Every read is answered at once from memory, marked stale, while the
	// one refresh is blocked.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			ent, err := e.get("routes", "a.example")
			if err != nil || ent.Record.Version != v1 || !ent.Stale {
				t.Errorf("Get = %v stale %v, %v; want %s stale", ent.Record.Version, ent.Stale, err, v1)
			}
		})
	}
	wg.Wait()
	wait(t, "refresh to start", g.entered)
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2 (one load, one refresh)", n)
	}
	if got := record.Version(l.lastIfNewer.Load()); got != v1 {
		t.Fatalf("refresh asked ifNewer=%s, want %s", got, v1)
	}
	close(g.release)
	eventually(t, "refresh to install v2", func() bool {
		ent, _ := e.c.Peek("routes", "a.example")
		return ent.Record.Version == v2
	})
	e.mustGet("routes", "a.example", v2, false)
	if got := e.metric("stale_hits", "routes"); got != 50 {
		t.Fatalf("stale_hits = %v, want 50", got)
	}
}

func TestPastStaleWindowLoadsSynchronously(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	v1 := e.clock.version(1)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	v2 := e.clock.version(2)
	e.publish("routes", "a.example", "two", v2)
	e.clock.Advance(10*time.Second + time.Minute) // past Fresh+Stale
	e.mustGet("routes", "a.example", v2, false)   // waited: the new version at once
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2", n)
	}
}

func TestOriginDownServesLastGoodValue(t *testing.T) {
	t.Parallel()
	store := mem.New()
	f := &failing{next: store}
	l := &counting{next: f}
	e := newEnv(t, store, l, nil)
	v1 := e.clock.version(1)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	f.down.Store(true)
	e.clock.Advance(30 * 24 * time.Hour) // a month of outage: far past Fresh+Stale
	ent := e.mustGet("routes", "a.example", v1, true)
	if string(ent.Record.Value) != "one" || ent.Age < 30*24*time.Hour {
		t.Fatalf("got %q age %v", ent.Record.Value, ent.Age)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2", n)
	}
	if got := e.metric("origin_errors", "routes"); got != 1 {
		t.Fatalf("origin_errors = %v, want 1", got)
	}

	// Backing off: for a fresh window after the failure, reads do not wait
	// for the origin again.
	e.clock.Advance(5 * time.Second)
	e.mustGet("routes", "a.example", v1, true)
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times during back-off, want 2", n)
	}
	e.clock.Advance(6 * time.Second)
	e.mustGet("routes", "a.example", v1, true)
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loader called %d times after back-off, want 3", n)
	}

	// Not held and origin down: the error, wrapped.
	if _, err := e.get("routes", "b.example"); !errors.Is(err, errDown) {
		t.Fatalf("Get of an uncached key = %v, want errDown", err)
	}

	f.down.Store(false)
	e.clock.Advance(11 * time.Second)
	e.mustGet("routes", "a.example", v1, false) // not modified: fresh again
	if got := e.metric("revalidations", "routes"); got != 1 {
		t.Fatalf("revalidations = %v, want 1", got)
	}
}

func TestConcurrentMissesMakeOneOriginRead(t *testing.T) {
	t.Parallel()
	const n = 1000
	store := mem.New()
	var started sync.WaitGroup
	started.Add(n)
	allStarted := make(chan struct{})
	go func() { started.Wait(); close(allStarted) }()
	l := &counting{next: LoaderFunc(func(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
		<-allStarted
		return store.Get(ctx, ns, key, ifNewer)
	})}
	e := newEnv(t, store, l, nil)
	v := e.clock.version(1)
	e.publish("keys", "ks/abc", "k", v)

	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			started.Done()
			ent, err := e.get("keys", "ks/abc")
			if err != nil || ent.Record.Version != v {
				t.Errorf("Get = %v, %v", ent.Record.Version, err)
			}
		})
	}
	wg.Wait()
	if got := l.calls.Load(); got != 1 {
		t.Fatalf("%d concurrent misses made %d origin reads, want 1", n, got)
	}
	if got := e.metric("origin_reads", "keys"); got != 1 {
		t.Fatalf("origin_reads = %v, want 1", got)
	}
}

// TestRecheckInsideFlight is the deterministic half of the singleflight test:
// a reader that saw a miss just before another load of the key finished must
// not read the origin again.
func TestRecheckInsideFlight(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	v := e.clock.version(1)
	e.publish("keys", "ks/abc", "k", v)
	e.mustGet("keys", "ks/abc", v, false)
	// What a reader that missed before that load finished does next:
	ent, err := e.c.getSlow(context.Background(), key{"keys", "ks/abc"}, nil)
	if err != nil || ent.Record.Version != v {
		t.Fatalf("getSlow = %v, %v", ent.Record.Version, err)
	}
	if got := l.calls.Load(); got != 1 {
		t.Fatalf("origin reads = %d, want 1", got)
	}
}

func TestNotFoundIsCachedForNegativeTTL(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)

	for range 3 {
		_, err := e.get("routes", "nope.example")
		if !errors.Is(err, origin.ErrNotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
		e.clock.Advance(time.Second)
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times inside NegativeTTL, want 1", n)
	}
	v := e.clock.version(1)
	e.publish("routes", "nope.example", "now", v)
	e.clock.Advance(3 * time.Second) // past NegativeTTL
	e.mustGet("routes", "nope.example", v, false)
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2", n)
	}
}

func TestTombstoneKeepsOlderValuesOut(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	v1, v2 := e.clock.version(1), e.clock.version(2)
	e.publish("routes", "a.example", "one", v1)
	e.publish("routes", "a.example", "", v2) // deleted

	ent, err := e.get("routes", "a.example")
	if !errors.Is(err, origin.ErrNotFound) || !ent.Record.Tombstone || ent.Record.Version != v2 {
		t.Fatalf("Get = %+v, %v; want tombstone %s and ErrNotFound", ent, err, v2)
	}
	// A late gossip message with the old value cannot bring it back.
	if e.c.Apply(record.Record{Namespace: "routes", Key: "a.example", Value: []byte("one"), Version: v1}) {
		t.Fatal("Apply of an older value over a tombstone was installed")
	}
	if _, err := e.get("routes", "a.example"); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("Get after late Apply = %v, want ErrNotFound", err)
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times, want 1", n)
	}
}

func TestApplyInstallsOnlyNewer(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil)
	rec := func(v record.Version) record.Record {
		return record.Record{Namespace: "routes", Key: "a.example", Value: []byte(v.String()), Version: v}
	}
	v1, v2, v3 := e.clock.version(1), e.clock.version(2), e.clock.version(3)
	for _, step := range []struct {
		v    record.Version
		want bool
	}{{v2, true}, {v1, false}, {v2, false}, {v3, true}, {v2, false}} {
		if got := e.c.Apply(rec(step.v)); got != step.want {
			t.Fatalf("Apply(%s) = %v, want %v", step.v, got, step.want)
		}
	}
	e.mustGet("routes", "a.example", v3, false)
	if e.c.Apply(record.Record{Namespace: "Bad NS", Key: "k", Version: v3}) {
		t.Fatal("invalid record applied")
	}
	if n := l.calls.Load(); n != 0 {
		t.Fatalf("loader called %d times, want 0", n)
	}
	if got := e.metric("applied", "routes"); got != 2 {
		t.Fatalf("applied = %v, want 2", got)
	}
}

func TestSizeBoundEvicts(t *testing.T) {
	t.Parallel()
	store := mem.New()
	probe := &entry{ns: "keys", key: "k0000", value: []byte("v"), version: 1}
	w := int64(weight(key{"keys", "k0000"}, probe))
	const max = 50
	e := newEnv(t, store, store, func(o *Options) { o.MaxBytes = max * w })
	v := e.clock.version(1)
	for i := range 1000 {
		e.c.Apply(record.Record{Namespace: "keys", Key: "k" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i), Value: []byte("v"), Version: v})
	}
	e.c.store.CleanUp()
	if n := e.c.store.EstimatedSize(); n > max {
		t.Fatalf("%d entries held, bound is %d", n, max)
	}
	if got := e.metric("evictions", "keys"); got < 1000-max {
		t.Fatalf("evictions = %v, want at least %d", got, 1000-max)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestLoaderPanicBecomesError(t *testing.T) {
	t.Parallel()
	store := mem.New()
	var panics bool
	var mu sync.Mutex
	l := LoaderFunc(func(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
		mu.Lock()
		p := panics
		mu.Unlock()
		if p {
			panic("boom")
		}
		return store.Get(ctx, ns, key, ifNewer)
	})
	e := newEnv(t, store, l, nil)
	mu.Lock()
	panics = true
	mu.Unlock()
	if _, err := e.get("routes", "a.example"); !errors.Is(err, ErrLoaderPanic) {
		t.Fatalf("Get = %v, want ErrLoaderPanic", err)
	}

	v := e.clock.version(1)
	e.publish("routes", "a.example", "one", v)
	mu.Lock()
	panics = false
	mu.Unlock()
	e.mustGet("routes", "a.example", v, false)
	mu.Lock()
	panics = true
	mu.Unlock()
	e.clock.Advance(11 * time.Second) // stale: the background refresh panics
	e.mustGet("routes", "a.example", v, true)
	eventually(t, "the refresh to fail", func() bool { return e.metric("origin_errors", "routes") == 2 })
	e.clock.Advance(2 * time.Minute) // expired: the synchronous load panics
	e.mustGet("routes", "a.example", v, true)
}

func TestBadLoaderAnswersAreRejected(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, LoaderFunc(func(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
		switch key {
		case "wrong":
			return record.Record{Namespace: ns, Key: "other", Version: 1}, nil
		case "unasked":
			return record.Record{}, origin.ErrNotModified
		}
		return record.Record{Namespace: ns, Key: key}, nil // version 0
	}), nil)
	for _, k := range []string{"wrong", "unasked", "zero"} {
		if _, err := e.get("routes", k); err == nil {
			t.Errorf("Get(%q) succeeded", k)
		}
		if _, ok := e.c.Peek("routes", k); ok {
			t.Errorf("Get(%q) cached a bad answer", k)
		}
	}
	if _, err := e.get("Routes", "x"); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("Get of an invalid namespace = %v, want ErrInvalid", err)
	}
}

func TestCallerContextEndsWait(t *testing.T) {
	t.Parallel()
	store := mem.New()
	g := newGate(store, 1)
	e := newEnv(t, store, g, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Get(ctx, "routes", "a.example")
		done <- err
	}()
	wait(t, "the load to start", g.entered)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Get = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Get did not return when its context ended")
	}
	close(g.release)
}

func TestCloseKeepsServingMemory(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, store, nil)
	v := e.clock.version(1)
	e.publish("routes", "a.example", "one", v)
	e.mustGet("routes", "a.example", v, false)
	e.c.Close()
	e.c.Close()
	e.clock.Advance(time.Hour)
	e.mustGet("routes", "a.example", v, true)
	if _, err := e.get("routes", "b.example"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if n, err := e.reg.Gather(); err != nil || len(n) != 0 {
		t.Fatalf("metrics still registered after Close: %d families, %v", len(n), err)
	}
}

func TestAllAndPeek(t *testing.T) {
	t.Parallel()
	store := mem.New()
	e := newEnv(t, store, store, nil)
	v := e.clock.version(1)
	e.c.Apply(record.Record{Namespace: "routes", Key: "a", Value: []byte("1"), Version: v})
	e.c.Apply(record.Record{Namespace: "keys", Key: "b", Version: v, Tombstone: true})
	got := map[string]bool{}
	for ent := range e.c.All() {
		got[ent.Record.Namespace+"/"+ent.Record.Key] = ent.Record.Tombstone
	}
	if len(got) != 2 || got["routes/a"] || !got["keys/b"] {
		t.Fatalf("All = %v", got)
	}
	if c, ok := e.c.Known("keys", "b"); !ok || !c.Tombstone || c.Version != v {
		t.Fatalf("Known(keys/b) = %+v, %v; want a tombstone at %s", c, ok, v)
	}
	if _, ok := e.c.Peek("routes", "zzz"); ok {
		t.Fatal("Peek found an absent key")
	}
	if ent, ok := e.c.Peek("routes", "a"); !ok || ent.Record.Version != v || ent.Stale {
		t.Fatalf("Peek = %+v, %v", ent, ok)
	}
}

func TestMetricsRegistration(t *testing.T) {
	t.Parallel()
	store := mem.New()
	o := DefaultOptions()
	if _, err := New(store, o); err != nil { // nil Registerer: none registered
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	c, err := New(store, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := New(store, o); err == nil {
		t.Fatal("second cache on one Registerer registered")
	}
	c.Apply(record.Record{Namespace: "routes", Key: "a", Version: 1, Tombstone: true})
	c.Invalidate("routes", "a", 2)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, want := range []string{"dataplane_cache_entries", "dataplane_cache_applied_total", "dataplane_cache_invalidations_total"} {
		if !names[want] {
			t.Errorf("metric %s missing from %v", want, names)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field string
		edit  func(*Options)
	}{
		{"Default.Fresh", func(o *Options) { o.Default.Fresh = 0 }},
		{"Default.Stale", func(o *Options) { o.Default.Stale = -1 }},
		{`Windows["Bad"]`, func(o *Options) { o.Windows = map[string]Window{"Bad": {Fresh: 1}} }},
		{`Windows["keys"].Fresh`, func(o *Options) { o.Windows = map[string]Window{"keys": {}} }},
		{"NegativeTTL", func(o *Options) { o.NegativeTTL = -1 }},
		{"MaxBytes", func(o *Options) { o.MaxBytes = 0 }},
		{"RefreshTimeout", func(o *Options) { o.RefreshTimeout = 0 }},
	} {
		o := DefaultOptions()
		tc.edit(&o)
		_, err := New(mem.New(), o)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: New = %v, want an error naming it", tc.field, err)
		}
	}
	if _, err := New(nil, DefaultOptions()); err == nil {
		t.Error("New(nil loader) succeeded")
	}
	if _, err := New(mem.New(), Options{}); err == nil {
		t.Error("New(zero Options) succeeded")
	}
}

func TestNamespaceWindows(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, func(o *Options) {
		o.Windows = map[string]Window{"keys": {Fresh: time.Hour}}
	})
	v := e.clock.version(1)
	e.publish("keys", "k", "x", v)
	e.publish("routes", "r", "x", v)
	e.mustGet("keys", "k", v, false)
	e.mustGet("routes", "r", v, false)
	e.clock.Advance(30 * time.Minute)
	e.mustGet("keys", "k", v, false) // inside the namespace's hour
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2", n)
	}
	e.mustGet("routes", "r", v, false) // past Default: reloaded (not modified)
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loader called %d times, want 3", n)
	}
}

// TestBackgroundRefreshesAreBounded: with the origin hanging and many keys
// past their fresh window, at most MaxRefreshes refreshes run at once; the
// reads beyond are still answered at once (stale), and the refreshes they
// would have started are shed and counted.
func TestBackgroundRefreshesAreBounded(t *testing.T) {
	t.Parallel()
	store := mem.New()
	g := newGate(store, 1000)
	e := newEnv(t, store, g, func(o *Options) { o.MaxRefreshes = 4 })
	const keys = 20
	v := e.clock.version(1)
	for i := range keys {
		e.c.Apply(e.publish("routes", fmt.Sprint("k", i), "v", v))
	}
	e.clock.Advance(11 * time.Second) // past Fresh, inside Stale
	for i := range keys {
		e.mustGet("routes", fmt.Sprint("k", i), v, true)
	}
	for range 4 {
		wait(t, "a refresh to reach the origin", g.entered)
	}
	if got := e.metric("refreshes_shed", "routes"); got != keys-4 {
		t.Fatalf("refreshes_shed = %v, want %d", got, keys-4)
	}
	e.c.bgMu.Lock()
	running := e.c.refreshes
	e.c.bgMu.Unlock()
	if running != 4 {
		t.Fatalf("%d refreshes running, want 4", running)
	}
	close(g.release)
	eventually(t, "the refreshes to end", func() bool {
		e.c.bgMu.Lock()
		defer e.c.bgMu.Unlock()
		return e.c.refreshes == 0
	})
	// A shed refresh is retried by a later read.
	e.mustGet("routes", "k19", v, true)
	eventually(t, "k19 refreshed", func() bool {
		ent, _ := e.c.Peek("routes", "k19")
		return !ent.Stale
	})
}
