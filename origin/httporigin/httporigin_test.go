package httporigin_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/record"
)

// The whole conformance suite through a Store → two real cache nodes on
// loopback → a directory origin.
func TestConformance(t *testing.T) {
	var clusters sync.Map // *httporigin.Store → *cluster
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store {
			c := newCluster(t, 2, nil)
			clusters.Store(c.store, c)
			return c.store
		},
		// The suite damages the object in the origin. A node holding a
		// good copy of it keeps serving that copy (invariant 6; see
		// cachenode's TestCorruptOrigin); what the suite can check is a
		// node meeting the object cold, so the nodes restart, as after a
		// redeploy, and must report the corruption rather than cache it.
		Corrupt: func(t *testing.T, s origin.Store, ns, key string) {
			v, _ := clusters.Load(s)
			c := v.(*cluster)
			if err := os.WriteFile(c.dir.RecordPath(ns, key), []byte("DR\x01garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, n := range c.nodes {
				n.Restart()
			}
		},
	})
}

// The suite again with every cache node down: each call goes to the
// fallback origin once the nodes fail.
func TestConformanceFallback(t *testing.T) {
	var fallbacks sync.Map // *httporigin.Store → *dir.Store
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store {
			d, err := dir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			c := newCluster(t, 2, func(cfg *httporigin.Config) { cfg.Fallback = d })
			for _, n := range c.nodes {
				n.Stop()
			}
			fallbacks.Store(c.store, d)
			return c.store
		},
		Corrupt: func(t *testing.T, s origin.Store, ns, key string) {
			d, _ := fallbacks.Load(s)
			if err := os.WriteFile(d.(*dir.Store).RecordPath(ns, key), []byte("DR\x01garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// THE property of the tier (invariant 5): 200 sentinels, each with its own
// cache reading through its own Store, missing on one key at once, cost the
// origin one read per cache node; with rendezvous hashing they all reach one
// node, so one read in all.
func TestSentinelsOneOriginRead(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Origin reads take a while, so the sentinels' misses overlap.
	a, b := startNode(t, d, 50*time.Millisecond), startNode(t, d, 50*time.Millisecond)
	for _, k := range []string{"hot.example.com", "hot2.example.com"} {
		if err := d.CompareAndSwap(ctx(t), record.Record{Namespace: "routes", Key: k, Value: []byte("v-" + k), Version: 42}, 0); err != nil {
			t.Fatal(err)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	t.Cleanup(client.CloseIdleConnections)

	const sentinels = 200
	// run has every sentinel read key at once through the nodes nodesOf
	// gives it, and reports the origin reads each node made.
	run := func(key string, nodesOf func(i int) []string) (fromA, fromB int64) {
		t.Helper()
		a0, b0 := a.origin.gets.Load(), b.origin.gets.Load()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < sentinels; i++ {
			s, err := httporigin.New(httporigin.Config{Nodes: nodesOf(i), HTTPClient: client})
			if err != nil {
				t.Fatal(err)
			}
			c, err := cache.New(s, cache.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				<-start
				e, err := c.Get(ctx(t), "routes", key)
				if err != nil || string(e.Record.Value) != "v-"+key {
					t.Errorf("sentinel %d: %+v, %v", i, e.Record, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		return a.origin.gets.Load() - a0, b.origin.gets.Load() - b0
	}

	// With rendezvous hashing, whatever order each sentinel lists the
	// nodes in, the key has one node: one origin read in all.
	fromA, fromB := run("hot.example.com", func(i int) []string {
		if i%2 == 0 {
			return []string{a.URL(), b.URL()}
		}
		return []string{b.URL(), a.URL()}
	})
	if fromA+fromB != 1 {
		t.Fatalf("%d concurrent sentinel misses made %d+%d origin reads, want 1 in all", sentinels, fromA, fromB)
	}
	owner, _ := httporigin.New(httporigin.Config{Nodes: []string{a.URL(), b.URL()}})
	if wantA := owner.Owner("routes", "hot.example.com") == a.URL(); (fromA == 1) != wantA {
		t.Fatalf("the origin read came from the node that does not own the key (A %d, B %d)", fromA, fromB)
	}

	// Without hashing (half the sentinels know only node A, half only B):
	// still at most one origin read per node.
	fromA, fromB = run("hot2.example.com", func(i int) []string {
		if i%2 == 0 {
			return []string{a.URL()}
		}
		return []string{b.URL()}
	})
	if fromA != 1 || fromB != 1 {
		t.Fatalf("%d concurrent misses split over two nodes made %d and %d origin reads, want 1 per node", sentinels, fromA, fromB)
	}
}

func TestNewValidatesNodes(t *testing.T) {
	for _, tc := range []struct {
		nodes []string
		says  string
	}{
		{nil, "Nodes is empty"},
		{[]string{"127.0.0.1:7080"}, "127.0.0.1:7080"},
		{[]string{"http://ok:1", "ftp://cache-b:7080"}, "Nodes[1]: \"ftp://cache-b:7080\": scheme"},
		{[]string{"http://"}, "no host"},
		{[]string{"http://user:pw@cache:7080"}, "credentials"},
		{[]string{"http://cache:7080/?x=1"}, "query"},
		{[]string{"http://cache:99999"}, "bad port"},
		{[]string{"http://cache:70 80"}, "http://cache:70 80"},
		{[]string{"http://cache:7080/", "http://CACHE:7080"}, "repeats Nodes[0]"},
	} {
		_, err := httporigin.New(httporigin.Config{Nodes: tc.nodes})
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("New(%q) = %v, want an error containing %q", tc.nodes, err, tc.says)
		}
	}
	if _, err := httporigin.New(httporigin.Config{Nodes: []string{"http://cache:7080"}, Timeout: -1}); err == nil {
		t.Error("negative Timeout accepted")
	}
	if _, err := httporigin.New(httporigin.Config{Nodes: []string{"https://cache.internal/prefix/", "http://[::1]:7080"}}); err != nil {
		t.Errorf("valid nodes rejected: %v", err)
	}
}

// Rendezvous hashing: every Store agrees on a key's node whatever the order
// of its node list, keys spread evenly, and removing a node moves only its
// own keys.
func TestRendezvous(t *testing.T) {
	nodes := []string{"http://10.0.0.1:7080", "http://10.0.0.2:7080", "http://10.0.0.3:7080"}
	s1, _ := httporigin.New(httporigin.Config{Nodes: nodes})
	s2, _ := httporigin.New(httporigin.Config{Nodes: []string{nodes[2], nodes[0], nodes[1]}})
	s3, _ := httporigin.New(httporigin.Config{Nodes: nodes[:2]})
	const keys = 3000
	count := map[string]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("key-%d-%d", i, rng.IntN(1000))
		o := s1.Owner("routes", k)
		if s2.Owner("routes", k) != o {
			t.Fatalf("the node order changed the owner of %s", k)
		}
		if o != nodes[2] && s3.Owner("routes", k) != o {
			t.Fatalf("removing node 3 moved %s from %s", k, o)
		}
		count[o]++
	}
	for _, n := range nodes {
		if c := count[n]; c < keys/3*8/10 || c > keys/3*12/10 {
			t.Errorf("node %s owns %d of %d keys, want about a third", n, c, keys)
		}
	}
}

// Log paging: more changes than one node answer holds come back whole and in
// order. (The origin is in memory: this is about the client's paging, and a
// directory fsyncs every one of the thousand entries.)
func TestReadLogPages(t *testing.T) {
	m := mem.New()
	node := startNode(t, m, 0)
	s, err := httporigin.New(httporigin.Config{Nodes: []string{node.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	const n = wire.MaxLogPage + 150
	for i := 1; i <= n; i++ {
		if err := m.AppendLog(ctx(t), record.Change{Namespace: "cfg", Key: fmt.Sprint("k", i), Version: record.Version(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Two changes with one version across the first page boundary.
	if err := m.AppendLog(ctx(t), record.Change{Namespace: "cfg", Key: "twin", Version: wire.MaxLogPage}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ReadLog(ctx(t), 0, 0)
	if err != nil || len(all) != n+1 {
		t.Fatalf("ReadLog(0, no limit): %d changes, %v; want %d", len(all), err, n+1)
	}
	twins := 0
	for i, c := range all {
		if i > 0 && c.Version < all[i-1].Version {
			t.Fatalf("out of order at %d", i)
		}
		if c.Version == wire.MaxLogPage {
			twins++
		}
	}
	if twins != 2 {
		t.Fatalf("%d changes of version %d across the page boundary, want 2", twins, wire.MaxLogPage)
	}
	some, err := s.ReadLog(ctx(t), 10, 1100)
	if err != nil || len(some) != 1100 || some[0].Version != 11 {
		t.Fatalf("ReadLog(10, 1100): %d changes, %v", len(some), err)
	}
}
