package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// TestSmallCacheLaggingReplica is issue 11's chaos run: caches far smaller
// than the data (values evicted all the time), a regional replica 1 s
// behind the primary that loses a fifth of its copies, gossip carrying
// invalidations only, and readers on every node reading keys of a complete
// namespace (routes) and a partial one (app) while keys are rewritten and
// deleted. No read may serve a version older than one announced 300 ms
// before it as fresh, nor a deleted value; no (node, key) may go back in
// time; and once the replica has caught up, every node serves the latest
// version of every key.
func TestSmallCacheLaggingReplica(t *testing.T) {
	const (
		lag    = time.Second
		settle = 2500 * time.Millisecond
		nodes  = 3
		keys   = 150 // per namespace
		writes = 40
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary, local, _ := startReplica(t, ctx, lag, 11)

	pcfg := publisher.DefaultConfig()
	pcfg.Timing.LogSettle = settle
	pcfg.Logger = discard()
	pcfg.Schemas = nil
	var ns []*dataplane.Node
	pcfg.Notifier = publisher.NotifierFunc(func(ctx context.Context, rec record.Record) error {
		return ns[0].Publish(ctx, rec)
	})
	pub, err := publisher.New(primary, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	// Values that pass the routes schema; app is free-form.
	value := func(space string, w int) []byte {
		if space == "routes" {
			return fmt.Appendf(nil, `{"deployment_id":"d%d","upstreams":["http://127.0.0.1:%d"]}`, w, 1000+w)
		}
		return fmt.Appendf(nil, `%d`, w)
	}
	spaces := []string{"routes", "app"}
	name := func(i int) string { return fmt.Sprintf("h%03d.example.com", i) }
	var last record.Record
	for _, sp := range spaces {
		for i := range keys {
			if last, err = pub.Put(ctx, sp, name(i), value(sp, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !pollUntil(30*time.Second, func() bool {
		r, err := local.Get(ctx, last.Namespace, last.Key, 0)
		return err == nil && r.Version == last.Version
	}) {
		t.Fatal("the replica never caught up with the first writes")
	}
	// The replicator copies records and the change log, not snapshots:
	// the nodes make routes complete from the log, read from its start.

	regs := make([]*prometheus.Registry, nodes)
	for i := 0; i < nodes; i++ {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name, g.Region = fmt.Sprint("s", i), "eu"
		if i > 0 {
			g.Seeds = []string{ns[0].GossipAddr()}
		}
		g.InlineValueMax = 0 // invalidations only: every value comes from the lagging replica
		ml := *g.Memberlist
		ml.LogOutput = io.Discard
		g.Memberlist = &ml
		copts := cache.DefaultConfig()
		copts.Default = cache.Window{Fresh: 30 * time.Second, Stale: time.Hour}
		copts.MaxBytes = 40 * 400 // about 40 of the 300 values
		regs[i] = prometheus.NewRegistry()
		n, err := dataplane.Open(ctx, dataplane.Config{
			Origin: local, Cache: copts, Gossip: &g.Cluster, Namespaces: []string{"routes"},
			Timing: replicaTiming(settle, lag),
			Logger: discard(), Registerer: regs[i],
		})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		ns = append(ns, n)
	}
	for _, n := range ns {
		if !pollUntil(30*time.Second, func() bool { return n.Complete("routes") }) {
			t.Fatal("routes never became complete on a node")
		}
	}

	type read struct {
		node, key int
		space     string
		at        time.Time
		version   record.Version
		stale     bool
		found     bool
	}
	type write struct {
		space string
		key   int
		rec   record.Record
		done  time.Time
	}
	var mu sync.Mutex
	var reads []read
	var writesDone []write
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range ns {
		for r := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), uint64(r)))
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					sp, k := spaces[rng.IntN(2)], rng.IntN(keys)
					at := time.Now()
					v, err := n.Get(ctx, sp, name(k))
					switch {
					case err == nil:
						mu.Lock()
						reads = append(reads, read{i, k, sp, at, v.Version, v.Stale, true})
						mu.Unlock()
					case errorsIsNotFound(err):
						mu.Lock()
						reads = append(reads, read{i, k, sp, at, 0, false, false})
						mu.Unlock()
					}
				}
			}()
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for w := 1; w <= writes; w++ {
		sp, k := spaces[rng.IntN(2)], rng.IntN(keys)
		var rec record.Record
		if w%5 == 0 {
			rec, err = pub.Delete(ctx, sp, name(k))
		} else {
			rec, err = pub.Put(ctx, sp, name(k), value(sp, w))
		}
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		writesDone = append(writesDone, write{sp, k, rec, time.Now()})
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	// Converge: once the replica has everything, every node serves the
	// latest version of every written key.
	latest := map[string]record.Record{}
	for _, w := range writesDone {
		latest[w.space+"/"+name(w.key)] = w.rec
	}
	for _, n := range ns {
		for _, rec := range latest {
			if !pollUntil(lag+20*time.Second, func() bool {
				v, err := n.Get(ctx, rec.Namespace, rec.Key)
				if rec.Tombstone {
					return errorsIsNotFound(err)
				}
				return err == nil && v.Version == rec.Version && !v.Stale
			}) {
				t.Fatalf("%s/%s never converged to %s on a node", rec.Namespace, rec.Key, rec.Version)
			}
		}
	}
	close(stop)
	wg.Wait()

	const gossipBound = 300 * time.Millisecond
	type nk struct {
		node int
		id   string
	}
	served := map[nk]record.Version{}
	behind, violations := 0, 0
	for _, r := range reads {
		id := r.space + "/" + name(r.key)
		var known record.Record
		for _, w := range writesDone {
			if w.space == r.space && w.key == r.key && r.at.After(w.done.Add(gossipBound)) {
				known = w.rec
			}
		}
		switch {
		case r.found && known.Tombstone && r.version < known.Version:
			// (A newer version is a write after the delete, announced
			// within the bound: fine.)
			violations++
			t.Errorf("node s%d served %s version %s after its delete at %s was announced", r.node, id, r.version, known.Version)
		case r.found && r.version < known.Version && !r.stale:
			violations++
			t.Errorf("node s%d served %s version %s as fresh after %s was announced", r.node, id, r.version, known.Version)
		case r.found && r.version < known.Version:
			behind++
		}
		if r.found {
			if prev := served[nk{r.node, id}]; r.version < prev {
				violations++
				t.Errorf("node s%d went back on %s from %s to %s", r.node, id, prev, r.version)
			}
			served[nk{r.node, id}] = max(served[nk{r.node, id}], r.version)
		}
	}
	evicted := 0.0
	for _, reg := range regs {
		evicted += gathered(t, reg, "dataplane_cache_evictions_total")
	}
	t.Logf("%d reads, %d older versions served marked stale, %.0f evictions, %d violations", len(reads), behind, evicted, violations)
	if evicted == 0 {
		t.Fatal("nothing was evicted: the cache was not smaller than the data")
	}
}

func errorsIsNotFound(err error) bool { return errors.Is(err, origin.ErrNotFound) }

// gathered sums a counter family over its labels.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(reg, name)
	if err != nil || n == 0 {
		return 0
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
