package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/gossiptune"
	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/replica"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// ns is the namespace the bench writes and reads.
const ns = "bench"

// tierToken guards writes to the bench's cache nodes.
const tierToken = "bench-token"

// deployment is one option's simulated fleet: sentinels and cache nodes in
// every region, a publisher in the origin's region.
type deployment struct {
	cfg     *Config
	opt     Option
	net     *network
	stores  storeFactory
	dir     string
	regions []string

	counters map[string]*counter // by client role

	slots     []*slot
	tiers     []*tierNode
	tierURLs  [][]string // by region
	publisher *publisher.Publisher
	direct    origin.Store // the origin without delay or counting, for setup and checks

	// replicas[r] opens region r's replica (nil: the region reads the
	// primary); replicators feed them until close.
	replicas     []storeFactory
	replicators  []*replica.Replicator
	stopReplicas context.CancelFunc
	replicasDone sync.WaitGroup
	signer       *sign.Signer   // Config.Signed: the publishers sign with it
	verifier     *sign.Verifier // Config.Signed: every node verifies with it
}

// benchTailTTL is how long a cache node's origin log read answers the log
// polls of its region (cachenode.Config.Timing.LogTailTTL); it fits in the
// gossip options' 1 s settle window with the publisher's 750 ms budget and
// 100 ms skew.
const benchTailTTL = 100 * time.Millisecond

// slot is one sentinel position; a restart replaces its node.
type slot struct {
	region int
	index  int
	dir    string

	mu   sync.RWMutex // guards node and gen; held for writing while restarting
	node *dataplane.Node
	gen  int
}

// tierNode is a cache node on loopback.
type tierNode struct {
	srv      *cachenode.Server
	http     *http.Server
	ln       net.Listener
	gossip   *gossip.Node
	follower *follow.Follower
}

// timing is the timing of every publisher and node of the deployment: a
// write in the log within 750 ms, clocks within 100 ms, the cache nodes'
// shared log read (benchTailTTL) and with replicas the replication lag, the
// replicator's pass and a few retries of lost copies, all inside the
// nodes' settle window (Config.logSettle); the log kept whole.
func (d *deployment) timing() origin.Timing {
	t := origin.DefaultTiming()
	t.PublishBudget, t.ClockSkew = 750*time.Millisecond, 100*time.Millisecond
	t.LogInterval, t.LogSettle, t.LogTailTTL, t.LogRetention = d.cfg.LogInterval, d.cfg.logSettle(), benchTailTTL, 0
	if d.cfg.replicas() {
		t.ReplicaLag = d.cfg.ReplicaLag + 4*replicaInterval
	}
	return t
}

// followConfig is how every cache node of the deployment follows the
// change log: every option's nodes do, gossip or not.
func (d *deployment) followConfig() follow.Config {
	fc := follow.DefaultConfig()
	tm := d.timing()
	fc.Interval, fc.Settle = tm.LogInterval, tm.LogSettle
	fc.Logger = discard
	if d.verifier != nil {
		fc.Verifier = d.verifier
	}
	return fc
}

// originStore returns a counted store that reaches the origin from region
// r over the simulated network.
//
// With replicas, sentinels and cache nodes of a region other than the
// first reach the region's replica instead, over the LAN.
func (d *deployment) originStore(ctx context.Context, r int, role string) (origin.Store, error) {
	if r < len(d.replicas) && d.replicas[r] != nil && role != "publisher" {
		st, err := d.replicas[r](ctx, d.net.client(d.regions[r], d.regions[r], true))
		if err != nil {
			return nil, err
		}
		return countingStore{Store: st, c: d.counters[role]}, nil
	}
	st, err := d.stores(ctx, d.net.client(d.regions[r], d.regions[0], true))
	if err != nil {
		return nil, err
	}
	return countingStore{Store: st, c: d.counters[role]}, nil
}

func (d *deployment) cacheOptions(fresh time.Duration) cache.Config {
	o := cache.DefaultConfig()
	o.Default = cache.Window{Fresh: fresh, Stale: 24 * time.Hour}
	o.NegativeTTL = fresh
	o.RefreshTimeout = d.cfg.ReadTimeout + time.Second
	return o
}

func (d *deployment) fresh() time.Duration {
	if d.opt.Gossip {
		return d.cfg.GossipTTL
	}
	return d.cfg.TTL
}

