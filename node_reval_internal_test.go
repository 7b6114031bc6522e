package dataplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// downGets is a store whose record reads can be switched off.
type downGets struct {
	origin.Store
	down   atomic.Bool
	failed atomic.Int64
}

func (d *downGets) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if d.down.Load() {
		d.failed.Add(1)
		return record.Record{}, fmt.Errorf("test: %w", origin.ErrUnavailable)
	}
	return d.Store.Get(ctx, ns, key, ifNewer)
}

// TestRevalidationsCoalesce: requests for a full revalidation while one
// runs (here, retrying reads through an outage) are folded into it, so a
// node runs at most one at a time whatever the number of requests; when the
// origin returns, it completes and installs what changed.
func TestRevalidationsCoalesce(t *testing.T) {
	store := &downGets{Store: mem.New()}
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour}
	n, err := Open(context.Background(), Config{Origin: store, Cache: copts, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	clock := record.NewClock(nil)
	const keys = 20
	newer := make(map[string]record.Version)
	for i := range keys {
		k := fmt.Sprint("k", i)
		old := record.Record{Namespace: "routes", Key: k, Value: []byte("old"), Version: clock.Now()}
		n.cache.Apply(old)
		rec := record.Record{Namespace: "routes", Key: k, Value: []byte("new"), Version: clock.Now()}
		if _, err := origin.Publish(context.Background(), store, rec); err != nil {
			t.Fatal(err)
		}
		newer[k] = rec.Version
	}

	store.down.Store(true)
	before := runtime.NumGoroutine()
	for range 50 {
		(*logTarget)(n).RevalidateAll()
	}
	if g := runtime.NumGoroutine() - before; g > 10 {
		t.Fatalf("50 requests started %d goroutines; want one revalidation (and its 8 readers) at most", g)
	}
	n.revalMu.Lock()
	running := n.revalRunning
	n.revalMu.Unlock()
	if !running {
		t.Fatal("no revalidation running")
	}

	// A first pass, and the pass it starts over with.
	if !testkit.Poll(10*time.Second, func() bool { return store.failed.Load() >= 2*keys }) {
		t.Fatalf("only %d failed reads", store.failed.Load())
	}
	if got := store.failed.Load(); got > 10*keys {
		t.Fatalf("%d reads failed; 50 requests must not make 50 passes", got)
	}
	store.down.Store(false)
	testkit.Eventually(t, 10*time.Second, "the revalidation to end once the origin returned", func() bool {
		n.revalMu.Lock()
		defer n.revalMu.Unlock()
		return !n.revalRunning
	})
	for k, v := range newer {
		if got, err := n.Get(context.Background(), "routes", k); err != nil || got.Version != v {
			t.Errorf("%s: version %s, %v; want %s", k, got.Version, err, v)
		}
	}
}
