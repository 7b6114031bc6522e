package cache

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestRefillBeforeInvalidateIsNotFresh is the stale-set race on a key not
// yet held: the load reads v1, an invalidation for v2 arrives, then the load
// returns v1. The cache must not serve v1 as fresh; it reads again.
func TestRefillBeforeInvalidateIsNotFresh(t *testing.T) {
	t.Parallel()
	store := mem.New()
	g := newGate(store, 1)
	l := &counting{next: g}
	e := newEnv(t, store, l, nil)
	v1, v2 := e.clock.version(1), e.clock.version(2)
	e.publish("routes", "a.example", "one", v1)

	got := make(chan Entry, 1)
	go func() {
		ent, err := e.get("routes", "a.example")
		if err != nil {
			t.Error(err)
		}
		got <- ent
	}()
	wait(t, "the load to read v1", g.entered)
	e.publish("routes", "a.example", "two", v2)
	if !e.c.Invalidate("routes", "a.example", v2) {
		t.Fatal("Invalidate of a loading key marked nothing")
	}
	close(g.release) // the load returns v1
	ent := <-got
	if ent.Record.Version != v2 || ent.Stale {
		t.Fatalf("Get = %s stale %v, want %s fresh (v1 must not be served as fresh)", ent.Record.Version, ent.Stale, v2)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2 (the late v1, then v2)", n)
	}
}

// lagging is an origin that can answer from an old copy, as a replica or a
// cache tier that has not caught up yet does.
type lagging struct {
	next Loader
	mu   sync.Mutex // guards old
	old  *record.Record
}

func (l *lagging) lag(rec *record.Record) {
	l.mu.Lock()
	l.old = rec
	l.mu.Unlock()
}

func (l *lagging) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	l.mu.Lock()
	old := l.old
	l.mu.Unlock()
	if old == nil {
		return l.next.Get(ctx, ns, key, ifNewer)
	}
	if old.Version <= ifNewer {
		return record.Record{}, origin.ErrNotModified
	}
	return *old, nil
}

// TestLaggingOriginBelowFloorStaysStale: when the origin keeps returning
// versions older than an invalidation named, they are served marked stale
// (never going back), and the origin is asked again every behindRetry, in
// the background, until the new version shows (TestLaggingOriginBacksOff:
// not by every read).
func TestLaggingOriginBelowFloorStaysStale(t *testing.T) {
	t.Parallel()
	store := mem.New()
	lag := &lagging{next: store}
	l := &counting{next: lag}
	e := newEnv(t, store, l, nil)
	v1, v2, v3 := e.clock.version(1), e.clock.version(2), e.clock.version(3)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	old := e.publish("routes", "a.example", "two", v2)
	lag.lag(&old) // the origin is stuck at v2
	e.publish("routes", "a.example", "three", v3)
	if !e.c.Invalidate("routes", "a.example", v3) {
		t.Fatal("Invalidate of a held older version marked nothing")
	}
	calls := l.calls.Load()
	e.mustGet("routes", "a.example", v2, true) // newer than v1, not v3
	if l.calls.Load() <= calls {
		t.Fatal("a read of an invalidated key did not ask the origin")
	}
	for range 2 {
		calls = l.calls.Load()
		e.clock.Advance(behindRetry)
		e.mustGet("routes", "a.example", v2, true)
		eventually(t, "a background retry of the outdated key", func() bool { return l.calls.Load() > calls })
	}
	lag.lag(nil)
	e.clock.Advance(behindRetry)
	e.mustGet("routes", "a.example", v2, true)
	eventually(t, "the background retry to install v3", func() bool {
		ent, ok := e.c.Peek("routes", "a.example")
		return ok && ent.Record.Version == v3
	})
	e.mustGet("routes", "a.example", v3, false)
}

