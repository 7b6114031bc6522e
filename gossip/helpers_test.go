package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/internal/testkit"
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
	if !testkit.Poll(timeout, cond) {
		t.Fatalf("timed out after %s: "+format, append([]any{testscale.Duration(timeout)}, args...)...)
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
// and records every call, failing the test if the versions gossip hands it
// for a key ever go backwards or repeat (invariants 1-2 at the Applier
// boundary). Like a cache's version index, it ignores what is not newer
// than what it holds: the log follower (gated) may have delivered it first.
type testApplier struct {
	t testing.TB

	mu          sync.Mutex // guards everything below
	keys        map[string]held
	fromGossip  map[string]record.Version // the newest version gossip handed, by key
	applies     int
	invalidates int
	revalidates int
	violations  []string
	// restarted: a node was restarted over this applier, which may now see
	// versions it already holds; it ignores them as a real cache would.
	restarted bool
}

func newTestApplier(t testing.TB) *testApplier {
	return &testApplier{t: t, keys: make(map[string]held), fromGossip: make(map[string]record.Version)}
}

var _ follow.Revalidator = (*testApplier)(nil)

// check records a violation if gossip hands v for id at or below a version
// it handed before, and reports whether v is newer than what is held.
func (a *testApplier) check(id string, v record.Version, gossip bool) bool {
	if gossip {
		if prev, ok := a.fromGossip[id]; ok && v <= prev && !a.restarted {
			a.violations = append(a.violations, fmt.Sprintf("%s: gossip handed %s after %s", id, v, prev))
		}
		a.fromGossip[id] = max(a.fromGossip[id], v)
	}
	cur, ok := a.keys[id]
	return !ok || v > cur.version
}

func (a *testApplier) Apply(rec record.Record) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applyLocked(rec, true)
}

func (a *testApplier) applyLocked(rec record.Record, gossip bool) bool {
	a.applies++
	id := rec.Namespace + "/" + rec.Key
	if !a.check(id, rec.Version, gossip) {
		return false
	}
	a.keys[id] = held{version: rec.Version, value: append([]byte(nil), rec.Value...), inline: true, tomb: rec.Tombstone}
	return true
}

func (a *testApplier) Invalidate(ns, key string, v record.Version) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidateLocked(ns, key, v, true)
}

func (a *testApplier) invalidateLocked(ns, key string, v record.Version, gossip bool) {
	a.invalidates++
	id := ns + "/" + key
	if a.check(id, v, gossip) {
		a.keys[id] = held{version: v}
	}
}

// gated is the testApplier as the log follower sees it: the log may hand
// it what gossip handed first, and the other way round.
type gated struct{ *testApplier }

var _ follow.Target = gated{}

func (g gated) Apply(rec record.Record) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applyLocked(rec, false)
}

func (g gated) Invalidate(ns, key string, v record.Version) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.invalidateLocked(ns, key, v, false)
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
	c.tune.ReconnectInterval = 300 * time.Millisecond
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
	t         testing.TB
	nodes     []*Node
	followers []*follow.Follower
	fregs     []*prometheus.Registry // the followers' metrics
	appliers  []*testApplier
	cfgs      []Config
	store     *mem.Store
	net       *netsim.Network // nil: plain NetTransport
	clock     *record.Clock
}

type clusterOpts struct {
	n       int
	regions []string // region of node i is regions[i % len]; nil: one region
	zones   []string // netsim zone of node i is zones[i % len]; nil and net: one zone
	net     *netsim.Network
	tweak   func(i int, c *Config)
	// follow, if set, adjusts node i's log follower (read every minute by
	// default: tests that want the interval set it).
	follow func(i int, c *follow.Config)
	// log, if set, gives node i its change log (default: the store).
	log func(i int, store *mem.Store) follow.Log
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
	cfg.BindAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
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
		c.followers = append(c.followers, nil)
		c.fregs = append(c.fregs, nil)
		c.cfgs = append(c.cfgs, Config{})
	}
	if cfg.Held == nil {
		cfg.Held = a.version // as a node's cache would answer
	}
	var lr follow.Log = c.store
	if o.log != nil {
		lr = o.log(i, c.store)
	}
	fc := follow.LocalConfig()
	fc.Interval, fc.Settle = time.Minute, 200*time.Millisecond
	fc.Verifier, fc.Logger = cfg.Verifier, cfg.Logger
	reg := prometheus.NewRegistry()
	fc.Registerer = reg
	if o.follow != nil {
		o.follow(i, &fc)
	}
	f, err := follow.New(fc, gated{a}, lr)
	if err != nil {
		c.t.Fatalf("start node %d's follower: %v", i, err)
	}
	n, err := New(cfg, a, f)
	if err != nil {
		_ = f.Close()
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.nodes[i], c.followers[i], c.fregs[i], c.cfgs[i] = n, f, reg, cfg
}

// followed returns node i's follower metric dataplane_follow_<name> with
// the labels given as "name=value", 0 if absent.
func (c *cluster) followed(i int, name string, labels ...string) float64 {
	c.t.Helper()
	mfs, err := c.fregs[i].Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dataplane_follow_"+name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, want []string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, l := range m.GetLabel() {
		if !slices.Contains(want, l.GetName()+"="+l.GetValue()) {
			return false
		}
	}
	return true
}

func (c *cluster) close() {
	for i, n := range c.nodes {
		if n != nil {
			_ = n.Close()
			_ = c.followers[i].Close()
		}
	}
	for _, a := range c.appliers {
		a.assertOrdered()
	}
}

// kill stops node i without a goodbye, as a crash would.
func (c *cluster) kill(i int) {
	_ = c.nodes[i].Close()
	_ = c.followers[i].Close()
	c.nodes[i], c.followers[i] = nil, nil
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
