package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestFreshHitFailsClosed: a value inside its fresh window is still refused
// by Get, Record and Cached while its namespace fails closed and nothing
// proves it current (TTL-only, the origin down, the value confirmed longer
// ago than the policy allows); the fast lane of fresh hits must not skip the
// policy. A namespace that serves stale keeps answering fresh values.
// The change log is unreachable throughout, so that a node that follows it
// in TTL-only mode too has no proof from it either.
func TestFreshHitFailsClosed(t *testing.T) {
	var now atomic.Int64 // the cache's clock
	start := time.Now()
	now.Store(start.UnixNano())
	store := &downGets{Store: mem.New()}
	cut := logCut{store} // no log read proves anything either
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour}
	n, err := Open(context.Background(), Config{
		Origin: cut, Cache: copts, Namespaces: []string{"routes", "keys"},
		Now:       func() time.Time { return time.Unix(0, now.Load()) },
		Staleness: map[string]Policy{"keys": {FailClosedAfter: time.Minute}},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	v := record.MakeVersion(start.Add(-time.Second), 0)
	for _, ns := range []string{"keys", "routes"} {
		n.cache.Apply(record.Record{Namespace: ns, Key: "k", Value: []byte("v"), Version: v})
	}
	ctx := context.Background()
	if _, err := n.Get(ctx, "keys", "k"); err != nil {
		t.Fatalf("keys/k just confirmed: %v", err)
	}

	store.down.Store(true)
	now.Add(int64(2 * time.Minute)) // fresh still (1 h), confirmed 2 min ago (D is 1 min)
	if _, ok := n.cache.GetFresh("keys", "k"); !ok {
		t.Fatal("keys/k should be held fresh for this test to mean anything")
	}
	if _, err := n.Get(ctx, "keys", "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get of a fresh value in a failing namespace: %v, want ErrUnavailable", err)
	}
	if _, err := n.Record(ctx, "keys", "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Record: %v, want ErrUnavailable", err)
	}
	if _, err, ok := n.Cached("keys", "k"); ok {
		t.Fatalf("Cached answered (err %v): TTL-only, it must leave the read to Get", err)
	}
	if got, err := n.Get(ctx, "routes", "k"); err != nil || string(got.Data) != "v" || got.Stale || got.Age != 2*time.Minute {
		t.Fatalf("routes/k (serves stale): %+v, %v", got, err)
	}
	if rec, err, ok := n.Cached("routes", "k"); !ok || err != nil || rec.Version != v {
		t.Fatalf("Cached routes/k: %+v, %v, %v", rec, err, ok)
	}
}

// logCut is a store whose change log cannot be read.
type logCut struct{ *downGets }

func (logCut) ReadLog(context.Context, record.Version, int) ([]record.Change, error) {
	return nil, fmt.Errorf("test: log cut: %w", origin.ErrUnavailable)
}

// TestNFailingCountsFlags: however concurrent updates interleave, once they
// end the count the read path checks first equals the failing flags set;
// were it ever below, a fresh hit would skip a namespace failing closed.
func TestNFailingCountsFlags(t *testing.T) {
	f := newFreshness(Config{Staleness: map[string]Policy{
		"a": {FailClosedAfter: time.Minute}, "b": {FailClosedAfter: time.Minute},
	}}, 0)
	if len(f.closing) != 3 { // a, b and keys (the default policy)
		t.Fatalf("closing lists %d spaces, want 3", len(f.closing))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				s := f.closing[(g+i)%len(f.closing)]
				f.setFailing(s, (g*7+i*13)%3 == 0)
			}
		})
	}
	wg.Wait()
	set := 0
	for _, s := range f.closing {
		if s.failing.Load() {
			set++
		}
	}
	if got := f.nFailing.Load(); got != int64(set) {
		t.Fatalf("nFailing %d with %d flags set", got, set)
	}
	f.setFailing(f.closing[0], true)
	if !f.failingNow(f.closing[0].ns) || f.nFailing.Load() == 0 {
		t.Fatal("a flag set is not seen")
	}
}
