package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/record"
)

// TestReorderAndDuplicates feeds one node every version of a set of keys
// in random order, many times over, from several goroutines at once and
// through all three inbound paths (change messages, digests, the log). The
// Applier must see strictly increasing versions per key (invariants 1-2:
// the testApplier fails the test on any repeat or step back) and end on the
// newest version of each key.
func TestReorderAndDuplicates(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			a := newTestApplier(t)
			cfg := testConfig(t, "solo")
			n, err := New(cfg, a, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			d := delegate{n}

			const keys, versions = 8, 30
			newest := make(map[string]record.Version)
			var msgs [][]byte
			var changes []change
			base := record.MakeVersion(time.Now(), 0)
			for k := 0; k < keys; k++ {
				key := fmt.Sprintf("k%d", k)
				for v := 1; v <= versions; v++ {
					ver := base + record.Version(rng.IntN(1<<20))
					rec := record.Record{Namespace: "keys", Key: key, Value: []byte(fmt.Sprint(ver)), Version: ver}
					if rng.IntN(10) == 0 {
						rec.Value, rec.Tombstone = nil, true
					}
					c := change{rec: rec, inline: rng.IntN(4) != 0, path: path(rng.IntN(3))}
					if !c.inline && !rec.Tombstone {
						c.rec.Value = nil
					}
					changes = append(changes, c)
					// Each message 1-3 times: duplicates.
					for range 1 + rng.IntN(3) {
						msgs = append(msgs, encodeChange(c))
					}
					newest[key] = max(newest[key], ver)
				}
			}
			rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })

			var wg sync.WaitGroup
			const workers = 4
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(msgs); i += workers {
						d.NotifyMsg(msgs[i])
					}
				}()
			}
			// Digests carrying random subsets, racing the messages.
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 7))
				for range 10 {
					var dg digest
					for range 20 {
						c := changes[r.IntN(len(changes))]
						dg.changes = append(dg.changes, c)
						dg.highWater = max(dg.highWater, c.rec.Version)
					}
					d.MergeRemoteState(encodeDigest(dg, 1<<16), false)
				}
			}()
			// The log backstop, racing too.
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 8))
				for range 50 {
					c := changes[r.IntN(len(changes))]
					n.receive(change{rec: record.Record{Namespace: "keys", Key: c.rec.Key, Version: c.rec.Version, Tombstone: c.rec.Tombstone}, inline: c.rec.Tombstone, path: pathLog})
				}
			}()
			wg.Wait()

			a.assertOrdered()
			for key, v := range newest {
				if got := a.version("keys", key); got != v {
					t.Errorf("%s: ends on %s, want newest %s", key, got, v)
				}
			}
			applies, invalidates, _ := a.counts()
			t.Logf("%d messages (%d distinct changes): %d applies, %d invalidations", len(msgs), len(changes), applies, invalidates)
		})
	}
}

// TestClusterRandomOrderPublish publishes versions of a few keys to random
// nodes of a 10-node cluster, concurrently and out of version order (as
// racing publishers behind a slow network would): every node's Applier
// sees versions only increase and every node ends on the newest.
func TestClusterRandomOrderPublish(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{n: 10})
	rng := rand.New(rand.NewPCG(42, 42))
	keys := []string{"a", "b", "c"}
	var recs []record.Record
	newest := make(map[string]record.Version)
	for range 60 {
		k := keys[rng.IntN(len(keys))]
		r := record.Record{Namespace: "keys", Key: k, Value: []byte("v"), Version: c.clock.Now()}
		recs = append(recs, r)
		newest[k] = max(newest[k], r.Version)
	}
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := w; i < len(recs); i += 4 {
				// Some changes published twice, to two nodes.
				for range 1 + r.IntN(2) {
					if err := c.nodes[r.IntN(len(c.nodes))].Publish(context.Background(), recs[i]); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 10*time.Second, func() bool {
		for k, v := range newest {
			if !c.has("keys", k, v) {
				return false
			}
		}
		return true
	}, "every node to end on the newest versions")
	for i, a := range c.appliers {
		for k, v := range newest {
			if got := a.version("keys", k); got != v {
				t.Errorf("node %d %s: %s, want %s", i, k, got, v)
			}
		}
	}
}