// TestLaggingOriginDuringLoad: an invalidation arrives while a key that is
// not held loads, and the origin keeps answering with the older version: it
// is not served at all (the node knows a newer version and served nothing
// older before), the read fails as unavailable, and the next read asks
// again and gets the new version once the origin has it.
func TestLaggingOriginDuringLoad(t *testing.T) {
	t.Parallel()
	store := mem.New()
	lag := &lagging{next: store}
	g := newGate(lag, 1)
	l := &counting{next: g}
	e := newEnv(t, store, l, nil)
	v1, v2 := e.clock.version(1), e.clock.version(2)
	old := e.publish("routes", "a.example", "one", v1)
	lag.lag(&old)

	got := make(chan error, 1)
	go func() {
		ent, err := e.get("routes", "a.example")
		if err == nil {
			t.Errorf("Get = %s, want an error: v2 is known", ent.Record.Version)
		}
		got <- err
	}()
	wait(t, "the load to read v1", g.entered)
	e.publish("routes", "a.example", "two", v2)
	e.c.Invalidate("routes", "a.example", v2)
	close(g.release)
	if err := <-got; !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("Get = %v, want ErrUnavailable", err)
	}
	calls := l.calls.Load()
	if _, err := e.get("routes", "a.example"); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("second Get = %v, want ErrUnavailable while the origin lags", err)
	}
	if l.calls.Load() == calls {
		t.Fatal("the next read did not ask the origin")
	}
	lag.lag(nil)
	e.mustGet("routes", "a.example", v2, false)
	lag.lag(nil)
	e.mustGet("routes", "a.example", v2, false)
}

// TestInvalidateHeldLoadsWithIfNewer: after an invalidation naming a newer
// version, the next read waits for the origin, asking for anything newer
// than what is held; with the origin down it gets the held value, stale.
func TestInvalidateHeldLoadsWithIfNewer(t *testing.T) {
	t.Parallel()
	store := mem.New()
	f := &failing{next: store}
	l := &counting{next: f}
	e := newEnv(t, store, l, nil)
	v1, v2, v3 := e.clock.version(1), e.clock.version(2), e.clock.version(3)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	if e.c.Invalidate("routes", "a.example", v1) {
		t.Fatal("Invalidate with the held version marked the entry")
	}
	e.publish("routes", "a.example", "two", v2)
	e.c.Invalidate("routes", "a.example", v2)
	if ent, _ := e.c.Peek("routes", "a.example"); !ent.Stale {
		t.Fatal("invalidated entry still fresh")
	}
	e.mustGet("routes", "a.example", v2, false) // at once, inside Fresh
	if n, ifNewer := l.calls.Load(), record.Version(l.lastIfNewer.Load()); n != 2 || ifNewer != v1 {
		t.Fatalf("loader calls %d ifNewer %s, want 2 and %s", n, ifNewer, v1)
	}

	f.down.Store(true)
	e.c.Invalidate("routes", "a.example", v3)
	ent := e.mustGet("routes", "a.example", v2, true)
	if string(ent.Record.Value) != "two" {
		t.Fatalf("value %q", ent.Record.Value)
	}
	if got := e.metric("invalidations", "routes"); got != 2 {
		t.Fatalf("invalidations = %v, want 2", got)
	}
}

// TestRefreshRacingInvalidate is the stale-set race on a held key: a
// background refresh learns "not modified" for v1, but an invalidation for
// v2 arrived while it was in flight; v1 must not become fresh again.
func TestRefreshRacingInvalidate(t *testing.T) {
	t.Parallel()
	store := mem.New()
	g := newGate(store, 0)
	l := &counting{next: g}
	e := newEnv(t, store, l, nil)
	v1, v2 := e.clock.version(1), e.clock.version(2)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	g.mu.Lock()
	g.armed = 1
	g.mu.Unlock()
	e.clock.Advance(11 * time.Second)
	e.mustGet("routes", "a.example", v1, true) // starts the refresh
	wait(t, "the refresh to read 'not modified'", g.entered)
	e.publish("routes", "a.example", "two", v2)
	e.c.Invalidate("routes", "a.example", v2)
	close(g.release)
	eventually(t, "the refresh to finish", func() bool {
		ent, _ := e.c.Peek("routes", "a.example")
		return ent.Record.Version == v2
	})
	e.mustGet("routes", "a.example", v2, false)
}

