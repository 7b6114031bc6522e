package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
)

// Cache-tier run parameters.
const (
	tierNodes = 2
	// cacheSlowDelay is a slow cache node's delay per request: past the
	// nodes' httporigin attempt timeout (tierTimeout), so a slow node is
	// failed over, and past their read deadline (readTimeout).
	cacheSlowDelay = 1500 * time.Millisecond
	tierTimeout    = time.Second
	// tierFresh is the cache nodes' fresh window. They are not gossip
	// members here (the worst case for them): they learn of a change only
	// when their copy is past this window and a node asks again.
	tierFresh = time.Second
	// tierTailTTL is how long one origin change-log read answers the
	// nodes' log polls; it adds to their settle window (origin.Timing).
	tierTailTTL = 250 * time.Millisecond
	tierToken   = "chaos-write-token"
)

// tierTiming: the nodes' settle window covers the publish budget, the clock
// skew and the tail's TTL (500 + 400 + 250 ms); convergence may take a
// cache node's fresh window and the cache's 1 s retry of a refused older
// answer longer.
var tierTiming = timing{every: publishEvery, budget: pubBudget, settle: 1500 * time.Millisecond, slack: tierFresh + 2*time.Second}

// TestChaosCacheTier is TestChaos with the nodes reading a directory origin
// through two real cache nodes (cachenode servers on loopback, reached with
// httporigin and the origin as fallback): on top of the node, network,
// origin and publisher faults, cache nodes are killed and restarted empty,
// and slowed past the nodes' attempt timeout. Every invariant the checker
// checks must hold.
func TestChaosCacheTier(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes a minute or more")
	}
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runChaos(t, "TestChaosCacheTier", fmt.Sprintf("dir behind %d cache nodes", tierNodes), store, chaosLength(t, 20*time.Second), tierTiming, runOpts{cacheNodes: tierNodes})
}

// cacheTier is the cache nodes of a run, across their kills and restarts.
type cacheTier struct {
	t      *testing.T
	origin origin.Store
	log    *slog.Logger
	nodes  []*tierNode
	timing origin.Timing // the cache nodes' (their LogTailTTL: tierTailTTL)
}

// tierNode is one cache node on a fixed loopback address.
type tierNode struct {
	addr string
	slow atomic.Int64 // ns added to each request

	mu   sync.Mutex // guards srv, cn, and the counts of past incarnations
	srv  *http.Server
	cn   *cachenode.Server
	logs [2]int64 // origin log reads, shared log reads, of closed incarnations
}

// startCacheTier starts n cache nodes in front of o until the test ends.
func startCacheTier(t *testing.T, o origin.Store, n int, tm timing) *cacheTier {
	t.Helper()
	ct := &cacheTier{t: t, origin: o, log: slog.New(slog.DiscardHandler), timing: tm.shared(tierTailTTL)}
	if err := (origin.Timing{PublishBudget: tm.budget, ClockSkew: pubSkew, LogSettle: tm.settle, SnapshotLag: time.Minute, ReplicaLag: tierTailTTL}).Validate(); err != nil {
		t.Fatalf("cache tier timing: %v", err)
	}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tn := &tierNode{addr: ln.Addr().String()}
		ct.nodes = append(ct.nodes, tn)
		if err := ct.serve(tn, ln); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range ct.nodes {
			ct.kill(i)
		}
	})
	return ct
}

