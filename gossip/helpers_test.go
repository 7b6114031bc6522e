package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// eventually polls cond until it holds or timeout passes; no fixed sleeps.
// timeout is what an idle machine needs: it is stretched by the machine's
// load (testscale), so a busy machine waits longer, never fails sooner.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	timeout = testscale.Duration(timeout)
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// testLogger discards logs unless GOSSIP_TEST_LOG is set (to a level name).
func testLogger(t testing.TB, name string) *slog.Logger {
	lvl := os.Getenv("GOSSIP_TEST_LOG")
	if lvl == "" {
		return slog.New(slog.DiscardHandler)
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("t", t.Name())
}

// held is what a testApplier holds for one key.
type held struct {
	version record.Version
	value   []byte
	inline  bool // the value is known (Apply), not just a floor (Invalidate)
	tomb    bool
}

// testApplier is a tiny cache stand-in: it keeps the newest version per key
// and records every call, failing the test if a key's versions ever go
// backwards or repeat (invariants 1-2 at the Applier boundary).
type testApplier struct {
	t testing.TB

	mu          sync.Mutex // guards everything below
	keys        map[string]held
	applies     int
	invalidates int
	revalidates int
	violations  []string
	// restarted: a node was restarted over this applier, which may now see
	// versions it already holds; it ignores them as a real cache would.
	restarted bool
}

func newTestApplier(t testing.TB) *testApplier {
	return &testApplier{t: t, keys: make(map[string]held)}
}

var _ Revalidator = (*testApplier)(nil)

func (a *testApplier) check(id string, v record.Version) bool {
	if cur, ok := a.keys[id]; ok && v <= cur.version {
		if !a.restarted {
			a.violations = append(a.violations, fmt.Sprintf("%s: got %s after %s", id, v, cur.version))
		}
		return false
	}
	return true
}

func (a *testApplier) Apply(rec record.Record) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applies++
	id := rec.Namespace + "/" + rec.Key
	if !a.check(id, rec.Version) {
		return false
	}
	a.keys[id] = held{version: rec.Version, value: append([]byte(nil), rec.Value...), inline: true, tomb: rec.Tombstone}
	return true
}

func (a *testApplier) Invalidate(ns, key string, v record.Version) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidates++
	id := ns + "/" + key
	if a.check(id, v) {
		a.keys[id] = held{version: v}
	}
}

func (a *testApplier) RevalidateAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revalidates++
}

func (a *testApplier) get(ns, key string) held {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.keys[ns+"/"+key]
}

func (a *testApplier) version(ns, key string) record.Version { return a.get(ns, key).version }

func (a *testApplier) counts() (applies, invalidates, revalidates int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applies, a.invalidates, a.revalidates
}

func (a *testApplier) assertOrdered() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.violations {
		a.t.Errorf("order violation: %s", v)
	}
}

// testConfig is DefaultLocalConfig with timers shortened for tests.
func testConfig(t testing.TB, name string) Config {
	c := DefaultLocalConfig()
	c.Insecure = true // tests that want encryption set SecretKeys
	c.Name = name
	c.Logger = testLogger(t, name)
	c.Registerer = prometheus.NewRegistry()
	c.LogInterval = time.Minute // tests that want the interval set it
	c.LogSettle = 200 * time.Millisecond
	c.ReconnectInterval = 300 * time.Millisecond
	ml := c.Memberlist
	// The failure detector's timers are stretched by the machine's load:
	// on a busy machine a probe answered late is not a dead node, and
	// false suspicions would keep membership from ever settling.
	ml.ProbeInterval = testscale.Duration(300 * time.Millisecond)
	ml.ProbeTimeout = testscale.Duration(150 * time.Millisecond)
	ml.GossipInterval = 30 * time.Millisecond
	ml.PushPullInterval = time.Second
	ml.GossipToTheDeadTime = time.Second
	ml.SuspicionMult = 3
	ml.TCPTimeout = testscale.Duration(500 * time.Millisecond)
	return c
}

// cluster is a set of real memberlist nodes on loopback in this process.
type cluster struct {
	t        testing.TB
	nodes    []*Node
	appliers []*testApplier
	cfgs     []Config
	store    *mem.Store
	net      *netsim.Network // nil: plain NetTransport
	clock    *record.Clock
}

