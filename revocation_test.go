package dataplane_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
	"github.com/dataplane/dataplane/sign"
)

// revocationRuns, when set, makes TestRevocationTime a measurement:
// that many runs per scenario on a fleet of revocationNodes (BENCHMARKS.md
// "Revocation time"). Unset, the test makes one run per scenario on 3
// nodes and asserts the fail-closed bound.
var (
	revocationRuns  = flag.Int("revocation.runs", 0, "TestRevocationTime: runs per scenario (0: one run on 3 nodes, as a test)")
	revocationNodes = flag.Int("revocation.nodes", 5, "TestRevocationTime: verifying nodes, with -revocation.runs")
	revocationD     = flag.Duration("revocation.d", 2*time.Second, "TestRevocationTime: D, keys' FailClosedAfter")
	revocationEvery = flag.Duration("revocation.follow", 50*time.Millisecond, "TestRevocationTime: the log follower's interval, with -revocation.runs")
)

// revocationSkew is the clock skew the bound allows. The fleet and the
// publisher share one host clock, so the true skew is 0; this is the
// publisher's configured ClockSkew, kept as headroom for the scheduling
// of the failing-flag ticker on a loaded machine.
const revocationSkew = 100 * time.Millisecond

// revocationTiming is the timing of these tests' publishers and nodes: a
// write in the log within 1 s, clocks within revocationSkew, the log read
// every 50 ms and settled 1.2 s behind, nothing trimmed. It states no
// CheckpointLifetime: the publishers' (20 s, against a D of 2 s) is only
// sound because these tests write all the time, so checkpoints are renewed
// every checkpoint interval; a namespace that stopped changing would be
// proven only at half the lifetime, which Config.Validate refuses.
func revocationTiming() origin.Timing {
	return origin.Timing{
		PublishBudget: time.Second, ClockSkew: revocationSkew,
		LogInterval: 50 * time.Millisecond, LogSettle: 1200 * time.Millisecond,
		SnapshotLag: origin.DefaultSnapshotLag,
	}
}

// revocationTick is the node's failing-flag tick (staleness.go
// failingTick): a namespace fails closed at most this long after D (on an
// idle machine).
const revocationTick = 50 * time.Millisecond

// pushSwitch is the publisher's Notifier: it hands changes and
// checkpoints to a gossip node, except changes of the key named by drop
// (a lost push).
type pushSwitch struct {
	node atomic.Pointer[dataplane.Node]
	drop atomic.Pointer[string]
}

func (p *pushSwitch) Publish(ctx context.Context, rec record.Record) error {
	if k := p.drop.Load(); k != nil && *k == rec.Key {
		return nil
	}
	if n := p.node.Load(); n != nil {
		return n.Publish(ctx, rec)
	}
	return nil
}

func (p *pushSwitch) PushCheckpoint(raw []byte) error {
	if n := p.node.Load(); n != nil {
		return n.PushCheckpoint(raw)
	}
	return nil
}

// revocationScenario is one way a delete travels (or does not).
type revocationScenario struct {
	name     string
	dropPush bool // the tombstone is written to the origin and log but not handed to gossip
	cut      bool // the origin and log are unreachable for the nodes
}

var revocationScenarios = []revocationScenario{
	{name: "gossip up"},
	{name: "push lost, log up", dropPush: true},
	{name: "push lost, log down", dropPush: true, cut: true},
}

// revocationRun is one measured revocation.
type revocationRun struct {
	last, first  time.Duration   // from the delete's acknowledgement to the last (first) node refusing
	notFound     int             // nodes whose first refusal was "not found"
	unavailable  int             // ... "unavailable" (failing closed)
	served       int             // Gets answered with the revoked key after the acknowledgement
	matchAge     float64         // the oldest node's checkpoint match age at the acknowledgement, seconds
	matchesAfter float64         // checkpoint matches of the last node between the acknowledgement and its refusal
	perNode      []time.Duration // each node's refusal, from the acknowledgement
}

