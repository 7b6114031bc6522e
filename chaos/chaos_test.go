package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/internal/gossiptune"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
	"github.com/dataplane/dataplane/sign"
)

// Run parameters. Timers are those of a local cluster, shortened so that a
// run fits in a minute or two under the race detector on two cores.
const (
	numNodes     = 6
	numKeys      = 40 // written by the publishers
	numAbsent    = 4  // read but never written: negative entries
	logInterval  = time.Second
	logSettle    = time.Second
	readTimeout  = 500 * time.Millisecond
	slowDelay    = 5 * time.Second
	freshWindow  = 30 * time.Second // longer than a run: freshness comes from gossip and the log, not the TTL
	settleReads  = 1500 * time.Millisecond
	publishEvery = 40 * time.Millisecond
	// pubBudget and pubSkew: publishes reach the log within 500 ms of
	// taking their version, clocks (node skew faults included) within
	// 400 ms, which the nodes' 1 s settle window covers (origin.Timing).
	pubBudget = 500 * time.Millisecond
	pubSkew   = 400 * time.Millisecond
)

// timing is the write and read timing of one run.
type timing struct {
	every  time.Duration // how often each publisher writes
	budget time.Duration // origin.Timing.PublishBudget
	settle time.Duration // origin.Timing.LogSettle
	slack  time.Duration // added to the convergence bound for a slow origin
}

// shared is the nodes' origin.Timing for tm: tail is the cache tier's
// shared log read (0 without a tier). It states no CheckpointLifetime:
// the publishers' (2 x D) is only sound because the runs write all the
// time, so checkpoints are renewed every checkpointInterval; a namespace
// that stopped changing would be proven only at half the lifetime, which
// dataplane.Config.Validate refuses.
func (tm timing) shared(tail time.Duration) origin.Timing {
	return origin.Timing{
		PublishBudget: tm.budget, ClockSkew: pubSkew,
		LogInterval: logInterval, LogSettle: tm.settle, SnapshotLag: origin.DefaultSnapshotLag, LogRetention: 5 * time.Second,
		LogTailTTL: tail,
	}
}

// localTiming suits the dir and S3 origins on this machine.
var localTiming = timing{every: publishEvery, budget: pubBudget, settle: logSettle}

// bound is convergenceBound for tm's settle window, with its margin
// stretched by the machine's load now (testscale): taken at the last heal.
func (tm timing) bound() time.Duration {
	return convergenceBound - logSettle + tm.settle + tm.slack - convergenceMargin + testscale.Duration(convergenceMargin)
}

// convergenceBound is how long after the last heal every live node must
// serve the origin's latest version of every key, on an idle machine: a
// read sent to the slow origin just before the heal answers slowDelay
// later (the flight every reader of that key on that node waits for), then
// a log interval and its settle window for a change whose every message
// was lost, then convergenceMargin. Measured convergence is usually well
// under it.
const convergenceBound = slowDelay + logInterval + logSettle + convergenceMargin

// convergenceMargin is the time restarted nodes take to warm, and a node
// whose state a checkpoint proved wrong to reload its namespace from the
// proven snapshot (a read, one signature and hashing every record), on an
// idle machine. Both are CPU work that the race detector on a loaded
// machine stretches, so runs stretch it by the load (timing.bound): a fixed
// 3 s failed about one TestChaosDroppedRevocations run in four at load
// 35-45 on 2 cores (converged 10.5-13 s after the heal, bound 10 s), while
// the nodes' logs show the lag is a slow read answering slowDelay after the
// heal, then such a reload (1.6 s of a 5.2 s convergence at load 10).
const convergenceMargin = 3 * time.Second

var zones = []string{"a", "b", "c"}

// chaosSeed is the run's seed: DATAPLANE_CHAOS_SEED if it names one, else
// (unset or "random") a random one, which the run logs.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("DATAPLANE_CHAOS_SEED"); s != "" && s != "random" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DATAPLANE_CHAOS_SEED=%q: %v", s, err)
		}
		return seed
	}
	return rand.Uint64() >> 1 // fits an int64 flag if someone needs one
}

// chaosLength is how long faults are injected: DATAPLANE_CHAOS_LENGTH if
// set, else def.
func chaosLength(t *testing.T, def time.Duration) time.Duration {
	if s := os.Getenv("DATAPLANE_CHAOS_LENGTH"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DATAPLANE_CHAOS_LENGTH=%q: %v", s, err)
		}
		return d
	}
	return def
}

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("DATAPLANE_CHAOS_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("t", t.Name())
}

// chaosNode is one member of the cluster, across its restarts.
type chaosNode struct {
	idx     int
	name    string
	zone    string
	dataDir string
	skew    atomic.Int64 // ns added to this node's clock

	mu    sync.RWMutex // guards n, epoch and port; readers hold it shared across a read
	n     *dataplane.Node
	epoch int // crashes so far
	port  int
}

func (nd *chaosNode) now() time.Time { return time.Now().Add(time.Duration(nd.skew.Load())) }

