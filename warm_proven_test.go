package dataplane_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// TestWarmRefusesStreamedSnapshotWhole: a verifying node's warm-up streams
// a proven origin snapshot and, at Open, applies its records while they
// are hashed, the match coming at the end. A snapshot that fails after
// records were applied (its object cut mid-stream, a record left out or a
// value changed under its seal near the end) must still be refused whole:
// the node serves none of its records (not even those of the batches
// applied before the failure), and the honest snapshot warms it.
func TestWarmRefusesStreamedSnapshotWhole(t *testing.T) {
	ctx := context.Background()
	signer := newSigner(t)
	const n = 2500 // three batches of the warm-up's 1,024, one object
	V := record.MakeVersion(time.Now().Add(-time.Minute), 0)
	recs := make([]record.Record, n)
	st := checkpoint.NewState("keys")
	for i := range recs {
		recs[i] = signer.Sign(record.Record{Namespace: "keys", Key: fmt.Sprintf("ks/%06d", i), Version: V - record.Version(n-i), Value: []byte(fmt.Sprintf("value %d", i))})
		if _, err := st.Apply(statehash.ElementOf(recs[i])); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	proof := &checkpoint.SnapshotProof{Checkpoint: &checkpoint.Checkpoint{Namespace: "keys", Version: V, Count: st.Count(), Hash: st.Hash(), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}}
	if err := proof.Checkpoint.Sign(signer); err != nil {
		t.Fatal(err)
	}
	honest, err := record.MarshalSnapshot(record.Snapshot{Namespace: "keys", Version: V, Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	encode := func(f func([]record.Record) []record.Record) []byte {
		t.Helper()
		rs := f(append([]record.Record(nil), recs...))
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Key < rs[j].Key })
		b, err := record.MarshalSnapshot(record.Snapshot{Namespace: "keys", Version: V, Records: rs})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		object  []byte
		refusal string // the checkpoint refusal counted, "" none (a broken stream)
	}{
		{"cut mid-stream", honest[:len(honest)*2/3], ""},
		{"record left out near the end", encode(func(rs []record.Record) []record.Record { return append(rs[:n-10], rs[n-9:]...) }), "mismatch"},
		{"value changed near the end", encode(func(rs []record.Record) []record.Record {
			rs[n-5].Value = []byte("forged")
			return rs
		}), "mismatch"},
		{"honest", honest, ""},
	}
	// (A record named twice is refused by the snapshot decoder, keys out of
	// order, and by the hash, a count that differs: checkpoint's
	// TestVerifySnapshot.)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store, err := dir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := checkpoint.PutProof(ctx, store, proof); err != nil {
				t.Fatal(err)
			}
			if err := store.PutSnapshotPart(ctx, "keys", "", tc.object); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			node, err := dataplane.Open(ctx, dataplane.Config{
				Origin: store, Namespaces: []string{"keys"}, Verifier: verifierOf(t, signer), RequireCheckpoints: true,
				Logger: quiet(), Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			if tc.name == "honest" {
				if !node.Ready() {
					t.Fatal("the honest snapshot did not warm the node")
				}
				for _, r := range []record.Record{recs[0], recs[n-1]} {
					if e, ok := node.Peek("keys", r.Key); !ok || e.Record.Version != r.Version {
						t.Fatalf("%s not loaded from the honest snapshot", r.Key)
					}
				}
				if c := counter(t, reg, "dataplane_node_warm_loads_total", "origin"); c != 1 {
					t.Fatalf("warmed from the origin %v times, want 1", c)
				}
				return
			}
			if node.Ready() {
				t.Fatal("the node warmed from a snapshot that does not verify whole")
			}
			for _, r := range []record.Record{recs[0], recs[1023], recs[1500], recs[n-1]} {
				if e, ok := node.Peek("keys", r.Key); ok {
					t.Fatalf("the node holds %s@%s from the refused snapshot", r.Key, e.Record.Version)
				}
				if k, ok := node.Known("keys", r.Key); ok {
					t.Fatalf("the node's version index knows %s@%s from the refused snapshot", r.Key, k.Version)
				}
			}
			if tc.refusal != "" {
				if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", tc.refusal); c < 1 {
					t.Fatalf("no %s refusal counted", tc.refusal)
				}
			}
			if c := counter(t, reg, "dataplane_node_warm_loads_total", "failed"); c != 1 {
				t.Fatalf("warm-up failures counted %v times, want 1", c)
			}
		})
	}
}
