package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// clock is a fake clock that moves only when told.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time               { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration)      { c.ns.Add(int64(d)) }
func (c *clock) version(n int) record.Version { return record.MakeVersion(c.Now(), uint16(n)) }

// counting wraps a Loader, counting calls and remembering the last ifNewer.
type counting struct {
	next        Loader
	calls       atomic.Int64
	lastIfNewer atomic.Uint64
}

func (l *counting) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	l.calls.Add(1)
	l.lastIfNewer.Store(uint64(ifNewer))
	return l.next.Get(ctx, ns, key, ifNewer)
}

// gate is a Loader that, for the calls it is armed for, reads the origin,
// announces it has done so, and waits for release before answering: a load
// blocked in the middle.
type gate struct {
	next    Loader
	mu      sync.Mutex // guards armed
	armed   int
	entered chan struct{}
	release chan struct{}
}

func newGate(next Loader, calls int) *gate {
	return &gate{next: next, armed: calls, entered: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (g *gate) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	rec, err := g.next.Get(ctx, ns, key, ifNewer)
	g.mu.Lock()
	block := g.armed > 0
	g.armed--
	g.mu.Unlock()
	if block {
		g.entered <- struct{}{}
		select {
		case <-g.release:
		case <-ctx.Done():
			return record.Record{}, ctx.Err()
		}
	}
	return rec, err
}

// failing is a Loader whose origin can be switched off.
type failing struct {
	next Loader
	down atomic.Bool
}

var errDown = errors.New("connection refused")

func (l *failing) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if l.down.Load() {
		return record.Record{}, errDown
	}
	return l.next.Get(ctx, ns, key, ifNewer)
}

type env struct {
	t     *testing.T
	clock *clock
	store *mem.Store
	reg   *prometheus.Registry
	c     *Cache
}

// newEnv returns a cache over l (a counting wrapper of store when l is nil)
// with a fake clock, windows Fresh 10s / Stale 1m, NegativeTTL 5s.
func newEnv(t *testing.T, store *mem.Store, l Loader, edit func(*Options)) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), store: store, reg: prometheus.NewPedanticRegistry()}
	o := DefaultOptions()
	o.Default = Window{Fresh: 10 * time.Second, Stale: time.Minute}
	o.Now = e.clock.Now
	o.Registerer = e.reg
	o.Logger = slog.New(slog.DiscardHandler)
	// As on a node: routes and keys are held whole (MarkComplete is up to
	// each test); other namespaces are partial.
	o.Complete = []string{"routes", "keys"}
	if edit != nil {
		edit(&o)
	}
	c, err := New(l, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.c = c
	return e
}

func (e *env) publish(ns, key, value string, v record.Version) record.Record {
	e.t.Helper()
	rec := record.Record{Namespace: ns, Key: key, Value: []byte(value), Version: v, Tombstone: value == ""}
	if _, err := origin.Publish(context.Background(), e.store, rec); err != nil {
		e.t.Fatal(err)
	}
	return rec
}

func (e *env) get(ns, key string) (Entry, error) {
	e.t.Helper()
	return e.c.Get(context.Background(), ns, key)
}

// mustGet reads ns/key and checks its version and staleness.
func (e *env) mustGet(ns, key string, v record.Version, stale bool) Entry {
	e.t.Helper()
	ent, err := e.get(ns, key)
	if err != nil {
		e.t.Fatalf("Get(%s/%s): %v", ns, key, err)
	}
	if ent.Record.Version != v || ent.Stale != stale {
		e.t.Fatalf("Get(%s/%s) = version %s stale %v, want %s stale %v", ns, key, ent.Record.Version, ent.Stale, v, stale)
	}
	return ent
}

// metric returns the value of counter name (without prefix) for namespace ns.
func (e *env) metric(name, ns string) float64 {
	e.t.Helper()
	var vec *prometheus.CounterVec
	mm := e.c.metrics
	switch name {
	case "hits":
		return float64(mm.hits.with(ns).value())
	case "stale_hits":
		return float64(mm.staleHits.with(ns).value())
	case "misses":
		vec = mm.misses
	case "origin_reads":
		vec = mm.originReads
	case "origin_errors":
		vec = mm.originErrors
	case "revalidations":
		vec = mm.revalidations
	case "evictions":
		vec = mm.evictions
	case "invalidations":
		vec = mm.invalidations
	case "applied":
		vec = mm.applys
	case "refreshes_shed":
		vec = mm.refreshesShed
	default:
		e.t.Fatalf("no metric %q", name)
	}
	return testutil.ToFloat64(vec.WithLabelValues(ns))
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, what, cond)
}

// wait receives from ch or fails after a deadline.
func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
