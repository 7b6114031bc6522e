package cachenode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// logCounting wraps a real store and counts its change-log reads; gate, when
// set, holds every log read until it is closed.
type logCounting struct {
	origin.Store
	reads atomic.Int64
	gate  chan struct{}
}

func (c *logCounting) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	c.reads.Add(1)
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.Store.ReadLog(ctx, after, limit)
}

func logPage(t *testing.T, srv *httptest.Server, after record.Version) []wire.Change {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/v1/log?after=" + after.String())
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var page wire.LogPage
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /v1/log: %d, %v", resp.StatusCode, err)
	}
	return page.Changes
}

// TestLogReadsShared: concurrent log reads through a node share one origin
// read, a read from a higher cursor is answered from it, and what was
// appended is seen once the shared read is older than LogTailTTL (or at
// once, when appended through the node).
func TestLogReadsShared(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &logCounting{Store: d, gate: make(chan struct{})}
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = store, token, slog.New(slog.DiscardHandler)
	// Long enough that every request below arrives within it on a loaded
	// machine: the test is about sharing, not the window's length.
	cfg.Timing = tailTiming(30 * time.Second)
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node)
	t.Cleanup(func() { srv.Close(); node.Close() })
	ctx := context.Background()
	base := record.MakeVersion(time.Now(), 0)
	for i := range 5 {
		if err := d.AppendLog(ctx, record.Change{Namespace: "cfg", Key: fmt.Sprint("k", i), Version: base + record.Version(i)}); err != nil {
			t.Fatal(err)
		}
	}

	// 20 readers at once, the origin held: one origin read answers all.
	const readers = 20
	var wg sync.WaitGroup
	got := make([]int, readers)
	for i := range readers {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = len(logPage(t, srv, base-1)) }()
	}
	// Let the requests reach the node (they wait on the held read).
	if !testkit.Poll(30*time.Second, func() bool { return store.reads.Load() >= 1 }) {
		t.Fatal("no origin read started")
	}
	time.Sleep(200 * time.Millisecond)
	close(store.gate)
	wg.Wait()
	for i, n := range got {
		if n != 5 {
			t.Fatalf("reader %d got %d changes, want 5", i, n)
		}
	}
	fromOrigin, shared := node.LogReads()
	t.Logf("%d concurrent readers: %d origin reads, %d shared", readers, store.reads.Load(), shared)
	if store.reads.Load() != 1 || fromOrigin != 1 {
		t.Fatalf("%d concurrent readers made %d origin log reads (node counts %d), want 1", readers, store.reads.Load(), fromOrigin)
	}

	// A higher cursor, later: answered from the same read, its part only.
	if cs := logPage(t, srv, base+2); len(cs) != 2 || cs[0].Version != (base+3).String() {
		t.Fatalf("after base+2: %+v, want the 2 changes above it", cs)
	}
	// A cursor a little lower is covered too: the shared read started
	// LogTailSpan below the clock.
	if cs := logPage(t, srv, base-2); len(cs) != 5 {
		t.Fatalf("after base-2: %d changes, want 5", len(cs))
	}
	if n := store.reads.Load(); n != 1 {
		t.Fatalf("%d origin reads, want still 1", n)
	}
	// A cursor below the span is not: it reads the origin.
	if cs := logPage(t, srv, record.MakeVersion(time.Now().Add(-time.Minute), 0)); len(cs) != 5 {
		t.Fatalf("after a minute ago: %d changes, want 5", len(cs))
	}
	if n := store.reads.Load(); n != 2 {
		t.Fatalf("%d origin reads, want 2 (the lower cursor's)", n)
	}

	// Appended behind the node's back: not seen within the window (this is
	// the lag readers count) ...
	if err := d.AppendLog(ctx, record.Change{Namespace: "cfg", Key: "late", Version: base + 10}); err != nil {
		t.Fatal(err)
	}
	if cs := logPage(t, srv, base-1); len(cs) != 5 {
		t.Fatalf("within the window: %d changes, want the shared read's 5", len(cs))
	}
	// ... but appended through the node: seen at once.
	body, _ := json.Marshal(wire.FromChange(record.Change{Namespace: "cfg", Key: "mine", Version: base + 11}))
	req, _ := http.NewRequest("POST", srv.URL+"/v1/log", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("POST /v1/log: %v %v", resp, err)
	}
	resp.Body.Close()
	if cs := logPage(t, srv, base-1); len(cs) != 7 {
		t.Fatalf("after an append through the node: %d changes, want 7", len(cs))
	}
}