// cluster is the system under test: nodes over one faulty origin, talking
// through one simulated network.
type cluster struct {
	t      *testing.T
	log    *slog.Logger
	raw    origin.Store // the real origin, for publishers and the final truth
	faulty *FaultyStore // what the nodes read
	net    *netsim.Network
	nodes  []*chaosNode
	check  *Checker
	phase  atomic.Int32
	tm     timing
	// tier, when set, is the cache nodes the nodes read through
	// (httporigin), in front of faulty.
	tier *cacheTier
	// ttlOnly: the nodes run without gossip (runOpts.ttlOnly).
	ttlOnly bool
	// failClosed is the run's fail-closed bound D for the keys namespace;
	// 0 keeps the default policy (5 minutes: never reached in a run).
	// With it, reads of keys go through Node.Get, which applies the
	// policy, instead of the cache.
	failClosed time.Duration
	// pubDown fails every write of every publisher (an Outage fault).
	pubDown atomic.Bool
	// verifier, when set, is given to every node (Config.Verifier, with
	// RequireCheckpoints): runOpts.signed.
	verifier *sign.Verifier
	// revocable is runOpts.revocations; deaf, when set, is what node-0
	// reads the origin through (runOpts.revocations).
	revocable int
	deaf      *FaultyStore

	opsMu sync.Mutex // guards ops
	ops   map[string]int
}

// keySpace is how many keys the readers read (keyOf's range).
func (c *cluster) keySpace() int { return numKeys + numAbsent + c.revocable }

func (c *cluster) count(op string, n int) {
	c.opsMu.Lock()
	c.ops[op] += n
	c.opsMu.Unlock()
}

func (c *cluster) seeds(except int) []string {
	var out []string
	for _, o := range c.nodes {
		if o.idx == except {
			continue
		}
		o.mu.RLock()
		if o.port != 0 {
			out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)))
		}
		o.mu.RUnlock()
	}
	return out
}

// start opens node nd (again): same name, port and data directory.
func (c *cluster) start(nd *chaosNode) error {
	nd.mu.RLock()
	port := nd.port
	nd.mu.RUnlock()
	var tr *netsim.Transport
	shutdown := func() {
		if tr != nil {
			_ = tr.Shutdown()
		}
	}
	if !c.ttlOnly {
		var err error
		if tr, err = c.net.Listen("127.0.0.1", port, nd.zone, nil); err != nil {
			return fmt.Errorf("listen %s on port %d: %w", nd.name, port, err)
		}
	}
	g := gossip.DefaultLocalConfig()
	g.Insecure = true // loopback test cluster
	g.Name, g.Region, g.Transport = nd.name, nd.zone, tr
	g.Seeds = c.seeds(nd.idx)
	g.Tune(func(t *gossiptune.Tuning) { t.ReconnectInterval = 500 * time.Millisecond })
	ml := *g.Memberlist
	ml.ProbeInterval = 300 * time.Millisecond
	ml.ProbeTimeout = 150 * time.Millisecond
	ml.GossipInterval = 50 * time.Millisecond
	ml.PushPullInterval = time.Second
	ml.GossipToTheDeadTime = time.Second
	ml.SuspicionMult = 3
	ml.TCPTimeout = 500 * time.Millisecond
	g.Memberlist = &ml
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: freshWindow, Stale: time.Hour}
	copts.NegativeTTL = time.Second
	copts.MaxBytes = 64 << 20
	var store origin.Store = c.faulty
	if c.deaf != nil && nd.idx == 0 {
		store = c.deaf
	}
	if c.tier != nil {
		var err error
		if store, err = c.tier.client(c.log.With("node", nd.name)); err != nil {
			shutdown()
			return err
		}
	}
	var tail time.Duration
	if c.tier != nil {
		tail = tierTailTTL
	}
	var staleness map[string]dataplane.Policy
	if c.failClosed > 0 {
		staleness = map[string]dataplane.Policy{"keys": {FailClosedAfter: c.failClosed}}
	}
	cfg := dataplane.Config{
		Staleness:             staleness,
		Origin:                store,
		Cache:                 copts,
		Gossip:                &g.Cluster,
		Timing:                c.tm.shared(tail),
		Now:                   nd.now,
		Namespaces:            []string{"routes", "keys"},
		DataDir:               nd.dataDir,
		LocalSnapshotInterval: time.Second,
		WarmTimeout:           2 * time.Second,
		Logger:                c.log.With("node", nd.name),
		Registerer:            prometheus.NewRegistry(), // one per incarnation: Node metrics are never unregistered
	}
	if c.ttlOnly {
		cfg.Gossip = nil // the change log is the only path of changes
	}
	if c.verifier != nil {
		cfg.Verifier, cfg.RequireCheckpoints = c.verifier, true
		fs := c.faulty
		if c.deaf != nil && nd.idx == 0 {
			fs = c.deaf
		}
		// Checkpoints and snapshot proofs are read through the node's
		// faulty store too: an origin outage hides them as well.
		cfg.Checkpoints = faultyParts{fs, c.raw.(origin.SnapshotParts)}
	}
	n, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		shutdown()
		return fmt.Errorf("open %s: %w", nd.name, err)
	}
	nd.mu.Lock()
	nd.n = n
	if !c.ttlOnly {
		_, p, _ := net.SplitHostPort(n.GossipAddr())
		nd.port, _ = strconv.Atoi(p)
	}
	nd.mu.Unlock()
	return nil
}

// stop closes node nd; with crash, its local snapshot files are rolled
// back to what its last periodic write left, as if it had died.
func (c *cluster) stop(nd *chaosNode, crash bool) {
	var saved map[string][]byte
	if crash {
		saved = make(map[string][]byte)
		entries, _ := os.ReadDir(nd.dataDir)
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(nd.dataDir, e.Name())); err == nil {
				saved[e.Name()] = b
			}
		}
	}
	nd.mu.Lock()
	n := nd.n
	nd.n = nil
	if crash {
		nd.epoch++
	}
	nd.mu.Unlock()
	if n == nil {
		return
	}
	if err := n.Close(); err != nil {
		c.t.Logf("close %s: %v", nd.name, err)
	}
	if crash {
		entries, _ := os.ReadDir(nd.dataDir)
		for _, e := range entries {
			p := filepath.Join(nd.dataDir, e.Name())
			if b, ok := saved[e.Name()]; ok {
				_ = os.WriteFile(p, b, 0o644)
			} else {
				_ = os.Remove(p)
			}
		}
	}
}