// TestMonotonicReads runs readers against writers that deliver versions in
// any order, twice, with invalidations, through an origin whose replicas lag:
// no reader may ever see a version go back.
func TestMonotonicReads(t *testing.T) {
	t.Parallel()
	const keys, versions = 4, 200
	var latest [keys]atomic.Uint64
	keyName := func(i int) string { return "k" + itoa(i) }
	l := LoaderFunc(func(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
		i := int(key[1] - '0')
		top := latest[i].Load()
		if top == 0 {
			return record.Record{Namespace: ns, Key: key, Version: 1}, nil
		}
		v := 1 + rand.Uint64N(top) // a replica somewhere behind
		if record.Version(v) <= ifNewer {
			return record.Record{}, origin.ErrNotModified
		}
		return record.Record{Namespace: ns, Key: key, Version: record.Version(v)}, nil
	})
	e := newEnv(t, mem.New(), l, func(o *Options) {
		o.Default = Window{Fresh: time.Nanosecond, Stale: 0} // every read loads
	})

	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range versions * keys {
				i := r.IntN(keys)
				v := record.Version(1 + r.IntN(versions))
				for {
					cur := latest[i].Load()
					if uint64(v) <= cur || latest[i].CompareAndSwap(cur, uint64(v)) {
						break
					}
				}
				if r.IntN(2) == 0 {
					e.c.Apply(record.Record{Namespace: "ns", Key: keyName(i), Version: v})
				} else {
					e.c.Invalidate("ns", keyName(i), v)
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			var seen [keys]record.Version
			for n := range 2000 {
				i := n % keys
				e.clock.Advance(time.Millisecond)
				ent, err := e.get("ns", keyName(i))
				if errors.Is(err, origin.ErrUnavailable) {
					// The replica answered below a version this node
					// knows, with nothing served before: refused, not
					// served going back.
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if ent.Record.Version < seen[i] {
					t.Errorf("key %d went back from %s to %s", i, seen[i], ent.Record.Version)
					return
				}
				seen[i] = ent.Record.Version
			}
		})
	}
	wg.Wait()
}

// TestOutdatedEntryRetriesSoonAfterOutage is a regression test for a bug the
// chaos suite found: an invalidation arrives while the origin is down, the
// load fails, and the entry backs off for a whole fresh window. When the
// origin came back nothing retried before that window ended, so a node
// whose invalidation had already been delivered served the outdated
// version for up to Fresh (30 s in the chaos run) after the heal, past the
// convergence bound. A key known to be outdated is now retried in the
// background every outdatedRetry, without making any read wait.
func TestOutdatedEntryRetriesSoonAfterOutage(t *testing.T) {
	t.Parallel()
	store := mem.New()
	f := &failing{next: store}
	l := &counting{next: f}
	e := newEnv(t, store, l, nil) // Fresh 10s
	v1, v2 := e.clock.version(1), e.clock.version(2)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	f.down.Store(true)
	e.publish("routes", "a.example", "two", v2)
	e.c.Invalidate("routes", "a.example", v2)
	e.mustGet("routes", "a.example", v1, true) // load fails: held value, stale
	calls := l.calls.Load()

	// Backing off: inside outdatedRetry no read asks the origin again.
	e.clock.Advance(outdatedRetry / 2)
	e.mustGet("routes", "a.example", v1, true)
	if n := l.calls.Load(); n != calls {
		t.Fatalf("loader called %d times during the back-off, want %d", n, calls)
	}

	// The origin is back; a little later, well inside the fresh window, a
	// read is answered at once (stale) and starts a retry in the
	// background, which installs v2.
	f.down.Store(false)
	e.clock.Advance(outdatedRetry)
	e.mustGet("routes", "a.example", v1, true)
	eventually(t, "the background retry to install v2", func() bool {
		ent, ok := e.c.Peek("routes", "a.example")
		return ok && ent.Record.Version == v2
	})
	e.mustGet("routes", "a.example", v2, false)
}

// TestLaggingOriginBacksOff: an invalidation names v2 while the origin (a
// replica) still answers v1. The read that finds the entry outdated asks
// the origin (up to maxAttempts times) and serves v1 marked stale; the
// reads after it are answered at once without asking again until
// behindRetry has passed, and then one background read brings v2 once
// the replica has it. Before, every read waited on the lagging origin.
func TestLaggingOriginBacksOff(t *testing.T) {
	t.Parallel()
	store := mem.New()
	l := &counting{next: store}
	e := newEnv(t, store, l, nil) // Fresh 10s
	v1, v2 := e.clock.version(1), e.clock.version(2)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	e.c.Invalidate("routes", "a.example", v2) // the origin does not have v2 yet
	e.mustGet("routes", "a.example", v1, true)
	calls := l.calls.Load()
	for range 9 {
		e.clock.Advance(behindRetry / 10)
		e.mustGet("routes", "a.example", v1, true)
	}
	if n := l.calls.Load(); n != calls {
		t.Fatalf("reads inside behindRetry asked the lagging origin %d more times, want 0", n-calls)
	}

	e.publish("routes", "a.example", "two", v2) // the replica catches up
	e.clock.Advance(behindRetry)
	e.mustGet("routes", "a.example", v1, true)
	eventually(t, "the background retry to install v2", func() bool {
		ent, ok := e.c.Peek("routes", "a.example")
		return ok && ent.Record.Version == v2
	})
	e.mustGet("routes", "a.example", v2, false)
}