// TestLogTailExpires: with a short LogTailTTL, a change appended to the
// origin is served once the shared read is older than the TTL.
func TestLogTailExpires(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &logCounting{Store: d}
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = store, token, slog.New(slog.DiscardHandler)
	cfg.Timing = tailTiming(100 * time.Millisecond)
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node)
	t.Cleanup(func() { srv.Close(); node.Close() })
	base := record.MakeVersion(time.Now(), 0)
	if cs := logPage(t, srv, base); len(cs) != 0 {
		t.Fatalf("empty log: %d changes", len(cs))
	}
	if err := d.AppendLog(context.Background(), record.Change{Namespace: "cfg", Key: "k", Version: base + 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if cs := logPage(t, srv, base); len(cs) != 1 {
		t.Fatalf("%s after the append (TTL 100 ms): %d changes, want 1", 150*time.Millisecond, len(cs))
	}
	if n := store.reads.Load(); n != 2 {
		t.Fatalf("%d origin reads, want 2", n)
	}
}

// TestSentinelsShareLogReads runs real sentinel nodes (gossip catch-up
// every 100 ms) that read the origin through two real cache nodes
// (httporigin), and counts the origin's change-log reads against the log
// polls the nodes made: the tier turns N polls per interval into about one
// origin read per LogTailTTL. A change that only the log carries (no gossip
// message announces it) still reaches every node.
func TestSentinelsShareLogReads(t *testing.T) {
	const (
		sentinels = 4
		ttl       = 500 * time.Millisecond
		window    = 3 * time.Second
	)
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &logCounting{Store: d}
	var polls atomic.Int64 // GET /v1/log requests reaching the cache nodes
	var urls []string
	for range 2 {
		cfg := cachenode.DefaultConfig()
		cfg.Origin, cfg.WriteToken, cfg.Logger = store, token, slog.New(slog.DiscardHandler)
		cfg.Timing = tailTiming(ttl)
		// Not gossip members here: a short window lets them read v2.
		cfg.Cache.Default = cache.Window{Fresh: 500 * time.Millisecond, Stale: time.Hour}
		node, err := cachenode.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "GET" && r.URL.Path == wire.LogPath {
				polls.Add(1)
			}
			node.ServeHTTP(w, r)
		}))
		t.Cleanup(func() { srv.Close(); node.Close() })
		urls = append(urls, srv.URL)
	}
	ctx := context.Background()
	var nodes []*dataplane.Node
	for i := range sentinels {
		tier, err := httporigin.New(httporigin.Config{Nodes: urls, Fallback: d, Token: token, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		g := gossip.DefaultLocalConfig()
		g.Insecure = true // loopback test cluster
		g.Name = fmt.Sprint("s", i)
		if i > 0 {
			g.Seeds = []string{nodes[0].GossipAddr()}
		}
		ml := *g.Memberlist
		ml.LogOutput = io.Discard
		g.Memberlist = &ml
		copts := cache.DefaultConfig()
		copts.Default = cache.Window{Fresh: time.Minute, Stale: time.Hour}
		n, err := dataplane.Open(ctx, dataplane.Config{
			Origin: tier, Gossip: &g.Cluster, Namespaces: []string{}, Cache: copts,
			// Settle covers the default publish budget and skew plus the
			// tail's TTL: origin.Timing.
			Timing: func() origin.Timing {
				t := origin.DefaultTiming()
				t.LogInterval, t.LogSettle = 100*time.Millisecond, 1500*time.Millisecond
				return t
			}(),
			Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	tm := origin.Timing{PublishBudget: time.Second, LogSettle: 1500 * time.Millisecond, SnapshotLag: 2 * time.Second, ReplicaLag: ttl}
	if err := tm.Validate(); err != nil {
		t.Fatal(err)
	}

	p0, r0 := polls.Load(), store.reads.Load()
	start := time.Now()
	time.Sleep(window)
	elapsed := time.Since(start)
	p, r := polls.Load()-p0, store.reads.Load()-r0
	t.Logf("%d sentinels polling every 100 ms for %s: %d log polls reached the cache nodes, %d origin log reads (%.1f polls per origin read; TTL %s)",
		sentinels, elapsed.Round(time.Millisecond), p, r, float64(p)/float64(max(r, 1)), ttl)
	if p < 2*sentinels {
		t.Fatalf("only %d log polls in %s: the nodes did not poll through the tier", p, elapsed)
	}
	// About one origin read per TTL (plus a few from cursors below the
	// shared read's) instead of one per poll.
	if limit := int64(elapsed/ttl) + 2*sentinels; r > limit || r*2 > p {
		t.Fatalf("%d origin log reads for %d polls in %s: want at most %d and at most half the polls", r, p, elapsed, limit)
	}

	// A change only the log carries reaches every sentinel through the
	// tier: each holds v1, fresh for a minute; v2 is written to the origin
	// with no gossip message.
	v1 := record.Record{Namespace: "cfg", Key: "k", Version: record.MakeVersion(time.Now(), 0), Value: []byte("v1")}
	if _, err := origin.Publish(ctx, d, v1); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if v, err := n.Get(ctx, "cfg", "k"); err != nil || v.Version != v1.Version {
			t.Fatalf("sentinel s%d: %v %v, want v1", i, v.Version, err)
		}
	}
	rec := v1
	rec.Version, rec.Value = record.MakeVersion(time.Now(), 1), []byte("v2")
	if _, err := origin.Publish(ctx, d, rec); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if !testkit.Poll(30*time.Second, func() bool {
			v, err := n.Get(ctx, "cfg", "k")
			return err == nil && v.Version == rec.Version
		}) {
			t.Fatalf("sentinel s%d never served %s", i, rec.Version)
		}
	}
}

// TestLogReadsFailOver: httporigin reads the log from the region's log node,
// from the next node when that one is gone, and from its fallback (the real
// store) when every node is gone; each answer holds every change.
func TestLogReadsFailOver(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := record.MakeVersion(time.Now(), 0)
	for i := range 3 {
		if err := d.AppendLog(context.Background(), record.Change{Namespace: "cfg", Key: fmt.Sprint("k", i), Version: base + record.Version(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var srvs []*httptest.Server
	var urls []string
	polls := make([]*atomic.Int64, 2)
	for i := range 2 {
		cfg := cachenode.DefaultConfig()
		cfg.Origin, cfg.WriteToken, cfg.Logger = d, token, slog.New(slog.DiscardHandler)
		node, err := cachenode.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		polls[i] = &atomic.Int64{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == wire.LogPath {
				polls[i].Add(1)
			}
			node.ServeHTTP(w, r)
		}))
		t.Cleanup(func() { srv.Close(); node.Close() })
		srvs, urls = append(srvs, srv), append(urls, srv.URL)
	}
	fallback := &logCounting{Store: d}
	tier, err := httporigin.New(httporigin.Config{Nodes: urls, Fallback: fallback, Token: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	read := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, err := tier.ReadLog(ctx, base-1, 0)
		if err != nil || len(cs) != 3 {
			t.Fatalf("%s: %d changes, %v; want 3", what, len(cs), err)
		}
	}
	read("every node up")
	first := 0
	if polls[1].Load() > 0 {
		first = 1
	}
	if polls[first].Load() != 1 || polls[1-first].Load() != 0 {
		t.Fatalf("log polls by node: %d, %d; want all on one node", polls[0].Load(), polls[1].Load())
	}
	srvs[first].Close()
	read("the log node gone")
	if polls[1-first].Load() != 1 {
		t.Fatalf("the other node answered %d log polls, want 1", polls[1-first].Load())
	}
	srvs[1-first].Close()
	read("every node gone")
	if fallback.reads.Load() != 1 {
		t.Fatalf("the fallback answered %d log reads, want 1", fallback.reads.Load())
	}
}

// tailTiming is origin.DefaultTiming with cache nodes sharing a log read for
// ttl, and the readers' settle stretched to cover it.
func tailTiming(ttl time.Duration) origin.Timing {
	t := origin.DefaultTiming()
	t.LogTailTTL = ttl
	t.LogSettle = max(t.LogSettle, t.PublishBudget+t.ClockSkew+ttl)
	return t
}
