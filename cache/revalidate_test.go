package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin/mem"
)

// TestGetRevalidated: past the fresh window, GetRevalidated does not serve
// the held value as Get does, but reads the origin first (one read for many
// concurrent callers) and returns the newer version; with the origin down it
// returns the held value marked stale; inside the fresh window it reads
// nothing.
func TestGetRevalidated(t *testing.T) {
	t.Parallel()
	store := mem.New()
	f := &failing{next: store}
	l := &counting{next: f}
	e := newEnv(t, store, l, nil)
	ctx := context.Background()
	v1 := e.clock.version(1)
	e.publish("routes", "a.example", "one", v1)
	e.mustGet("routes", "a.example", v1, false)

	calls := l.calls.Load()
	if ent, err := e.c.GetRevalidated(ctx, "routes", "a.example"); err != nil || ent.Record.Version != v1 || ent.Stale {
		t.Fatalf("fresh: %v stale %v, %v", ent.Record.Version, ent.Stale, err)
	}
	if l.calls.Load() != calls {
		t.Fatal("GetRevalidated inside the fresh window read the origin")
	}

	v2 := e.clock.version(2)
	e.publish("routes", "a.example", "two", v2)
	e.clock.Advance(11 * time.Second) // past Fresh, inside Stale
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			ent, err := e.c.GetRevalidated(ctx, "routes", "a.example")
			if err != nil || ent.Record.Version != v2 || ent.Stale {
				t.Errorf("stale held, origin up: %v stale %v, %v; want %s current", ent.Record.Version, ent.Stale, err, v2)
			}
		})
	}
	wg.Wait()
	if got := l.calls.Load() - calls; got != 1 {
		t.Fatalf("origin reads for 50 concurrent revalidating readers = %d, want 1 (invariant 5)", got)
	}

	v3 := e.clock.version(3)
	e.publish("routes", "a.example", "three", v3)
	e.clock.Advance(11 * time.Second)
	f.down.Store(true)
	ent, err := e.c.GetRevalidated(ctx, "routes", "a.example")
	if err != nil || ent.Record.Version != v2 || !ent.Stale {
		t.Fatalf("stale held, origin down: %v stale %v, %v; want %s marked stale", ent.Record.Version, ent.Stale, err, v2)
	}
}
