package dataplane_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/record"
)

// plainPeer answers every snapshot request with snap, unproven.
type plainPeer struct{ snap record.Snapshot }

func (p plainPeer) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	if ns != p.snap.Namespace {
		return record.Snapshot{Namespace: ns, Version: p.snap.Version}, nil
	}
	return p.snap, nil
}

// TestPeerCannotInject: a peer (another sentinel's admin listener, or
// anyone with its token) answers a node warming while the origin is down
// with a real snapshot and proof (a verifying peer's own) plus a record of
// its making: above the proof's version with the proof saying the key did
// not exist then (its seal is checked and refused), at or below it
// (the hash no longer matches: refused whole), or, to a node that does not
// enforce checkpoints yet, unproven (the record's signature is checked and
// refused). No variant may serve the injected key.
func TestPeerCannotInject(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer, stranger := newSigner(t), newSigner(t)
	pub := signedPublisher(t, raw, signer)
	var recs []record.Record
	for i := range 3 {
		r, err := pub.Put(ctx, "keys", fmt.Sprint("k", i), []byte("allow"))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	eventually(t, testscale.Duration(20*time.Second), "a snapshot covering the writes", func() bool {
		snap, err := pub.Snapshot(ctx, "keys")
		return err == nil && snap.Version >= recs[2].Version
	})
	peer, err := dataplane.Open(ctx, dataplane.Config{
		Origin: store, Gossip: soloGossip("peer"), Timing: oftenTiming(), Verifier: verifierOf(t, signer),
		Namespaces: []string{"keys"}, Logger: quiet(), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var snap record.Snapshot
	var proof *checkpoint.SnapshotProof
	eventually(t, testscale.Duration(20*time.Second), "the peer proving a snapshot holding the writes", func() bool {
		snap, proof, err = peer.ProvenSnapshot("keys")
		return err == nil && len(snap.Records) == 3
	})
	store.down.Store(true)
	v := proof.Checkpoint.Version
	inject := func(at record.Version, signer func(record.Record) record.Record) (record.Snapshot, *checkpoint.SnapshotProof) {
		forged := signer(record.Record{Namespace: "keys", Key: "injected", Value: []byte("allow"), Version: at})
		s := snap
		s.Records = append(slices.Clone(snap.Records), forged)
		slices.SortFunc(s.Records, func(a, b record.Record) int { return strings.Compare(a.Key, b.Key) })
		p := &checkpoint.SnapshotProof{Checkpoint: proof.Checkpoint, Above: slices.Clone(proof.Above)}
		if at > v {
			p.Above = append(p.Above, checkpoint.AtVersion{Key: "injected"}) // "did not exist at V"
			slices.SortFunc(p.Above, func(a, b checkpoint.AtVersion) int { return strings.Compare(a.Key, b.Key) })
		}
		return s, p
	}
	for _, tc := range []struct {
		name    string
		require bool
		peer    func() dataplane.SnapshotSource
		reason  string
	}{
		{"proven, above the proof's version, another key's seal", true, func() dataplane.SnapshotSource {
			s, p := inject(v+1, stranger.Sign)
			return fixedProvenPeer{s, p}
		}, "untrusted_key"},
		{"proven, above the proof's version, unsigned", true, func() dataplane.SnapshotSource {
			s, p := inject(v+1, func(r record.Record) record.Record { return r })
			return fixedProvenPeer{s, p}
		}, "unsigned"},
		{"proven, at the proof's version", true, func() dataplane.SnapshotSource {
			s, p := inject(v, stranger.Sign)
			return fixedProvenPeer{s, p}
		}, "mismatch"},
		{"unproven, to a node not enforcing checkpoints", false, func() dataplane.SnapshotSource {
			s, _ := inject(v, stranger.Sign)
			return plainPeer{s}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			n, err := dataplane.Open(ctx, dataplane.Config{
				Origin: store, Verifier: verifierOf(t, signer), RequireCheckpoints: tc.require, Namespaces: []string{"keys"},
				Peers: []dataplane.SnapshotSource{tc.peer()}, WarmTimeout: 200 * time.Millisecond, Logger: quiet(), Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if got, err := n.Get(ctx, "keys", "injected"); err == nil {
				t.Fatalf("the injected key served: %+v", got)
			}
			if _, ok := n.Known("keys", "injected"); ok {
				t.Fatal("the injected key is known")
			}
			if tc.reason != "" {
				if n.Ready() {
					t.Fatal("warmed from the peer's doctored snapshot")
				}
				if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", tc.reason); c != 1 {
					t.Fatalf("%s refusals %v, want 1", tc.reason, c)
				}
				return
			}
			// Unproven: loaded, the forged record refused by its signature,
			// the real ones kept.
			if c := counterSum(t, reg, "dataplane_cache_signature_refused_total", "untrusted_key"); c < 1 {
				t.Fatalf("untrusted_key signature refusals %v, want at least 1", c)
			}
			if k, ok := n.Known("keys", recs[1].Key); !ok || k.Version != recs[1].Version {
				t.Fatalf("a real record of the peer's snapshot: %+v, %v", k, ok)
			}
		})
	}
}