// read reads ns/key on nd as a sentinel would, and records it.
func (c *cluster) read(nd *chaosNode, ns, key string, phase Phase) (Read, bool) {
	nd.mu.RLock()
	defer nd.mu.RUnlock()
	if nd.n == nil {
		return Read{}, false
	}
	_, held := nd.n.Peek(ns, key)
	r := Read{Node: nd.name, Epoch: nd.epoch, Namespace: ns, Key: key, Held: held, Phase: phase, Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	if c.failClosed > 0 && ns == "keys" {
		return c.readPolicy(ctx, nd, r)
	}
	e, err := nd.n.Entry(ctx, ns, key)
	r.End = time.Now()
	switch {
	case err == nil:
		r.Outcome, r.Version, r.Value, r.Stale = Value, e.Record.Version, e.Record.Value, e.Stale
	case errors.Is(err, origin.ErrNotFound):
		r.Outcome, r.Version, r.Stale = NotFound, e.Record.Version, e.Stale
	default:
		r.Outcome, r.Err = Failed, err
	}
	c.check.Record(r)
	return r, true
}

// readPolicy is read through Node.Get, which applies the namespace's
// staleness policy (the cache alone does not). Get reports a deletion
// without its version, which the checker needs: it is taken from the
// node's version index right after (Node.Known), and the read is left out
// when that is no longer a tombstone (a newer write arrived meanwhile).
// nd.mu is held.
func (c *cluster) readPolicy(ctx context.Context, nd *chaosNode, r Read) (Read, bool) {
	v, err := nd.n.Get(ctx, r.Namespace, r.Key)
	switch {
	case err == nil:
		r.End = time.Now()
		r.Outcome, r.Version, r.Value, r.Stale = Value, v.Version, v.Data, v.Stale
	case errors.Is(err, dataplane.ErrNotFound):
		k, ok := nd.n.Known(r.Namespace, r.Key)
		r.End = time.Now()
		if ok && !k.Tombstone {
			r.Outcome, r.Err = Failed, errors.New("chaos: deletion's version unknown (overwritten since)")
			return r, true // not recorded: the checker could not place it
		}
		r.Outcome, r.Version = NotFound, k.Version // 0: never written
	default:
		r.End = time.Now()
		r.Outcome, r.Err = Failed, err
		r.Refused = errors.Is(err, dataplane.ErrUnavailable)
	}
	c.check.Record(r)
	return r, true
}

// keyOf names key i: numKeys written at random, numAbsent never written,
// then the keys a revocations run deletes once for good.
func keyOf(i int) (ns, key string) {
	if i >= numKeys+numAbsent {
		return "keys", fmt.Sprintf("ks/revoked-%02d", i-numKeys-numAbsent)
	}
	if i%2 == 0 {
		return "routes", fmt.Sprintf("host-%02d.example.com", i)
	}
	return "keys", fmt.Sprintf("ks/%064x", i)
}

// TestChaos runs a cluster of six nodes in three zones over a real
// directory origin through a random schedule of faults while two
// publishers (one with its clock 1.5 s ahead) write, and every node serves
// reads; then heals everything and checks, over every read served, the
// invariants of DESIGN.md: monotonic reads, no resurrection, availability
// of held keys, convergence within the bound, no corrupt value served.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes a minute or more")
	}
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runChaos(t, "TestChaos$", "dir", store, chaosLength(t, 40*time.Second), localTiming, runOpts{})
}

// TestChaosTTLOnly is TestChaos with no gossip at all (the RFC's TTL-only
// options): the publishers notify nobody and the fresh window outlasts the
// run, so every change a node serves after its warm-up reached it through
// its log follower. The same invariants must hold, convergence within the
// same bound.
func TestChaosTTLOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes a minute or more")
	}
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runChaos(t, "TestChaosTTLOnly", "dir, no gossip", store, chaosLength(t, 30*time.Second), localTiming, runOpts{ttlOnly: true})
}

