package dataplane_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// A sentinel behind the cache tier (cachenode over loopback HTTP, read
// through httporigin) verifies checkpoints and snapshots exactly as
// against the origin: the tier holds no signing key and is not trusted.

// liar is a cache node that lies: it serves a real cachenode.Server and,
// while set, answers some paths with bytes of its choosing.
type liar struct {
	node *cachenode.Server
	mu   sync.Mutex
	fake map[string][]byte // path → body answered instead (200)
}

func (l *liar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	b, ok := l.fake[r.URL.Path]
	l.mu.Unlock()
	if !ok || r.Method != http.MethodGet {
		l.node.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (l *liar) set(path string, b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fake == nil {
		l.fake = map[string][]byte{}
	}
	l.fake[path] = b
}

// tier serves a cache node over store on loopback (through a liar, so a
// test can make it lie) and returns it with an httporigin.Store over it
// (no fallback: everything the sentinel reads comes through the node).
func tier(t *testing.T, store origin.Store, signer *sign.Signer) (*liar, *httporigin.Store) {
	t.Helper()
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = store, "w", quiet()
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &liar{node: node}
	srv := httptest.NewServer(l)
	t.Cleanup(func() { srv.Close(); node.Close() })
	hs, err := httporigin.New(httporigin.Config{Nodes: []string{srv.URL}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return l, hs
}

// provenKeys publishes n keys through pub and waits for a snapshot of keys
// covering them, with its proof in the origin.
func provenKeys(t *testing.T, pub *publisher.Publisher, raw origin.SnapshotParts, n int) (record.Snapshot, []record.Record) {
	t.Helper()
	ctx := context.Background()
	var recs []record.Record
	for i := range n {
		r, err := pub.Put(ctx, "keys", fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return provenSnapshot(t, pub, raw, "keys", recs[n-1].Version), recs
}

// provenSnapshot waits for a snapshot of ns at or above v with its proof in
// the origin (the publisher proves a snapshot once its checkpoint state has
// reached the snapshot's version).
func provenSnapshot(t *testing.T, pub *publisher.Publisher, raw origin.SnapshotParts, ns string, v record.Version) record.Snapshot {
	t.Helper()
	ctx := context.Background()
	var snap record.Snapshot
	eventually(t, testscale.Duration(20*time.Second), "a proven snapshot of "+ns, func() bool {
		s, err := pub.Snapshot(ctx, ns)
		if err != nil || s.Version < v {
			return false
		}
		_, err = checkpoint.GetProof(ctx, raw, ns, s.Version)
		snap = s
		return err == nil
	})
	return snap
}

// openBehind opens a verifying sentinel with RequireCheckpoints whose
// origin is the tier hs.
func openBehind(t *testing.T, hs *httporigin.Store, signer *sign.Signer, name string) (*dataplane.Node, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: hs, Gossip: soloGossip(name), Timing: oftenTiming(), Verifier: verifierOf(t, signer), RequireCheckpoints: true,
		Namespaces: []string{"keys"}, WarmTimeout: testscale.Duration(5 * time.Second), Logger: quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, reg
}

func keysStatus(n *dataplane.Node) dataplane.NamespaceStatus {
	for _, s := range n.Status().Namespaces {
		if s.Namespace == "keys" {
			return s
		}
	}
	return dataplane.NamespaceStatus{}
}

// TestRequireCheckpointsBehindTier: a sentinel with RequireCheckpoints
// whose only origin is the cache tier warms up from the origin's snapshot
// verified whole with its proof (both read through the node), serves, and
// proves the namespace current by matching the publisher's checkpoints,
// read through the node too: a key published after it started is served
// and its version is covered by a match. Before the tier served
// checkpoint parts, the node had none to read: it refused the unproven
// snapshot (no_proof) and never matched. It runs over a directory origin
// and over a real S3 server (versitygw, with DATAPLANE_VERSITYGW).
func TestRequireCheckpointsBehindTier(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		_, raw := newPartsStore(t)
		requireBehindTier(t, raw)
	})
	t.Run("s3", func(t *testing.T) { requireBehindTier(t, newS3(t)) })
}

// partsStore is an origin store that keeps snapshot parts (every real one).
type partsStore interface {
	origin.Store
	origin.SnapshotParts
}

func requireBehindTier(t *testing.T, raw partsStore) {
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	ctx := context.Background()
	_, recs := provenKeys(t, pub, raw, 3)
	_, hs := tier(t, raw, signer)

	n, reg := openBehind(t, hs, signer, "behind")
	if !n.Ready() || !keysStatus(n).Warmed {
		t.Fatalf("not warmed through the tier: ready %v, status %+v, no_proof refusals %v", n.Ready(), keysStatus(n),
			counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "no_proof"))
	}
	for _, r := range recs {
		if got, err := n.Get(ctx, "keys", r.Key); err != nil || got.Version != r.Version {
			t.Fatalf("Get(%s) behind the tier: %+v, %v", r.Key, got, err)
		}
	}
	later, err := pub.Put(ctx, "keys", "later", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(30*time.Second), "a checkpoint match covering the later write", func() bool {
		st := keysStatus(n)
		return !st.Heard.Before(later.Version.Time()) && !st.FailingClosed
	})
	if got, err := n.Get(ctx, "keys", "later"); err != nil || got.Version != later.Version {
		t.Fatalf("Get(later): %+v, %v", got, err)
	}
	if m := counter(t, reg, "dataplane_node_checkpoint_matches_total", ""); m < 1 {
		t.Fatalf("%v checkpoint matches behind the tier, want at least 1", m)
	}
	for _, reason := range checkpoint.Reasons {
		if reason == "mismatch" || reason == "rollback" {
			// A checkpoint above the node's log cursor is retried, not
			// refused; a latest checkpoint issued before the proof of
			// the snapshot the node loaded is older than it, through
			// the tier or not (the tier's own order:
			// cachenode's TestCheckpointNeverOlder).
			continue
		}
		if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", reason); c != 0 {
			t.Errorf("%v refusals (%s) behind an honest tier", c, reason)
		}
	}
}

// TestLyingTierRefused: a cache node that lies is refused by the sentinel
// behind it, which verifies what the node serves as it verifies the
// origin. Each lie: a snapshot that leaves a key out (with the real proof),
// the checkpoint and proof of another namespace, a record it made up, and
// an older checkpoint after a newer one was verified (rollback).
func TestLyingTierRefused(t *testing.T) {
	_, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	ctx := context.Background()
	route, err := pub.Put(ctx, "routes", "a.example.com", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	snap, recs := provenKeys(t, pub, raw, 3)
	rsnap := provenSnapshot(t, pub, raw, "routes", route.Version)
	part := func(ns, name string) []byte {
		t.Helper()
		rc, err := raw.GetSnapshotPart(ctx, ns, name)
		if err != nil {
			t.Fatalf("%s of %s: %v", name, ns, err)
		}
		defer rc.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}

	t.Run("snapshot with a key left out", func(t *testing.T) {
		l, hs := tier(t, raw, signer)
		cut := snap
		cut.Records = append([]record.Record(nil), snap.Records[1:]...)
		b, err := record.MarshalSnapshot(cut)
		if err != nil {
			t.Fatal(err)
		}
		l.set(wire.SnapshotPath("keys"), b)
		n, reg := openBehind(t, hs, signer, "cut")
		if keysStatus(n).Warmed {
			t.Fatal("warmed from a snapshot with a key left out")
		}
		if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "mismatch"); c < 1 {
			t.Fatalf("mismatch refusals %v, want the snapshot refused whole", c)
		}
		if _, err := n.Get(ctx, "keys", snap.Records[0].Key); errors.Is(err, dataplane.ErrNotFound) {
			t.Fatalf("the key left out answers not found: the lie was believed")
		}
	})

	t.Run("checkpoint of another namespace", func(t *testing.T) {
		l, hs := tier(t, raw, signer)
		l.set(wire.SnapshotPartPath("keys", checkpoint.LatestName), part("routes", checkpoint.LatestName))
		l.set(wire.SnapshotPartPath("keys", checkpoint.ProofName(snap.Version)), part("routes", checkpoint.ProofName(rsnap.Version)))
		n, reg := openBehind(t, hs, signer, "other-ns")
		if keysStatus(n).Warmed {
			t.Fatal("warmed from a snapshot proven by another namespace's proof")
		}
		if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "corrupt"); c < 1 {
			t.Fatalf("corrupt refusals %v, want the proof of routes refused for keys", c)
		}
		// The follower reads the lying latest checkpoint with every log
		// read: it must never count as a match.
		reads := counter(t, reg, "dataplane_follow_log_reads_total", "ok")
		eventually(t, testscale.Duration(20*time.Second), "five more log reads", func() bool {
			return counter(t, reg, "dataplane_follow_log_reads_total", "ok") >= reads+5
		})
		if m := counter(t, reg, "dataplane_node_checkpoint_matches_total", ""); m != 0 {
			t.Fatalf("%v matches from the checkpoint of routes served for keys", m)
		}
		if st := keysStatus(n); !st.Heard.IsZero() {
			t.Fatalf("keys proven current (heard %v) by another namespace's checkpoint", st.Heard)
		}
	})

	t.Run("forged record", func(t *testing.T) {
		// A key of a namespace held in part is read through the tier.
		l, hs := tier(t, raw, signer)
		forged, err := record.Marshal(record.Record{Namespace: "cfg", Key: "x", Value: []byte("forged"), Version: record.MakeVersion(time.Now(), 0)})
		if err != nil {
			t.Fatal(err)
		}
		l.set(wire.RecordPath("cfg", "x"), forged)
		n, reg := openBehind(t, hs, signer, "forged")
		if got, err := n.Get(ctx, "cfg", "x"); err == nil {
			t.Fatalf("served %q from an unsigned record the tier made up", got.Data)
		}
		if c := counterSum(t, reg, "dataplane_cache_signature_refused_total", "unsigned"); c < 1 {
			t.Fatalf("unsigned refusals %v, want the forged record refused", c)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		// A fresh checkpoint to replay, so it is refused as a rollback
		// well before it expires (20 s).
		pre, err := pub.Put(ctx, "keys", "pre", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		var old []byte
		var oldC *checkpoint.Checkpoint
		eventually(t, testscale.Duration(20*time.Second), "a checkpoint covering pre", func() bool {
			old = part("keys", checkpoint.LatestName)
			oldC, err = checkpoint.Unmarshal(old)
			return err == nil && oldC.Version >= pre.Version
		})
		l, hs := tier(t, raw, signer)
		n, reg := openBehind(t, hs, signer, "rollback")
		if !keysStatus(n).Warmed {
			t.Fatal("not warmed through the honest tier")
		}
		if _, err := pub.Put(ctx, "keys", "newer", []byte("x")); err != nil {
			t.Fatal(err)
		}
		// A checkpoint newer than old, verified by the node through
		// the tier.
		eventually(t, testscale.Duration(30*time.Second), "a newer checkpoint matched", func() bool {
			return keysStatus(n).Heard.After(oldC.Version.Time())
		})
		heard := keysStatus(n).Heard
		l.set(wire.SnapshotPartPath("keys", checkpoint.LatestName), old)
		eventually(t, testscale.Duration(20*time.Second), "the old checkpoint refused as a rollback", func() bool {
			return counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "rollback") >= 1
		})
		if st := keysStatus(n); st.Heard.Before(heard) {
			t.Fatalf("proof of freshness went back from %v to %v", heard, st.Heard)
		}
		if got, err := n.Get(ctx, "keys", recs[0].Key); err != nil || got.Version != recs[0].Version {
			t.Fatalf("Get after the rollback attempt: %+v, %v", got, err)
		}
	})
}