type clusterOpts struct {
	n       int
	regions []string // region of node i is regions[i % len]; nil: one region
	zones   []string // netsim zone of node i is zones[i % len]; nil and net: one zone
	net     *netsim.Network
	tweak   func(i int, c *Config)
	// log, if set, gives node i its change log (default: the store).
	log func(i int, store *mem.Store) LogReader
}

func newCluster(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, store: mem.New(), net: o.net, clock: record.NewClock(nil)}
	for i := 0; i < o.n; i++ {
		c.start(i, o, 0)
	}
	t.Cleanup(c.close)
	c.waitMembers(o.n, 20*time.Second)
	return c
}

// start starts (or restarts, with port and resume set) node i.
func (c *cluster) start(i int, o clusterOpts, port int) {
	c.t.Helper()
	cfg := testConfig(c.t, fmt.Sprintf("node-%02d", i))
	if o.regions != nil {
		cfg.Region = o.regions[i%len(o.regions)]
	}
	cfg.BindPort = port
	if o.net != nil {
		zone := "z"
		if o.zones != nil {
			zone = o.zones[i%len(o.zones)]
		}
		tr, err := o.net.Listen("127.0.0.1", port, zone, nil)
		if err != nil {
			c.t.Fatal(err)
		}
		cfg.Transport = tr
	}
	if i > 0 || len(c.nodes) > 1 {
		for j, n := range c.nodes {
			if j != i && n != nil {
				cfg.Seeds = append(cfg.Seeds, n.Addr())
				if len(cfg.Seeds) == 3 {
					break
				}
			}
		}
	}
	if o.tweak != nil {
		o.tweak(i, &cfg)
	}
	var a *testApplier
	if i < len(c.appliers) {
		a = c.appliers[i] // a restart keeps its cache
		a.mu.Lock()
		a.restarted = true
		a.mu.Unlock()
	} else {
		a = newTestApplier(c.t)
		c.appliers = append(c.appliers, a)
		c.nodes = append(c.nodes, nil)
		c.cfgs = append(c.cfgs, Config{})
	}
	var lr LogReader = c.store
	if o.log != nil {
		lr = o.log(i, c.store)
	}
	n, err := New(cfg, a, lr)
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.nodes[i], c.cfgs[i] = n, cfg
}

func (c *cluster) close() {
	for _, n := range c.nodes {
		if n != nil {
			_ = n.Close()
		}
	}
	for _, a := range c.appliers {
		a.assertOrdered()
	}
}

// kill stops node i without a goodbye, as a crash would.
func (c *cluster) kill(i int) {
	_ = c.nodes[i].Close()
	c.nodes[i] = nil
}

func (c *cluster) live() []int {
	var out []int
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// waitMembers waits until every live node sees want members.
func (c *cluster) waitMembers(want int, timeout time.Duration) {
	c.t.Helper()
	eventually(c.t, timeout, func() bool {
		for _, i := range c.live() {
			if len(c.nodes[i].Members()) != want {
				return false
			}
		}
		return true
	}, "every node to see %d members", want)
}

// publish writes a record to the origin (as a publisher would) and hands it
// to node i.
func (c *cluster) publish(i int, ns, key string, value []byte) record.Record {
	c.t.Helper()
	rec := record.Record{Namespace: ns, Key: key, Value: value, Version: c.clock.Now(), Tombstone: value == nil}
	if _, err := origin.Publish(context.Background(), c.store, rec); err != nil {
		c.t.Fatal(err)
	}
	if err := c.nodes[i].Publish(context.Background(), rec); err != nil {
		c.t.Fatal(err)
	}
	return rec
}

// converged reports whether every live node holds version v of ns/key.
func (c *cluster) has(ns, key string, v record.Version) bool {
	for _, i := range c.live() {
		if c.appliers[i].version(ns, key) < v {
			return false
		}
	}
	return true
}

// convergedWithOrigin reports whether every live node holds the origin's
// latest version of every key in keys.
func (c *cluster) convergedWithOrigin(ns string, keys []string) bool {
	for _, k := range keys {
		r, err := c.store.Get(context.Background(), ns, k, 0)
		if err != nil {
			c.t.Fatal(err)
		}
		if !c.has(ns, k, r.Version) {
			return false
		}
	}
	return true
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}