// TestRevocationTime measures issue 23's revocation time: from a delete's
// acknowledgement to the last node of a verifying fleet (real memberlist
// nodes on loopback, keys failing closed after D) refusing the deleted
// key, with the delete pushed by gossip, with the push lost and the log
// up, and with both down while other signed changes keep flowing by
// gossip. In the last case no node may serve the key later than
// D + clock skew (+ the failing-flag tick) after the acknowledgement: its
// last checkpoint match predates the delete.
//
//	go test -run '^TestRevocationTime$' -count=1 -v . -revocation.runs=5
func TestRevocationTime(t *testing.T) {
	if testing.Short() && *revocationRuns == 0 {
		t.Skip("a fleet of nodes and D per run")
	}
	runs, nodesN, d := *revocationRuns, *revocationNodes, *revocationD
	if runs == 0 {
		runs, nodesN, d = 1, 3, 2*time.Second
	}
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	push := &pushSwitch{}
	ckInterval := 200 * time.Millisecond
	pub := notifyingPublisher(t, raw, signer, push, ckInterval)
	warm, err := pub.Put(ctx, "keys", "warm", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	tm := revocationTiming()
	if *revocationRuns > 0 {
		tm.LogInterval = *revocationEvery
	}
	var nodes []*dataplane.Node
	var regs []*prometheus.Registry
	var seeds []string
	for i := range nodesN {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name, g.Region, g.Seeds = fmt.Sprintf("n%d", i), "local", seeds
		reg := prometheus.NewRegistry()
		n, err := dataplane.Open(ctx, dataplane.Config{
			Origin: store, Gossip: &g.Cluster, Timing: tm, Verifier: verifierOf(t, signer),
			Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: d}},
			Logger:    quiet(), Registerer: reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes, regs = append(nodes, n), append(regs, reg)
		seeds = []string{nodes[0].GossipAddr()}
	}
	push.node.Store(nodes[0])
	seen := func() []int {
		var c []int
		for _, n := range nodes {
			c = append(c, len(n.Members()))
		}
		return c
	}
	if !testkit.Poll(30*time.Second, func() bool { return slices.Min(seen()) == nodesN }) {
		t.Fatalf("the fleet did not form: members seen per node %v, want %d", seen(), nodesN)
	}
	latest, stop := notifiedFlow(t, pub)
	defer stop()
	_ = warm

	load0 := loadavg()
	results := make(map[string][]revocationRun)
	for i := range runs {
		for _, sc := range revocationScenarios {
			r := revokeOnce(t, ctx, pub, store, push, nodes, regs, latest, sc, fmt.Sprintf("revoked-%d-%s", i, strings.ReplaceAll(sc.name, " ", "")), d)
			results[sc.name] = append(results[sc.name], r)
			t.Logf("run %d, %s: last node refused after %v (first %v); not found %d, unavailable %d; served %d times after the ack; match age at the ack %.3fs; matches after the ack %v; per node %v",
				i, sc.name, r.last.Round(time.Millisecond), r.first.Round(time.Millisecond), r.notFound, r.unavailable, r.served, r.matchAge, r.matchesAfter, r.perNode)
		}
	}
	t.Logf("%d nodes, D %v, follower interval %v settle %v, checkpoints every %v while keys change (a change every 50 ms), %d runs; load average %s -> %s",
		nodesN, d, tm.LogInterval, tm.LogSettle, ckInterval, runs, load0, loadavg())
	t.Logf("| scenario | last node refusing, p50 | max | first node, p50 | refusals (not found / unavailable) |")
	for _, sc := range revocationScenarios {
		rs := results[sc.name]
		var last, first []time.Duration
		nf, un := 0, 0
		for _, r := range rs {
			last, first = append(last, r.last), append(first, r.first)
			nf, un = nf+r.notFound, un+r.unavailable
		}
		slices.Sort(last)
		slices.Sort(first)
		t.Logf("| %s | %v | %v | %v | %d / %d |", sc.name, median(last).Round(time.Millisecond),
			last[len(last)-1].Round(time.Millisecond), median(first).Round(time.Millisecond), nf, un)
	}
}

// revokeOnce publishes key, waits until every node serves it, deletes it
// under sc and returns how long the fleet took to refuse it.
func revokeOnce(t *testing.T, ctx context.Context, pub *publisher.Publisher, store *partsOutage, push *pushSwitch,
	nodes []*dataplane.Node, regs []*prometheus.Registry, latest func() record.Record, sc revocationScenario, key string, d time.Duration) revocationRun {
	t.Helper()
	rec, err := pub.Put(ctx, "keys", key, []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(4*d+10*time.Second), "every node serving "+key, func() bool {
		for _, n := range nodes {
			if v, err := n.Get(ctx, "keys", key); err != nil || v.Version != rec.Version {
				return false
			}
		}
		return true
	})
	if sc.dropPush {
		push.drop.Store(&key)
	}
	if sc.cut {
		store.down.Store(true)
	}
	defer func() { push.drop.Store(nil); store.down.Store(false) }()
	cut := latest()
	var out revocationRun
	del, err := pub.Delete(ctx, "keys", key)
	if err != nil {
		t.Fatal(err)
	}
	ack := time.Now()
	for _, reg := range regs {
		out.matchAge = max(out.matchAge, gauge(t, reg, "dataplane_node_checkpoint_match_age_seconds"))
	}
	matches0 := counter(t, regs[len(regs)-1], "dataplane_node_checkpoint_matches_total", "")
	// The tick is stretched by the machine's load (testscale): on a busy
	// machine the goroutine that sets the failing flag runs late.
	bound := d + revocationSkew + testscale.Duration(revocationTick)
	refused := make([]time.Duration, len(nodes))
	late := make([]bool, len(nodes))
	deadline := ack.Add(testscale.Duration(4*d + 10*time.Second))
	for pending := len(nodes); pending > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d nodes still serve %s (deleted at %s) %v after the acknowledgement", sc.name, pending, len(nodes), key, del.Version, time.Since(ack))
		}
		for i, n := range nodes {
			if refused[i] != 0 {
				continue
			}
			start := time.Now()
			_, err := n.Get(ctx, "keys", key)
			switch {
			case err == nil:
				out.served++
				if sc.cut && start.Sub(ack) > bound && !late[i] {
					late[i] = true // reported once per node
					t.Errorf("%s: node %d served the revoked key %v after the delete's acknowledgement (bound D + skew + tick = %v)", sc.name, i, start.Sub(ack), bound)
				}
				continue
			case errors.Is(err, dataplane.ErrNotFound):
				out.notFound++
			case errors.Is(err, dataplane.ErrUnavailable):
				out.unavailable++
			default:
				t.Fatalf("%s: node %d: %v", sc.name, i, err)
			}
			refused[i] = max(time.Since(ack), time.Nanosecond)
			pending--
		}
		time.Sleep(2 * time.Millisecond) // the poll period: a node's refusal is seen within it
	}
	out.first, out.last = slices.Min(refused), slices.Max(refused)
	out.perNode = refused
	out.matchesAfter = counter(t, regs[len(regs)-1], "dataplane_node_checkpoint_matches_total", "") - matches0
	if sc.cut {
		if out.unavailable != len(nodes) {
			t.Errorf("%s: %d of %d nodes refused by failing closed; the others cannot have heard of the delete", sc.name, out.unavailable, len(nodes))
		}
		// Other signed changes reached the nodes after the cut: the
		// fail-closed did not come from silence.
		l := latest()
		eventually(t, testscale.Duration(5*time.Second), "a signed change newer than the cut reaching every node", func() bool {
			for _, n := range nodes {
				if k, ok := n.Known("keys", l.Key); !ok || k.Version < l.Version || l.Version <= cut.Version {
					return false
				}
			}
			return true
		})
	}
	return out
}