// gossipConfig returns the gossip configuration of a member of region r,
// on a netsim transport of that region.
func (d *deployment) gossipConfig(name string, r int) (*gossip.Config, error) {
	tr, err := d.net.sim.Listen("127.0.0.1", 0, d.regions[r], nil)
	if err != nil {
		return nil, fmt.Errorf("gossip transport: %w", err)
	}
	g := gossip.DefaultLANConfig()
	g.Insecure = true // simulated regions on loopback
	g.Name, g.Region = name, d.regions[r]
	g.BindAddr, g.Transport = "127.0.0.1:0", tr
	g.InlineValueMax = 0
	if d.opt.Inline {
		g.InlineValueMax = 512
	}
	// The simulated network is no preset's: the first push waits twice
	// its farthest round trip, lost members are retried as on one machine.
	g.Tune(func(t *gossiptune.Tuning) {
		t.PushAckTimeout = max(2*d.cfg.maxRTT(), 20*time.Millisecond)
		t.ReconnectInterval = 2 * time.Second
	})
	g.Logger = discard
	if d.verifier != nil {
		g.Verifier = d.verifier
	}
	if len(d.slots) > 0 && d.slots[0].node != nil {
		g.Seeds = []string{d.slots[0].node.GossipAddr()}
	}
	return &g, nil
}

// deploy starts the fleet of one option on a fresh bucket or table and
// loads cfg.Keys keys into it. latest receives each key's version.
func deploy(ctx context.Context, cfg *Config, opt Option, nw *network, b *Backends, dir string, latest []versionCell, tl *timeline) (_ *deployment, err error) {
	d := &deployment{
		cfg: cfg, opt: opt, net: nw, dir: dir, regions: nw.regions,
		counters: map[string]*counter{},
	}
	if cfg.Signed {
		_, priv, err := sign.GenerateKey()
		if err != nil {
			return nil, err
		}
		if d.signer, err = sign.NewSigner(priv); err != nil {
			return nil, err
		}
		if d.verifier, err = sign.NewVerifier(d.signer.Public()); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			d.close() // what started so far
		}
	}()
	for _, role := range []string{"sentinel", "cachenode", "publisher", "tier"} {
		d.counters[role] = &counter{}
	}
	d.counters["sentinel"].timeline = tl
	d.counters["cachenode"].timeline = tl
	name := fmt.Sprintf("dpbench-%d-%s-%d", cfg.Seed, strings.ToLower(strings.ReplaceAll(opt.ID, "+", "-")), time.Now().UnixNano()%1e9)
	if d.stores, err = b.factory(ctx, opt, name); err != nil {
		return nil, err
	}
	if d.direct, err = d.stores(ctx, nil); err != nil {
		return nil, err
	}
	clock := record.NewClock(nil)
	if err := d.preload(ctx, clock, latest); err != nil {
		return nil, fmt.Errorf("load %d keys: %w", cfg.Keys, err)
	}
	if cfg.replicas() {
		if err := d.startReplicas(ctx, b, opt, name); err != nil {
			return nil, fmt.Errorf("replicas: %w", err)
		}
	}

	if opt.Tier {
		d.tierURLs = make([][]string, cfg.Regions)
		for r := range cfg.Regions {
			for i := range cfg.CacheNodes {
				t, err := d.startTier(ctx, r, i)
				if err != nil {
					return nil, fmt.Errorf("cache node %s-%d: %w", d.regions[r], i, err)
				}
				d.tiers = append(d.tiers, t)
				d.tierURLs[r] = append(d.tierURLs[r], "http://"+t.ln.Addr().String())
			}
		}
	}
	for r := range cfg.Regions {
		for i := range cfg.Sentinels {
			s := &slot{region: r, index: i, dir: filepath.Join(dir, fmt.Sprintf("sentinel-%s-%d", d.regions[r], i))}
			node, err := d.openNode(ctx, s)
			if err != nil {
				return nil, fmt.Errorf("sentinel %s-%d: %w", d.regions[r], i, err)
			}
			s.node = node
			d.slots = append(d.slots, s)
		}
	}
	// Cache nodes of a gossip option join through the first sentinel.
	if opt.Tier && opt.Gossip {
		for i, t := range d.tiers {
			r := i / cfg.CacheNodes
			g, err := d.gossipConfig(fmt.Sprintf("cachenode-%s-%d", d.regions[r], i%cfg.CacheNodes), r)
			if err != nil {
				return nil, err
			}
			st, err := d.originStore(ctx, r, "cachenode")
			if err != nil {
				return nil, err
			}
			fc := d.followConfig()
			if t.follower, err = follow.New(fc, t.srv, st); err != nil {
				return nil, fmt.Errorf("cache node log follower: %w", err)
			}
			if t.gossip, err = gossip.New(*g, t.srv, t.follower); err != nil {
				return nil, fmt.Errorf("cache node gossip: %w", err)
			}
		}
	}

	pstore, err := d.originStore(ctx, 0, "publisher")
	if err != nil {
		return nil, err
	}
	pcfg := publisher.DefaultConfig()
	pcfg.Clock = clock
	pcfg.Logger = discard
	// The nodes settle 1 s behind the log (newNode), and the replication
	// lag more with replicas: the budget fits in it.
	pcfg.Timing = d.timing()
	pcfg.Signer = d.signer
	if opt.Gossip {
		pcfg.Notifier = d.slots[0].node
	}
	if d.publisher, err = publisher.New(pstore, pcfg); err != nil {
		return nil, err
	}
	if opt.Gossip {
		if err := d.waitMembers(ctx, 30*time.Second); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// preload writes every key once, and a snapshot, without delay or
// counting.
func (d *deployment) preload(ctx context.Context, clock *record.Clock, latest []versionCell) error {
	pcfg := publisher.DefaultConfig()
	pcfg.Clock = clock
	pcfg.Logger = discard
	pcfg.Signer = d.signer
	pcfg.Timing = d.timing()
	p, err := publisher.New(d.direct, pcfg)
	if err != nil {
		return err
	}
	gen := newValueGen(d.cfg.Seed, d.cfg.ValueSizes)
	values := make([][]byte, d.cfg.Keys)
	for i := range values {
		values[i] = gen.value(i, 0)
	}
	work := make(chan int)
	errc := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rec, err := p.Put(ctx, ns, keyName(i), values[i])
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					continue
				}
				latest[i].raise(rec.Version)
			}
		}()
	}
	for i := range d.cfg.Keys {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	_, err = p.Snapshot(ctx, ns)
	return err
}