// TestChaosS3 is TestChaos over a real S3-compatible server (versitygw, as
// the origin/s3 tests use), with half the faults: the change log is read
// by listing, the records by conditional GETs.
func TestChaosS3(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes a minute or more")
	}
	srv := testserver.StartS3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := s3.New(ctx, s3.Config{
		Bucket: "chaos", UsePathStyle: true,
		Conn: awsconn.Conn{
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	runChaos(t, "TestChaosS3", "s3 (versitygw)", store, chaosLength(t, 20*time.Second), localTiming, runOpts{})
}

// TestChaosDynamo is TestChaos over a real DynamoDB-compatible server
// (dynalite), with its change log sharded over 4 partitions.
func TestChaosDynamo(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes a minute or more")
	}
	srv := testserver.StartDynamo(t)
	// dynalite 4.0.0 dies of an uncaught ECONNRESET now and then under
	// this load; the supervisor restarts it with its tables, and the run
	// sees an origin outage (counted in the table), which it must survive
	// anyway.
	srv.RestartOnCrash.Store(true)
	t.Cleanup(func() {
		if n, out := srv.Crashes(); n > 0 {
			t.Logf("dynalite crashed %d times (restarted); the last said:\n%s", n, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := dynamodb.New(ctx, dynamodb.Config{
		Table: "chaos", LogShards: 4,
		Conn: awsconn.Conn{
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			HTTPClient:     newFinishingClient(), // dynalite dies of aborted requests
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	// dynalite (one Node.js process) serves a few hundred requests a second
	// on this shared machine, and a publish makes five (note, read, write,
	// log, clear): publishers write at a quarter of the rate, with a 2 s
	// publish budget the nodes' 3 s settle window covers, and convergence
	// may take 10 s longer, since every read a converging node makes waits
	// in dynalite's queue.
	dynTiming := timing{every: 4 * publishEvery, budget: 2 * time.Second, settle: 3 * time.Second, slack: 10 * time.Second}
	runChaos(t, "TestChaosDynamo", "dynamodb (dynalite)", store, chaosLength(t, 20*time.Second), dynTiming, runOpts{extra: func() map[string]int {
		n, _ := srv.Crashes()
		return map[string]int{"dynalite crashes (restarted: origin outages)": n}
	}})
}

// TestChaosFailClosed is TestChaos over a directory origin with the keys
// namespace failing closed after D = 4 s, and one whole outage of 9 s (the
// origin, its change log and the publishers all down) among the random
// faults: besides the usual invariants (routes, which serve stale, must
// still answer every held key through the outage), every read of keys
// from D (plus outageSlack) into the outage until its end must be refused
// with dataplane.ErrUnavailable, never answered with a value the node
// cannot prove current. D is above a healthy node's proof age (a log read
// every second proves up to a second before it, LogSettle), so the policy
// does not refuse on a healthy origin.
func TestChaosFailClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes a minute")
	}
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const d, outage = 4 * time.Second, 9 * time.Second
	runChaos(t, "TestChaosFailClosed", "dir, keys failing closed after 4s", store, max(chaosLength(t, 16*time.Second), 2*outage),
		localTiming, runOpts{failClosed: d, outage: outage})
}

// runOpts are a run's options beyond its origin and timing.
type runOpts struct {
	// extra, if set, adds counts of the backend's own to the table.
	extra func() map[string]int
	// cacheNodes > 0 puts that many real cache nodes (package cachenode)
	// between the nodes and the faulty origin; the nodes read through
	// them (httporigin, with the origin as fallback), and the schedule
	// draws cache-node faults too.
	cacheNodes int
	// ttlOnly runs the nodes without gossip (the RFC's TTL-only options):
	// publishers notify nobody, the fresh window outlasts the run, and
	// only the nodes' log followers carry changes; network faults then
	// touch nothing.
	ttlOnly bool
	// failClosed > 0 makes the keys namespace fail closed after it (D),
	// and outage adds an Outage fault that long (see Shape.Outage);
	// outage > failClosed + outageSlack makes the checker assert that
	// every read of keys is refused from D + outageSlack into the outage
	// until its end.
	failClosed, outage time.Duration
	// signed makes the publishers sign (one key) and issue checkpoints
	// (the repairer: every checkpointInterval, lifetime 2 x failClosed),
	// and the nodes verify (Config.Verifier, RequireCheckpoints).
	signed bool
	// revocations > 0 adds that many keys to keys, written before the
	// nodes start and deleted for good one by one through the run; the
	// network drops every tombstone of keys on its way to node-0 (every
	// push, relay, gossip repair and push/pull digest entry carrying one:
	// cluster.dropRevocations), while every other node gets them and
	// every other change reaches node-0; and node-0 reads the origin (its
	// log and checkpoints included) through a store of its own that goes
	// down in windows (cluster.revoke), so that it can learn a revocation
	// only from a checkpoint it cannot match and the log, when that is
	// up. The checker then asserts that no read serves a version of a key
	// failClosed + revocationSlack after a newer tombstone of it was
	// published (KindRevoked).
	revocations int
}

// outageSlack is how long after an Outage starts a node may still hold a
// proof of being current younger than the outage, for reasons of this
// harness: publisher B's clock runs 1.5 s ahead (a change it wrote just
// before the outage, or a local snapshot holding one, proves up to 1.5 s
// later than the outage start), a node's clock may be skewed 400 ms, and
// the failing flag is recomputed every 50 ms; plus 600 ms of margin.
const outageSlack = 1500*time.Millisecond + 400*time.Millisecond + 50*time.Millisecond + 600*time.Millisecond

// runChaos runs the chaos suite over store: faults for length, then the
// last heal and the checks. run is the -run pattern that replays it.
// tm is the run's timing (localTiming unless the backend is slower).
func runChaos(t *testing.T, run, originName string, store origin.Store, length time.Duration, tm timing, opt runOpts) {
	extra := opt.extra
	seed := chaosSeed(t)
	replay := fmt.Sprintf("DATAPLANE_CHAOS_SEED=%d go test -race -count=1 -run '%s' -v ./chaos/", seed, run)
	t.Logf("seed %d, origin %s (replay: %s)", seed, originName, replay)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d; replay with:\n\t%s", seed, replay)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 1))

	faulty := NewFaultyStore(store)
	faulty.SlowDelay = slowDelay
	base := netsim.Link{Delay: 2 * time.Millisecond, Jitter: 2 * time.Millisecond}
	c := &cluster{
		t: t, log: logger(t), raw: store, faulty: faulty, net: netsim.New(seed),
		check: NewChecker(), ops: make(map[string]int), tm: tm, ttlOnly: opt.ttlOnly, failClosed: opt.failClosed,
	}
	if opt.failClosed > 0 {
		c.check.FailsClosed("keys")
	}
	var signer *sign.Signer
	if opt.signed {
		signer, c.verifier = newSigning(t)
	}
	if opt.revocations > 0 {
		c.revocable = opt.revocations
		c.deaf = NewFaultyStore(faulty)
		c.check.RevocationBound("keys", opt.failClosed+revocationSlack())
	}
	c.net.SetDefault(base)
	if opt.cacheNodes > 0 {
		c.tier = startCacheTier(t, faulty, opt.cacheNodes, tm)
	}

	var clocks []*record.Clock // one per publisher, shared by its restarts
	// Publishers: A on the wall clock, B 1.5 s ahead. Both notify a random
	// live node's gossip member; the change log covers a failed notify.
	notify := publisher.NotifierFunc(func(ctx context.Context, rec record.Record) error {
		if opt.ttlOnly {
			return nil // nobody to notify: the nodes follow the log
		}
		nd := c.nodes[rand.IntN(len(c.nodes))]
		if c.deaf != nil && isRevocation(rec) {
			// The one hop to node-0 that is not on the simulated
			// wire (a publisher calls a node's API): the publishers
			// hand a tombstone of keys to another node, whose pushes
			// to node-0 the network drops (cluster.dropRevocations).
			nd = c.nodes[1+rand.IntN(len(c.nodes)-1)]
		}
		nd.mu.RLock()
		defer nd.mu.RUnlock()
		if nd.n == nil {
			return errors.New("chaos: notified node is down")
		}
		return nd.n.Publish(ctx, rec)
	})
	// Publisher-side faults: every publisher writes through WriteFaults,
	// which delays a write step past twice the settle window, fails it, or
	// crashes the publisher at it; a crashed publisher is replaced by a new
	// one over the same store. Every record sent to a compare-and-swap is
	// known to the checker (acknowledged or not: a write that reached the
	// origin may be served), and a repairer finishes what crashes leave.
	var hookMu sync.Mutex // guards hookRng
	hookRng := rand.New(rand.NewPCG(seed, 7))
	// down fails a write during an Outage: the publishers' origin is down
	// too. It runs after any delay, so a write paused across the start of
	// the outage fails as well.
	down := func(step Step) error {
		if c.pubDown.Load() {
			c.count("publisher writes failed by the outage", 1)
			return fmt.Errorf("chaos: origin outage at %s: %w", step, origin.ErrUnavailable)
		}
		return nil
	}
	hook := func(ctx context.Context, step Step, ch record.Change) error {
		if step != StepCAS && step != StepLog {
			return down(step)
		}
		hookMu.Lock()
		x := hookRng.Float64()
		hookMu.Unlock()
		switch {
		case x < 0.01:
			c.count("publisher faults: crash at "+step.String(), 1)
			return ErrCrashed
		case x < 0.03:
			c.count("publisher faults: fail at "+step.String(), 1)
			return fmt.Errorf("chaos: %s failed: %w", step, origin.ErrUnavailable)
		case x < 0.05:
			c.count("publisher faults: delay 2x settle at "+step.String(), 1)
			time.Sleep(2 * tm.settle) // a pause the publisher cannot cut short (GC, a stalled disk)
		}
		return down(step)
	}
	newPub := func(i int, skew time.Duration, h WriteHook) *publisher.Publisher {
		cfg := publisher.DefaultConfig()
		cfg.Signer = signer
		if signer != nil {
			// Every publisher proves the snapshots it writes; the
			// repairer alone issues checkpoints (RunCheckpoints).
			cfg.Timing.CheckpointLifetime, cfg.IssueCheckpoints = 2*opt.failClosed, true
		}
		cfg.Clock = clocks[i]
		cfg.Notifier = notify
		cfg.Logger = c.log.With("publisher", i)
		cfg.Namespaces = []string{"routes", "keys"}
		cfg.Schemas = schema.NewRegistry() // values are version markers, not routes
		cfg.Timing.LogRetention = 5 * time.Second
		cfg.Timing.PublishBudget, cfg.Timing.ClockSkew, cfg.Timing.LogSettle = tm.budget, pubSkew, tm.settle
		cfg.Timing.LogTailTTL = 0
		// The checkpoint issuer reads the log every LogInterval
		// (checkpointInterval), the repair pass runs every 2 LogInterval.
		cfg.Timing.LogInterval = checkpointInterval
		wf := NewWriteFaults(store, h)
		wf.Sent, wf.Landed = c.check.Sent, c.check.Wrote
		var pstore origin.Store = wf
		if signer != nil {
			// Checkpoints and snapshot proofs are stored as snapshot
			// objects, beside WriteFaults' faults.
			pstore = partsWriteFaults{wf, store.(origin.SnapshotParts)}
		}
		p, err := publisher.New(pstore, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	skews := []time.Duration{0, 1500 * time.Millisecond}
	for _, skew := range skews {
		clocks = append(clocks, record.NewClock(func() time.Time { return time.Now().Add(skew) }))
	}
	var pubs []*publisher.Publisher
	for i, skew := range skews {
		pubs = append(pubs, newPub(i, skew, hook))
	}
	// The repairer: a publisher process that runs the repair pass, as
	// every publisher's RunRepair does; without faults of its own.
	// With signing, it is also the one that issues checkpoints.
	repairer := newPub(0, 0, func(ctx context.Context, step Step, ch record.Change) error { return down(step) })
	repairCtx, stopRepair := context.WithCancel(context.Background())
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		repairer.RunRepair(repairCtx)
	}()
	if signer != nil {
		ckptCtx, stopCkpt := context.WithCancel(context.Background())
		ckptDone := make(chan struct{})
		go func() {
			defer close(ckptDone)
			_ = repairer.RunCheckpoints(ckptCtx)
		}()
		t.Cleanup(func() { stopCkpt(); <-ckptDone })
	}
	t.Cleanup(func() { stopRepair(); <-repairDone })
	value := func(r *rand.Rand, i int) []byte {
		n := 16 + r.IntN(900) // about half travel inline (<= 512 bytes), half as invalidations
		b := make([]byte, n)
		for j := range b {
			b[j] = byte('a' + r.IntN(26))
		}
		return b
	}
	write := func(ctx context.Context, p *publisher.Publisher, r *rand.Rand) error {
		i := r.IntN(numKeys)
		ns, key := keyOf(i)
		var rec record.Record
		var err error
		if r.IntN(100) < 15 {
			rec, err = p.Delete(ctx, ns, key)
			c.count("deletes", 1)
		} else {
			rec, err = p.Put(ctx, ns, key, value(r, i))
			c.count("puts", 1)
		}
		if err != nil {
			// Not acknowledged (an injected fault, or the settle budget
			// overrun under load): the write may or may not have reached
			// the origin, and the checker knows it if it did.
			c.count("publishes not acknowledged", 1)
			return err
		}
		c.check.Wrote(rec)
		if rec.Tombstone {
			c.check.Revoked(rec, time.Now()) // checked where RevocationBound is set
		}
		return nil
	}
	// Every key exists before the nodes start, and the namespaces have
	// snapshots to warm from.
	for i := range c.keySpace() {
		if i >= numKeys && i < numKeys+numAbsent {
			continue // never written
		}
		ns, key := keyOf(i)
		rec, err := repairer.Put(context.Background(), ns, key, value(rng, i))
		if err != nil {
			t.Fatal(err)
		}
		c.check.Wrote(rec)
	}
	if err := repairer.SnapshotAll(context.Background()); err != nil {
		t.Fatal(err)
	}

	for i := range numNodes {
		nd := &chaosNode{idx: i, name: fmt.Sprintf("node-%d", i), zone: zones[i%len(zones)], dataDir: filepath.Join(t.TempDir(), "data")}
		c.nodes = append(c.nodes, nd)
		if err := c.start(nd); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.stop(nd, false)
		}
	})
	if opt.revocations > 0 && !opt.ttlOnly {
		c.dropRevocations()
	}
	waitFor(t, 30*time.Second, "every node to see the whole cluster", func() bool {
		if opt.ttlOnly {
			return true
		}
		for _, nd := range c.nodes {
			nd.mu.RLock()
			ok := nd.n != nil && len(nd.n.Members()) == numNodes
			nd.mu.RUnlock()
			if !ok {
				return false
			}
		}
		return true
	})

	// Load: publishers and readers until the faults end (publishers) and
	// until the settled reads are done (readers).
	// Publishers are stopped between writes, never in the middle of one:
	// a write cancelled between its compare-and-swap and its log append
	// is one the publisher must repeat (origin.Publish), which these
	// publishers, unlike an outbox sync, would not.
	stopPub := make(chan struct{})
	stopPublishers := sync.OnceFunc(func() { close(stopPub) })
	t.Cleanup(stopPublishers)
	var pubWG sync.WaitGroup
	for i, p := range pubs {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			r := rand.New(rand.NewPCG(seed, uint64(10+i)))
			tick := time.NewTicker(tm.every + time.Duration(i)*20*time.Millisecond)
			defer tick.Stop()
			snaps := time.NewTicker(3 * time.Second)
			defer snaps.Stop()
			for {
				select {
				case <-stopPub:
					return
				case <-snaps.C:
					if i == 0 {
						if err := p.SnapshotAll(context.Background()); err == nil {
							c.count("snapshots", 1)
						}
					}
				case <-tick.C:
					if err := write(context.Background(), p, r); errors.Is(err, ErrCrashed) {
						c.count("publisher restarts", 1)
						p = newPub(i, skews[i], hook)
					}
				}
			}
		}()
	}
	readersDone := make(chan struct{})
	var readWG sync.WaitGroup
	for _, nd := range c.nodes {
		for j := range 2 {
			readWG.Add(1)
			go func() {
				defer readWG.Done()
				r := rand.New(rand.NewPCG(seed, uint64(100+nd.idx*2+j)))
				for {
					select {
					case <-readersDone:
						return
					default:
					}
					ns, key := keyOf(r.IntN(c.keySpace()))
					if _, ok := c.read(nd, ns, key, Phase(c.phase.Load())); !ok {
						time.Sleep(20 * time.Millisecond) // node down
						continue
					}
					time.Sleep(4 * time.Millisecond)
				}
			}()
		}
	}

	// Faults.
	faults := NewSchedule(seed, Shape{
		Nodes: numNodes, Zones: zones, Length: length, MaxDown: 2,
		MaxSkew: 400 * time.Millisecond, SlowFor: slowDelay + time.Second,
		MinGap: 700 * time.Millisecond, MaxGap: 2500 * time.Millisecond,
		MinFault: 2 * time.Second, MaxFault: 6 * time.Second,
		CacheNodes: opt.cacheNodes, CacheSlowDelay: cacheSlowDelay,
		Outage: opt.outage,
	})
	for _, f := range faults {
		t.Logf("fault %s", f)
	}
	stopRevoking := c.revoke(repairer, length)
	c.run(faults)
	stopRevoking()

	// Last heal: the schedule lifted every fault; make sure, stop writing,
	// and measure convergence.
	c.net.HealAll()
	c.net.SetDefault(base)
	c.net.SetFilter(nil)
	faulty.SetMode(Healthy)
	if c.tier != nil {
		c.tier.healAll()
	}
	for _, nd := range c.nodes {
		nd.skew.Store(0)
		nd.mu.RLock()
		down := nd.n == nil
		nd.mu.RUnlock()
		if down {
			if err := c.start(nd); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopPublishers()
	pubWG.Wait()
	// Let the repair pass finish what crashed publishers left, then stop
	// it: a restamp after the origin's latest versions are read below
	// would be a newer version than the one convergence is checked against.
	if !pollUntil(60*time.Second, func() bool { return repairsDone(store) }) {
		n, err := repairer.Repair(context.Background())
		notes, _ := store.(origin.Pending).ListPending(context.Background(), 0)
		t.Fatalf("the repair pass left notes of writes that landed: %+v (one more pass: %d repaired, %v)", notes, n, err)
	}
	stopRepair()
	<-repairDone
	healed := time.Now()
	c.phase.Store(int32(Converging))
	latest := make(map[string]record.Version)
	for i := range c.keySpace() {
		ns, key := keyOf(i)
		rec, err := store.Get(context.Background(), ns, key, 0)
		if err != nil && !errors.Is(err, origin.ErrNotFound) {
			t.Fatal(err)
		}
		latest[id(ns, key)] = rec.Version // 0 for an absent key
	}
	bound := tm.bound().Round(time.Millisecond)
	t.Logf("convergence bound %s (margin %s stretched by the load factor %.1f)", bound, convergenceMargin, testscale.Factor())
	convergence, lagging, converged := c.converge(healed, latest, bound+10*time.Second)
	if lagging != "" {
		t.Logf("converged %s after the last heal; the last to lag: %s", convergence.Round(time.Millisecond), lagging)
	}
	switch {
	case !converged:
		c.check.Violate(KindConvergence, "not converged %s after the last heal: %s", time.Since(healed).Round(time.Millisecond), lagging)
	case convergence > bound:
		c.check.Violate(KindConvergence, "converged %s after the last heal, bound %s (last to lag: %s)", convergence.Round(time.Millisecond), bound, lagging)
	}
	c.phase.Store(int32(Settled))
	time.Sleep(settleReads) // readers keep reading: every read now must be the latest
	close(readersDone)
	readWG.Wait()

	originReads, originFaulted := faulty.Counts()
	ns := c.net.Stats()
	c.count("origin reads by nodes", int(originReads))
	c.count("origin reads faulted", int(originFaulted))
	c.count("gossip packets", int(ns.Packets))
	c.count("gossip packets lost", int(ns.Lost))
	c.count("gossip packets cut", int(ns.Cut))
	if c.tier != nil {
		for k, n := range c.tier.stats() {
			c.count(k, n)
		}
	}
	if extra != nil {
		for k, n := range extra() {
			c.count(k, n)
		}
	}
	sum := c.check.Check(latest)
	c.opsMu.Lock()
	table := Table(seed, originName, faults, c.ops, sum, convergence, bound)
	c.opsMu.Unlock()
	fmt.Println(table) // visible without -v too: the figures RELIABILITY.md quotes
	for _, v := range sum.Listed {
		t.Errorf("violation: %s", v)
	}
	if sum.Violations > 0 {
		t.Fatalf("%d violations with seed %d; replay with: %s", sum.Violations, seed, replay)
	}
	if sum.HeldReads == 0 || sum.Served == 0 || len(faults) == 0 {
		t.Fatalf("the run checked nothing: %d held reads, %d served, %d faults", sum.HeldReads, sum.Served, len(faults))
	}
	if opt.failClosed > 0 && opt.outage > opt.failClosed+outageSlack && (sum.MustRefuse == 0 || sum.Refused == 0) {
		t.Fatalf("the run did not exercise failing closed: %d reads past D in the outage, %d refused", sum.MustRefuse, sum.Refused)
	}
	if opt.revocations > 0 && sum.PastRevocation == 0 {
		t.Fatalf("the run did not exercise revocations: no read served past the bound of a tombstone")
	}
	c.opsMu.Lock()
	dropped := c.ops[droppedOnWire]
	c.opsMu.Unlock()
	if opt.revocations > 0 && !opt.ttlOnly && dropped == 0 {
		t.Fatalf("the network dropped no tombstone of keys on its way to node-0: the filter recognised none")
	}
}

// repairsDone reports whether every pending note left in store is of a write
// that never landed (kept for a late request, never repaired).
func repairsDone(store origin.Store) bool {
	pend, ok := store.(origin.Pending)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	notes, err := pend.ListPending(ctx, 0)
	if err != nil {
		return false
	}
	for _, n := range notes {
		cur, err := store.Get(ctx, n.Namespace, n.Key, 0)
		if err == nil && cur.Version >= n.Version {
			return false
		}
	}
	return true
}

// converge reads every key on every node, each node in its own goroutine,
// pass after pass, until a whole pass serves the origin's latest version
// of every key, or until timeout. A node converged when the last of its
// keys began to serve the latest version for good: the start of the first
// read of that key that was current, after its last read that was not.
// It returns how long after healed the last node converged, a description
// of the last outdated read seen, and whether every node converged.
func (c *cluster) converge(healed time.Time, latest map[string]record.Version, timeout time.Duration) (time.Duration, string, bool) {
	deadline := healed.Add(timeout)
	var (
		mu      sync.Mutex // guards the three below
		lastLag time.Time
		lagging string
		doneAt  time.Time
		allDone = true
		wg      sync.WaitGroup
	)
	for _, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			firstOK := make(map[string]time.Time)
			for time.Now().Before(deadline) {
				clean := true
				for i := range c.keySpace() {
					ns, key := keyOf(i)
					k := id(ns, key)
					r, ok := c.read(nd, ns, key, Converging)
					if !ok {
						r.End = time.Now()
						r.Err = errors.New("node down")
					}
					if !ok || r.Outcome == Failed || r.Version != latest[k] {
						clean = false
						delete(firstOK, k)
						mu.Lock()
						if r.End.After(lastLag) {
							lastLag = r.End
							lagging = fmt.Sprintf("%s served %s@%s (%v) %s after the heal; the origin holds %s",
								nd.name, k, r.Version, r.Err, r.End.Sub(healed).Round(time.Millisecond), latest[k])
						}
						mu.Unlock()
						continue
					}
					if _, seen := firstOK[k]; !seen {
						// The node served the latest version at some
						// instant of the read; its start, because a
						// read may be slow for reasons of this harness
						// (a loaded machine) rather than of the node.
						firstOK[k] = r.Start
					}
				}
				if clean {
					mu.Lock()
					for _, at := range firstOK {
						if at.After(doneAt) {
							doneAt = at
						}
					}
					mu.Unlock()
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			allDone = false
			mu.Unlock()
		}()
	}
	wg.Wait()
	return max(doneAt.Sub(healed), 0), lagging, allDone
}

// run applies the schedule in real time: each fault at its start, lifted
// at its end.
func (c *cluster) run(faults []Fault) {
	type action struct {
		at    time.Duration
		f     Fault
		start bool
	}
	var acts []action
	for _, f := range faults {
		acts = append(acts, action{f.At, f, true}, action{f.End(), f, false})
	}
	// Stable by time; a fault's end before another's start at the same time.
	for i := 1; i < len(acts); i++ {
		for j := i; j > 0 && (acts[j].at < acts[j-1].at || acts[j].at == acts[j-1].at && !acts[j].start && acts[j-1].start); j-- {
			acts[j], acts[j-1] = acts[j-1], acts[j]
		}
	}
	t0 := time.Now()
	var outageAt time.Time // when the running Outage began
	for _, a := range acts {
		if d := time.Until(t0.Add(a.at)); d > 0 {
			time.Sleep(d) // the schedule is in real time
		}
		f := a.f
		switch f.Kind {
		case Stop, Crash:
			nd := c.nodes[f.Node]
			if a.start {
				c.stop(nd, f.Kind == Crash)
				c.count(map[FaultKind]string{Stop: "node stops", Crash: "node crashes"}[f.Kind], 1)
			} else if err := c.start(nd); err != nil {
				c.t.Errorf("restart %s: %v", nd.name, err)
			} else {
				c.count("node restarts", 1)
			}
		case Partition:
			if a.start {
				c.net.Cut(f.Zones[0], f.Zones[1])
			} else {
				c.net.Heal(f.Zones[0], f.Zones[1])
			}
		case Lossy:
			if a.start {
				c.net.SetDefault(netsim.Link{Delay: f.Delay, Jitter: f.Delay, Loss: f.Loss})
			} else {
				c.net.SetDefault(netsim.Link{Delay: 2 * time.Millisecond, Jitter: 2 * time.Millisecond})
			}
		case Outage:
			if a.start {
				c.pubDown.Store(true)
				c.faulty.SetMode(Down)
				outageAt = time.Now()
			} else {
				if end := time.Now(); c.failClosed > 0 && f.Duration > c.failClosed+outageSlack {
					// No proof reached any node after outageAt (+ the
					// slack): every read of keys past D must be refused,
					// until the origin answers again.
					c.check.MustRefuse("keys", outageAt.Add(c.failClosed+outageSlack), end)
				}
				c.faulty.SetMode(Healthy)
				c.pubDown.Store(false)
			}
		case OriginDown, OriginSlow, OriginCorrupt:
			if a.start {
				c.faulty.SetMode(map[FaultKind]Mode{OriginDown: Down, OriginSlow: Slow, OriginCorrupt: Corrupt}[f.Kind])
			} else {
				c.faulty.SetMode(Healthy)
			}
		case Skew:
			if a.start {
				c.nodes[f.Node].skew.Store(int64(f.Skew))
			} else {
				c.nodes[f.Node].skew.Store(0)
			}
		case CacheDown:
			if a.start {
				c.tier.kill(f.Node)
				c.count("cache node kills", 1)
			} else if err := c.tier.restart(f.Node); err != nil {
				c.t.Errorf("restart cache node %d: %v", f.Node, err)
			} else {
				c.count("cache node restarts", 1)
			}
		case CacheSlow:
			if a.start {
				c.tier.setSlow(f.Node, f.Delay)
			} else {
				c.tier.setSlow(f.Node, 0)
			}
		}
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !pollUntil(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// pollUntil polls cond every 50 ms until it holds (true) or timeout passes
// (false).
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