// notifyingPublisher is signedPublisher with notify as its Notifier and
// checkpoints every interval while keys change.
func notifyingPublisher(t *testing.T, store origin.Store, signer *sign.Signer, notify publisher.Notifier, interval time.Duration) *publisher.Publisher {
	t.Helper()
	cfg := publisher.DefaultConfig()
	cfg.Signer = signer
	cfg.Notifier = notify
	cfg.Logger = quiet()
	cfg.Schemas = schema.NewRegistry()
	cfg.TombstoneHorizon = 0
	cfg.Timing = revocationTiming()
	cfg.Timing.CheckpointLifetime, cfg.IssueCheckpoints = 20*time.Second, true
	cfg.Timing.LogInterval = interval // its issuer reads the log, and checkpoints, that often
	p, err := publisher.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.RunCheckpoints(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// notifiedFlow publishes a signed change of keys every 50 ms through pub
// (origin, log, and its Notifier) until stop is called.
func notifiedFlow(t *testing.T, pub *publisher.Publisher) (last func() record.Record, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var latest record.Record
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			if r, err := pub.Put(ctx, "keys", fmt.Sprintf("flow-%d", i%20), []byte(fmt.Sprint("v", i))); err == nil {
				mu.Lock()
				latest = r
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return func() record.Record { mu.Lock(); defer mu.Unlock(); return latest }, stop
}

// gauge returns the first value of gauge family name, -1 if there is none.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

func median(s []time.Duration) time.Duration { return s[(len(s)-1)/2] }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// TestPublisherNodeTakesItsCheckpoints: the node a publisher pushes its
// checkpoints through matches them itself (gossip does not send a push to
// its sender). Before, it matched only the checkpoints its own log reads
// brought, so with a slow follower and a delete's push lost it failed
// closed at D instead of reading the log on the mismatch, the last of its
// fleet to refuse the key (BENCHMARKS.md "Revocation time").
func TestPublisherNodeTakesItsCheckpoints(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	push := &pushSwitch{}
	pub := notifyingPublisher(t, raw, signer, push, 200*time.Millisecond)
	if _, err := pub.Put(ctx, "keys", "warm", []byte("allow")); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	g := gossip.DefaultLocalConfig()
	g.Insecure = true
	g.Name, g.Region = "publishers-node", "local"
	tm := revocationTiming()
	tm.LogInterval = time.Hour // the log is read at start only
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{
		Origin: store, Gossip: &g.Cluster, Timing: tm, Verifier: verifierOf(t, signer),
		// Serve-stale: reading the log hourly, a namespace failing closed
		// would be refused (Config.Validate); this test counts matches.
		Staleness: map[string]dataplane.Policy{"keys": {}},
		Logger:    quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	push.node.Store(n)
	_, stop := notifiedFlow(t, pub)
	defer stop()
	start := counter(t, reg, "dataplane_node_checkpoint_matches_total", "")
	eventually(t, testscale.Duration(10*time.Second), "the publisher's node matching 3 checkpoints pushed through it", func() bool {
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= start+3
	})
}
