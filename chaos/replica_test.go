package chaos

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/replica"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// TestLaggingReplica: nodes read a regional replica that trails the
// primary by 1 s while gossip announces each write at once. A node that
// heard of a version the replica does not hold yet never serves the older
// replica answer as fresh (only marked stale), and serves the new version,
// fresh, once the replica has it.
// replicaTiming is the timing of nodes reading a replica lag behind the
// primary, settled settle behind the log read every 250 ms: the other
// constants are the publishers' (origin.DefaultTiming).
func replicaTiming(settle, lag time.Duration) origin.Timing {
	t := origin.DefaultTiming()
	t.LogInterval, t.LogSettle, t.ReplicaLag = 250*time.Millisecond, settle, lag
	return t
}

func TestLaggingReplica(t *testing.T) {
	const (
		lag    = time.Second
		settle = 2500 * time.Millisecond // publish budget 1 s + skew 0.25 s + lag 1 s, covered
		nodes  = 3
		writes = 5
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, local, rep := startReplica(t, ctx, lag, 3)

	var ns []*dataplane.Node
	for i := 0; i < nodes; i++ {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true // plaintext on loopback, on purpose
		g.Name, g.Region = fmt.Sprint("r", i), "eu"
		if i > 0 {
			g.Seeds = []string{ns[0].GossipAddr()}
		}
		g.InlineValueMax = 0 // gossip carries invalidations only: values come from the replica
		ml := *g.Memberlist
		ml.LogOutput = io.Discard
		g.Memberlist = &ml
		copts := cache.DefaultConfig()
		copts.Default = cache.Window{Fresh: 30 * time.Second, Stale: time.Hour}
		n, err := dataplane.Open(ctx, dataplane.Config{
			Origin: local, Cache: copts, Gossip: &g.Cluster, Namespaces: []string{},
			Timing: replicaTiming(settle, lag),
			Logger: discard(), Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		ns = append(ns, n)
	}
	pcfg := publisher.DefaultConfig()
	pcfg.Timing.LogSettle = settle
	pcfg.Logger = discard()
	pcfg.Notifier = publisher.NotifierFunc(func(ctx context.Context, rec record.Record) error {
		return ns[0].Publish(ctx, rec)
	})
	pub, err := publisher.New(primary, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	tm := pcfg.Timing
	tm.ReplicaLag = lag
	if err := tm.Validate(); err != nil {
		t.Fatal(err)
	}

	// v0 everywhere: replicated and cached by every node.
	first, err := pub.Put(ctx, "app", "k", []byte(`0`))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if !pollUntil(10*time.Second, func() bool {
			v, err := n.Get(ctx, "app", "k")
			return err == nil && v.Version == first.Version && !v.Stale
		}) {
			t.Fatal("v0 never reached a node through the replica")
		}
	}

	type read struct {
		node    int
		at      time.Time
		version record.Version
		stale   bool
	}
	var mu sync.Mutex
	var reads []read
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				v, err := n.Get(ctx, "app", "k")
				if err == nil {
					mu.Lock()
					reads = append(reads, read{i, time.Now(), v.Version, v.Stale})
					mu.Unlock()
				}
			}
		}()
	}
	type pubd struct {
		rec  record.Record
		done time.Time
	}
	var pubs []pubd
	for w := 1; w <= writes; w++ {
		rec, err := pub.Put(ctx, "app", "k", []byte(fmt.Sprint(w)))
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, pubd{rec, time.Now()})
		// Every node serves it fresh once the replica has it.
		for j, n := range ns {
			var last dataplane.Value
			if !pollUntil(lag+10*time.Second, func() bool {
				v, err := n.Get(ctx, "app", "k")
				last = v
				return err == nil && v.Version >= rec.Version && !v.Stale
			}) {
				t.Fatalf("write %d: node r%d serves %s (stale %v), want %s fresh", w, j, last.Version, last.Stale, rec.Version)
			}
		}
		t.Logf("write %d: every node serves it fresh %s after the publish (replica lag %s)", w, time.Since(pubs[len(pubs)-1].done).Round(time.Millisecond), lag)
	}
	close(stop)
	wg.Wait()
	copied, lost := rep.Counts()
	t.Logf("%d reads, replica copied %d changes, lost %d copies (retried)", len(reads), copied, lost)

	// A read that began well after a write was acknowledged (gossip on
	// loopback takes milliseconds; allow 300 ms) and served an older
	// version must be marked stale: the replica's older answer is never
	// served as fresh once the newer version was announced.
	const gossipBound = 300 * time.Millisecond
	behind := 0 // reads in the window where the replica lagged the announcement
	for _, r := range reads {
		var known record.Version
		for _, p := range pubs {
			if r.at.After(p.done.Add(gossipBound)) {
				known = p.rec.Version
			}
		}
		if r.version < known && !r.stale {
			t.Fatalf("node r%d served %s as fresh at %s, after %s was announced", r.node, r.version, r.at.Format("15:04:05.000"), known)
		}
		if r.version < known {
			behind++
		}
	}
	t.Logf("%d reads served an older version, marked stale, while the replica lagged", behind)
	if behind == 0 {
		t.Fatal("no read fell in the replica's lag window: the test checked nothing")
	}
	if len(reads) == 0 {
		t.Fatal("no reads")
	}
}

// startReplica opens a primary and a replica directory store and runs a
// replicator between them, lag behind and losing a fifth of its copies
// (retried), until the test ends.
func startReplica(t *testing.T, ctx context.Context, lag time.Duration, seed uint64) (primary, local *dir.Store, rep *replica.Replicator) {
	t.Helper()
	var err error
	if primary, err = dir.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if local, err = dir.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	rcfg := replica.DefaultConfig()
	rcfg.Lag, rcfg.Loss, rcfg.Interval, rcfg.Seed = lag, 0.2, 20*time.Millisecond, seed
	if rep, err = replica.New(primary, local, rcfg); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); rep.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	return primary, local, rep
}