// serve starts a new incarnation of tn on ln: an empty cache.
func (ct *cacheTier) serve(tn *tierNode, ln net.Listener) error {
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = ct.origin, tierToken, ct.log
	cfg.Cache = cache.DefaultConfig()
	cfg.Cache.Default = cache.Window{Fresh: tierFresh, Stale: time.Hour}
	cfg.Cache.NegativeTTL = tierFresh
	cfg.Timing = ct.timing
	cn, err := cachenode.New(cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(tn.slow.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		cn.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	tn.mu.Lock()
	tn.srv, tn.cn = srv, cn
	tn.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// client is what one node reads through: every cache node, the origin as
// fallback, attempts bounded by tierTimeout.
func (ct *cacheTier) client(log *slog.Logger) (origin.Store, error) {
	urls := make([]string, len(ct.nodes))
	for i, tn := range ct.nodes {
		urls[i] = "http://" + tn.addr
	}
	return httporigin.New(httporigin.Config{
		Nodes: urls, Fallback: ct.origin, Token: tierToken,
		Timeout: tierTimeout, NodeBackoff: 500 * time.Millisecond, Logger: log,
	})
}

// kill closes cache node i's listener, connections and cache.
func (ct *cacheTier) kill(i int) {
	tn := ct.nodes[i]
	tn.mu.Lock()
	srv, cn := tn.srv, tn.cn
	tn.srv, tn.cn = nil, nil
	if cn != nil {
		o, s := cn.LogReads()
		tn.logs[0] += o
		tn.logs[1] += s
	}
	tn.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	if cn != nil {
		cn.Close()
	}
}

// restart starts cache node i again, empty, on its address.
func (ct *cacheTier) restart(i int) error {
	tn := ct.nodes[i]
	tn.mu.Lock()
	up := tn.srv != nil
	tn.mu.Unlock()
	if up {
		return nil
	}
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", tn.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s again: %w", tn.addr, err)
	}
	return ct.serve(tn, ln)
}

func (ct *cacheTier) setSlow(i int, d time.Duration) { ct.nodes[i].slow.Store(int64(d)) }

// healAll restarts every killed cache node and lifts every slowdown.
func (ct *cacheTier) healAll() {
	for i := range ct.nodes {
		ct.setSlow(i, 0)
		if err := ct.restart(i); err != nil && !errors.Is(err, context.Canceled) {
			ct.t.Errorf("heal cache node %d: %v", i, err)
		}
	}
}

// stats are the tier's counts for the run's table.
func (ct *cacheTier) stats() map[string]int {
	var o, s int64
	for _, tn := range ct.nodes {
		tn.mu.Lock()
		o += tn.logs[0]
		s += tn.logs[1]
		if tn.cn != nil {
			a, b := tn.cn.LogReads()
			o += a
			s += b
		}
		tn.mu.Unlock()
	}
	return map[string]int{"cache nodes: origin log reads": int(o), "cache nodes: log polls answered by a shared read": int(s)}
}

// TestScheduleCacheFaults: a schedule draws cache-node faults only for a
// shape with cache nodes, and then always has both kinds, never two
// overlapping on one cache node.
func TestScheduleCacheFaults(t *testing.T) {
	sh := Shape{
		Nodes: 6, Zones: zones, Length: 20 * time.Second, MaxDown: 2, MaxSkew: time.Second, SlowFor: 6 * time.Second,
		MinGap: 700 * time.Millisecond, MaxGap: 2500 * time.Millisecond, MinFault: 2 * time.Second, MaxFault: 6 * time.Second,
	}
	for seed := range uint64(200) {
		for _, f := range NewSchedule(seed, sh) {
			if isCache(f.Kind) {
				t.Fatalf("seed %d: %s drawn without cache nodes", seed, f)
			}
		}
		tiered := sh
		tiered.CacheNodes, tiered.CacheSlowDelay = 2, cacheSlowDelay
		fs := NewSchedule(seed, tiered)
		kinds := map[FaultKind]int{}
		for i, f := range fs {
			kinds[f.Kind]++
			if f.End() > sh.Length+sh.MinFault || (f.Kind == CacheSlow && f.Delay != cacheSlowDelay) {
				t.Fatalf("seed %d: bad fault %s", seed, f)
			}
			for _, g := range fs[i+1:] {
				if isCache(f.Kind) && isCache(g.Kind) && f.Node == g.Node && f.At < g.End() && g.At < f.End() {
					t.Fatalf("seed %d: %s overlaps %s on one cache node", seed, f, g)
				}
			}
		}
		if kinds[CacheDown] == 0 || kinds[CacheSlow] == 0 {
			t.Fatalf("seed %d: cache faults %v, want both kinds", seed, kinds)
		}
	}
}