func (d *deployment) startTier(ctx context.Context, r, i int) (*tierNode, error) {
	st, err := d.originStore(ctx, r, "cachenode")
	if err != nil {
		return nil, err
	}
	ccfg := cachenode.DefaultConfig()
	ccfg.Origin = st
	ccfg.Cache = d.cacheOptions(d.fresh())
	if d.verifier != nil {
		ccfg.Verifier = d.verifier
	}
	// The TTL cache nodes (options 3 and 4B) serve stale while they
	// revalidate, like the sentinels: a sentinel's read asks with
	// "Cache-Control: max-age=0" (httporigin), so a node whose copy is past
	// its fresh window reads the origin before answering it
	// (cache.GetRevalidated), and staleness stays bounded by the two TTLs.
	ccfg.WriteToken = tierToken
	ccfg.Timing = d.timing() // its LogTailTTL is benchTailTTL
	ccfg.Logger = discard
	srv, err := cachenode.New(ccfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	return &tierNode{srv: srv, http: hs, ln: ln}, nil
}

// openNode opens the sentinel of slot s: its origin is the real one over
// the WAN, or its region's cache nodes (with the origin as fallback).
func (d *deployment) openNode(ctx context.Context, s *slot) (*dataplane.Node, error) {
	st, err := d.originStore(ctx, s.region, "sentinel")
	if err != nil {
		return nil, err
	}
	if d.opt.Tier {
		h, err := httporigin.New(httporigin.Config{
			Nodes:      d.tierURLs[s.region],
			Fallback:   st,
			Token:      tierToken,
			HTTPClient: d.net.client(d.regions[s.region], d.regions[s.region], false),
			Timeout:    d.cfg.ReadTimeout + 2*time.Second,
			Logger:     discard,
		})
		if err != nil {
			return nil, err
		}
		st = countingStore{Store: h, c: d.counters["tier"]}
	}
	ncfg := dataplane.Config{
		Origin:                st,
		Cache:                 d.cacheOptions(d.fresh()),
		Namespaces:            []string{ns},
		DataDir:               s.dir,
		LocalSnapshotInterval: 5 * time.Second,
		WarmTimeout:           10 * time.Second,
		Logger:                discard,
	}
	ncfg.Timing = d.timing()
	if d.verifier != nil {
		ncfg.Verifier = d.verifier
	}
	if d.opt.Gossip {
		g, err := d.gossipConfig(fmt.Sprintf("sentinel-%s-%d-g%d", d.regions[s.region], s.index, s.gen), s.region)
		if err != nil {
			return nil, err
		}
		ncfg.Gossip = &g.Cluster
	}
	return dataplane.Open(ctx, ncfg)
}

// restart closes the node of s and opens a new one in its place (under a
// new gossip name and port, as a replaced machine would come back).
func (d *deployment) restart(ctx context.Context, s *slot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.node.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	s.gen++
	node, err := d.openNode(ctx, s)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	s.node = node
	return nil
}

// waitMembers waits until every gossip member sees all the others.
func (d *deployment) waitMembers(ctx context.Context, timeout time.Duration) error {
	want := len(d.slots)
	if d.opt.Tier {
		want += len(d.tiers)
	}
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, s := range d.slots {
			if len(s.node.Members()) < want {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, s := range d.slots {
				seen = append(seen, fmt.Sprintf("%s sees %d", s.node.GossipAddr(), len(s.node.Members())))
			}
			return fmt.Errorf("gossip: %d members did not all see each other within %s (%s)", want, timeout, strings.Join(seen, ", "))
		}
		if err := tick.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// eachSlot runs f on every slot at once, each in a goroutine of its own,
// and returns when every f has returned. f takes the slot's lock itself.
func (d *deployment) eachSlot(f func(i int, s *slot)) {
	var wg sync.WaitGroup
	for i, s := range d.slots {
		wg.Go(func() { f(i, s) })
	}
	wg.Wait()
}

// close stops everything deploy started.
func (d *deployment) close() {
	d.eachSlot(func(_ int, s *slot) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.node != nil {
			_ = s.node.Close()
		}
	})
	if d.stopReplicas != nil {
		d.stopReplicas()
		d.replicasDone.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, t := range d.tiers {
		if t.gossip != nil {
			_ = t.gossip.Close()
		}
		if t.follower != nil {
			_ = t.follower.Close()
		}
		_ = t.http.Shutdown(ctx)
		t.srv.Close()
	}
}

// counts returns the counters' current values by role.
func (d *deployment) counts() map[string]OriginCounts {
	out := make(map[string]OriginCounts, len(d.counters))
	for role, c := range d.counters {
		out[role] = c.snapshot()
	}
	return out
}

// startReplicas creates a replica bucket or table for every region but the
// first, copies the preloaded keys, log and snapshot into it (as a replica
// set up before the run would hold them), and starts a replicator from the
// primary with the configured lag and loss.
func (d *deployment) startReplicas(ctx context.Context, b *Backends, opt Option, name string) error {
	head, err := logHead(ctx, d.direct)
	if err != nil {
		return err
	}
	snap, err := d.direct.GetSnapshot(ctx, ns)
	if err != nil {
		return fmt.Errorf("primary snapshot: %w", err)
	}
	rctx, stop := context.WithCancel(context.Background())
	d.stopReplicas = stop
	d.replicas = make([]storeFactory, d.cfg.Regions)
	for r := 1; r < d.cfg.Regions; r++ {
		f, err := b.factory(ctx, opt, fmt.Sprintf("%s-r%d", name, r))
		if err != nil {
			return err
		}
		rep, err := f(ctx, nil)
		if err != nil {
			return err
		}
		// The initial copy: every change so far, at once.
		load, err := replica.New(d.direct, rep, replica.Config{Interval: replicaInterval})
		if err != nil {
			return err
		}
		if _, err := load.Pass(ctx); err != nil {
			return fmt.Errorf("initial copy to %s: %w", d.regions[r], err)
		}
		if err := rep.PutSnapshot(ctx, snap); err != nil {
			return fmt.Errorf("snapshot to %s: %w", d.regions[r], err)
		}
		rp, err := replica.New(d.direct, rep, replica.Config{
			Lag: d.cfg.ReplicaLag, Loss: d.cfg.ReplicaLoss, Interval: replicaInterval,
			Seed: d.cfg.Seed + uint64(r), After: head,
		})
		if err != nil {
			return err
		}
		d.replicas[r] = f
		d.replicators = append(d.replicators, rp)
		d.replicasDone.Add(1)
		go func() { defer d.replicasDone.Done(); _ = rp.Run(rctx) }()
	}
	return nil
}

// logHead returns the newest version in s's change log (0 when empty).
func logHead(ctx context.Context, s origin.Store) (record.Version, error) {
	cs, err := s.ReadLog(ctx, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("read primary log: %w", err)
	}
	var v record.Version
	for _, c := range cs {
		v = max(v, c.Version)
	}
	return v, nil
}

// replicaCounts sums the replicators' copied and lost counts.
func (d *deployment) replicaCounts() (copied, lost int64) {
	for _, r := range d.replicators {
		c, l := r.Counts()
		copied += c
		lost += l
	}
	return copied, lost
}
