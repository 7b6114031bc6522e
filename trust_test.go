package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// partsOutage is an outage whose snapshot parts (checkpoints, proofs) are
// cut with the rest: an unreachable origin.
type partsOutage struct {
	*outage
	parts origin.SnapshotParts
}

func (o *partsOutage) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	return o.parts.PutSnapshotPart(ctx, ns, name, b)
}

func (o *partsOutage) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	if o.down.Load() {
		return nil, o.err()
	}
	return o.parts.GetSnapshotPart(ctx, ns, name)
}

func (o *partsOutage) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	return o.parts.DeleteSnapshotPart(ctx, ns, name)
}

// newPartsStore is a directory origin behind a partsOutage, and the raw
// store (never down) for the publisher.
func newPartsStore(t *testing.T) (*partsOutage, *dir.Store) {
	t.Helper()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &partsOutage{outage: &outage{Store: d}, parts: d}, d
}

// signedPublisher is a publisher with signer that issues checkpoints
// (every 200 ms while a namespace changes, lifetime 20 s) on store until
// the test ends.
func signedPublisher(t *testing.T, store origin.Store, signer *sign.Signer) *publisher.Publisher {
	t.Helper()
	return notifyingPublisher(t, store, signer, nil, 200*time.Millisecond)
}

func verifierOf(t *testing.T, s *sign.Signer) *sign.Verifier {
	t.Helper()
	v, err := sign.NewVerifier(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// flow publishes a signed change of keys every 50 ms through pub (origin
// and log) and hands it to gossip through via, until stop is called.
func flow(t *testing.T, pub *publisher.Publisher, via *dataplane.Node) (last func() record.Record, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var latest record.Record
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			r, err := pub.Put(ctx, "keys", fmt.Sprintf("flow-%d", i%20), []byte(fmt.Sprint("v", i)))
			if err == nil && via != nil {
				_ = via.Publish(ctx, r)
			}
			if err == nil {
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
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return func() record.Record { mu.Lock(); defer mu.Unlock(); return latest }, stop
}

// TestRevokedKeyFailsClosedWhileOtherChangesFlow is issue 23's
// reproduction 1: a revoked API key must not keep verifying past D when
// the revocation never reaches a node (log and origin unreachable, the
// revocation's push lost) while other signed changes of the namespace
// keep arriving by gossip. An accepted change proves nothing about the
// whole namespace; only a checkpoint match does, and the node's last
// match predates the cut, so it fails closed at D.
func TestRevokedKeyFailsClosedWhileOtherChangesFlow(t *testing.T) {
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	ctx := context.Background()
	revoked, err := pub.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(4 * time.Second)
	var nodes []*dataplane.Node
	var regs []*prometheus.Registry
	var seeds []string
	for i := range 2 {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name, g.Region, g.Seeds = fmt.Sprintf("n%d", i), "local", seeds
		reg := prometheus.NewRegistry()
		n, err := dataplane.Open(ctx, dataplane.Config{
			Origin: store, Gossip: &g.Cluster, Timing: oftenTiming(), Verifier: verifierOf(t, signer),
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
	a, b := nodes[0], nodes[1]
	eventually(t, 10*time.Second, "2 members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	latest, stop := flow(t, pub, a)
	defer stop()
	eventually(t, testscale.Duration(20*time.Second), "node b matching a checkpoint and serving the key", func() bool {
		v, err := b.Get(ctx, "keys", revoked.Key)
		return counter(t, regs[1], "dataplane_node_checkpoint_matches_total", "") >= 1 && err == nil && v.Version == revoked.Version
	})

	store.down.Store(true) // log, origin and checkpoints unreachable for both nodes
	cut := latest()
	if _, err := pub.Delete(ctx, "keys", revoked.Key); err != nil { // never pushed
		t.Fatal(err)
	}
	var served int
	eventually(t, 4*d, "node b refusing the revoked key", func() bool {
		_, err := b.Get(ctx, "keys", revoked.Key)
		if err == nil {
			served++
		}
		return errors.Is(err, dataplane.ErrUnavailable) || errors.Is(err, dataplane.ErrNotFound)
	})
	if k, ok := b.Known("keys", latest().Key); !ok || latest().Version <= cut.Version || k.Version < cut.Version {
		t.Fatalf("no signed change reached node b after the cut (known %+v, cut at %s): the test did not test what it says", k, cut.Version)
	}
	st := b.Status()
	for _, ns := range st.Namespaces {
		if ns.Namespace == "keys" && !ns.FailingClosed {
			t.Fatalf("keys not reported failing closed: %+v", ns)
		}
	}
	t.Logf("the revoked key was served %d times after the revocation, before failing closed", served)
}

// newS3 starts a real S3-compatible server (versitygw) with a fresh bucket.
func newS3(t *testing.T) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := testserver.StartS3(t)
	s, err := s3.New(ctx, s3.Config{
		Bucket: "trust", UsePathStyle: true,
		Conn: awsconn.Conn{
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBucketWriterCannotDeleteSignedKey is issue 23's reproduction 3: a
// bucket writer without the signing key rewrites the snapshot without a
// signed key (same version, so the old proof is found and fails to match)
// and trims the log past every node. A running verifying node must
// refuse the snapshot when the trimmed log sends it there and keep
// serving the key; a restarted one must refuse it at warm-up and keep
// serving the key from its local file.
func TestBucketWriterCannotDeleteSignedKey(t *testing.T) {
	store := newS3(t)
	signer := newSigner(t)
	pub := signedPublisher(t, store, signer)
	ctx := context.Background()
	var kept record.Record
	for i := range 5 {
		r, err := pub.Put(ctx, "keys", fmt.Sprint("k", i), []byte(fmt.Sprint("value ", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			kept = r
		}
	}
	// A snapshot whose version covers the writes (it is taken at the
	// publisher's settled point), so that its proof's hash binds them.
	eventually(t, testscale.Duration(20*time.Second), "a snapshot covering the writes", func() bool {
		snap, err := pub.Snapshot(ctx, "keys")
		return err == nil && snap.Version >= kept.Version
	})
	reg := prometheus.NewRegistry()
	cfg := dataplane.Config{
		Origin: store, Gossip: soloGossip("a"), Timing: oftenTiming(), Verifier: verifierOf(t, signer),
		DataDir: t.TempDir(), Logger: quiet(), Registerer: reg,
	}
	n, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Close() }()
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match", func() bool {
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1
	})

	// The bucket writer.
	snap, err := store.GetSnapshot(ctx, "keys")
	if err != nil {
		t.Fatal(err)
	}
	forged := record.Snapshot{Namespace: "keys", Version: snap.Version}
	for _, r := range snap.Records {
		if r.Key != kept.Key {
			forged.Records = append(forged.Records, r)
		}
	}
	if len(forged.Records) != len(snap.Records)-1 {
		t.Fatalf("snapshot holds %d records, %s not among them", len(snap.Records), kept.Key)
	}
	if err := store.PutSnapshot(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if back, err := store.GetSnapshot(ctx, "keys"); err != nil || len(back.Records) != len(forged.Records) {
		t.Fatalf("the forged snapshot reads back with %d records (%v), want %d", len(back.Records), err, len(forged.Records))
	}
	truncated := counter(t, reg, "dataplane_follow_log_reads_total", "truncated")
	if err := store.TrimLog(ctx, record.MakeVersion(time.Now(), 0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(20*time.Second), "the node finding the log trimmed past it and a later read", func() bool {
		return counter(t, reg, "dataplane_follow_log_reads_total", "truncated") > truncated &&
			counter(t, reg, "dataplane_follow_log_reads_total", "ok") > 0
	})
	ok := counter(t, reg, "dataplane_follow_log_reads_total", "ok")
	eventually(t, testscale.Duration(20*time.Second), "two more log reads", func() bool {
		return counter(t, reg, "dataplane_follow_log_reads_total", "ok") >= ok+2
	})
	if v, err := n.Get(ctx, "keys", kept.Key); err != nil || v.Version != kept.Version {
		t.Fatalf("running node after the forged snapshot: %+v, %v; want %s", v, err, kept.Version)
	}
	// Refused as older than the state the node had matched (rollback), or
	// for its mismatch if the node's last match was that snapshot's.
	if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "rollback") +
		counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "mismatch"); c < 1 {
		t.Fatalf("the forged snapshot was not refused (%v)", c)
	}

	n.Close() // writes the local file and the checkpoint it matched
	reg2 := prometheus.NewRegistry()
	cfg.Gossip, cfg.Registerer = soloGossip("a2"), reg2
	n, err = dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// It serves nothing of keys until a checkpoint matches (its kept
	// checkpoint makes it enforce them from the start), and never "not
	// found" for the key.
	eventually(t, testscale.Duration(20*time.Second), "the restarted node serving the key", func() bool {
		v, err := n.Get(ctx, "keys", kept.Key)
		if errors.Is(err, dataplane.ErrNotFound) {
			t.Fatalf("restarted node: %v", err)
		}
		return err == nil && v.Version == kept.Version
	})
	if c := counterSum(t, reg2, "dataplane_node_checkpoint_refusals_total", "mismatch"); c < 1 {
		t.Fatalf("the restarted node did not refuse the forged snapshot for its mismatch (%v)", c)
	}
	if c := counter(t, reg2, "dataplane_node_warm_loads_total", "local"); c != 1 {
		t.Fatalf("the restarted node warmed from its local file %v times, want 1", c)
	}
}

// replayPeer is a peer without the signing key that answers every
// snapshot request with an old, validly signed record and a current
// cursor.
type replayPeer struct {
	rec record.Record
}

func (p replayPeer) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	snap := record.Snapshot{Namespace: ns, Version: record.MakeVersion(time.Now(), 0)}
	if ns == p.rec.Namespace {
		snap.Records = []record.Record{p.rec}
	}
	return snap, nil
}

// TestPeerReplayIsNotTrusted is issue 23's reproduction 2: a peer replays
// a revoked key's old signed record and claims a current cursor to a node
// that starts while the origin is down. Once the origin is back the node
// must never serve the revoked key: the peer's cursor is not trusted past
// the last verified checkpoint (none on a first start: the whole log is
// read), and with RequireCheckpoints the peer's unproven answer is refused
// outright.
func TestPeerReplayIsNotTrusted(t *testing.T) {
	for _, require := range []bool{false, true} {
		t.Run(fmt.Sprint("RequireCheckpoints=", require), func(t *testing.T) {
			store, raw := newPartsStore(t)
			signer := newSigner(t)
			pub := signedPublisher(t, raw, signer)
			ctx := context.Background()
			old, err := pub.Put(ctx, "keys", "revoked", []byte("allow"))
			if err != nil {
				t.Fatal(err)
			}
			del, err := pub.Delete(ctx, "keys", old.Key)
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, testscale.Duration(20*time.Second), "a snapshot covering the delete", func() bool {
				snap, err := pub.Snapshot(ctx, "keys")
				return err == nil && snap.Version >= del.Version
			})

			store.down.Store(true)
			reg := prometheus.NewRegistry()
			n, err := dataplane.Open(ctx, dataplane.Config{
				Origin: store, Gossip: soloGossip("a"), Timing: oftenTiming(), Verifier: verifierOf(t, signer),
				RequireCheckpoints: require, Peers: []dataplane.SnapshotSource{replayPeer{old}},
				WarmTimeout: 200 * time.Millisecond, Logger: quiet(), Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.Ready() == require {
				t.Fatalf("Ready = %v with the origin down and only the replaying peer", n.Ready())
			}
			if v, err := n.Get(ctx, "keys", old.Key); err == nil {
				t.Fatalf("served the replayed key while the origin is down: %+v", v)
			}

			store.down.Store(false)
			eventually(t, testscale.Duration(20*time.Second), "a checkpoint match after the origin returned", func() bool {
				if v, err := n.Get(ctx, "keys", old.Key); err == nil {
					t.Fatalf("served the revoked key: %+v", v)
				}
				return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1
			})
			for range 20 {
				if _, err := n.Get(ctx, "keys", old.Key); !errors.Is(err, dataplane.ErrNotFound) {
					t.Fatalf("revoked key after the match: %v, want not found", err)
				}
			}
			if c, ok := n.Known("keys", old.Key); !ok || !c.Tombstone || c.Version != del.Version {
				t.Fatalf("known %+v (%v), want the delete at %s", c, ok, del.Version)
			}
		})
	}
}

// fixedProvenPeer answers with one proven snapshot, whatever was asked.
type fixedProvenPeer struct {
	snap  record.Snapshot
	proof *checkpoint.SnapshotProof
}

func (p fixedProvenPeer) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	return record.Snapshot{}, errors.New("only proven snapshots here")
}

func (p fixedProvenPeer) GetProvenSnapshot(ctx context.Context, ns string) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	if ns != p.snap.Namespace {
		return record.Snapshot{}, nil, origin.ErrNotFound
	}
	return p.snap, p.proof, nil
}

// TestPeerProvenSnapshot: a node that enforces checkpoints warms from a
// peer while the origin is down only with the peer's proof (its last
// matched checkpoint), verified whole: then it is proven current as of
// that checkpoint and reads the log from its version. A peer's proven
// answer with a key left out is refused (mismatch), and so is one older
// than the last checkpoint the node verified (rollback).
func TestPeerProvenSnapshot(t *testing.T) {
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	ctx := context.Background()
	var recs []record.Record
	for i := range 3 {
		r, err := pub.Put(ctx, "keys", fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	eventually(t, testscale.Duration(20*time.Second), "a snapshot covering the writes", func() bool {
		snap, err := pub.Snapshot(ctx, "keys")
		return err == nil && snap.Version >= recs[2].Version
	})
	peerReg := prometheus.NewRegistry()
	peer, err := dataplane.Open(ctx, dataplane.Config{
		Origin: store, Gossip: soloGossip("peer"), Timing: oftenTiming(), Verifier: verifierOf(t, signer),
		Namespaces: []string{"keys"}, Logger: quiet(), Registerer: peerReg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var old record.Snapshot
	var oldProof *checkpoint.SnapshotProof
	eventually(t, testscale.Duration(20*time.Second), "the peer proving a snapshot holding the writes", func() bool {
		old, oldProof, err = peer.ProvenSnapshot("keys")
		return err == nil && len(old.Records) == 3
	})
	srv := httptest.NewServer(dataplane.SnapshotHandler(peer, peerToken))
	defer srv.Close()
	httpPeer := &dataplane.HTTPPeer{URL: srv.URL, Token: peerToken}

	store.down.Store(true)
	open := func(t *testing.T, dataDir string, peers ...dataplane.SnapshotSource) (*dataplane.Node, *prometheus.Registry) {
		t.Helper()
		reg := prometheus.NewRegistry()
		n, err := dataplane.Open(ctx, dataplane.Config{
			Origin: store, Verifier: verifierOf(t, signer), RequireCheckpoints: true, Namespaces: []string{"keys"},
			Peers: peers, DataDir: dataDir, WarmTimeout: 200 * time.Millisecond, Logger: quiet(), Registerer: reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n, reg
	}

	t.Run("proven", func(t *testing.T) {
		n, reg := open(t, "", httpPeer)
		if !n.Ready() {
			t.Fatal("not warmed from the proving peer")
		}
		if v, err := n.Get(ctx, "keys", recs[1].Key); err != nil || v.Version != recs[1].Version {
			t.Fatalf("key from the proven peer snapshot: %+v, %v", v, err)
		}
		if c := counter(t, reg, "dataplane_node_checkpoint_matches_total", ""); c != 1 {
			t.Fatalf("%v matches, want 1 (the peer's proof)", c)
		}
		if cur := n.LogCursor(); cur < old.Version {
			t.Fatalf("log resumes at %s, before the proof's version %s", cur, old.Version)
		}
	})
	t.Run("key left out", func(t *testing.T) {
		cut := old
		cut.Records = append([]record.Record(nil), old.Records[1:]...)
		n, reg := open(t, "", fixedProvenPeer{cut, oldProof})
		if n.Ready() {
			t.Fatal("warmed from a proven snapshot with a key left out")
		}
		if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "mismatch"); c != 1 {
			t.Fatalf("mismatch refusals %v, want 1", c)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		// A later checkpoint, kept by the node as verified.
		store.down.Store(false)
		if _, err := pub.Put(ctx, "keys", "k9", []byte("later")); err != nil {
			t.Fatal(err)
		}
		var later *checkpoint.SnapshotProof
		eventually(t, testscale.Duration(20*time.Second), "a later matched checkpoint on the peer", func() bool {
			_, p, err := peer.ProvenSnapshot("keys")
			later = p
			return err == nil && p.Checkpoint.Version > oldProof.Checkpoint.Version
		})
		store.down.Store(true)
		dataDir := t.TempDir()
		b, err := later.Checkpoint.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataDir, "keys.checkpoint"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		n, reg := open(t, dataDir, fixedProvenPeer{old, oldProof})
		if n.Ready() {
			t.Fatal("warmed from a proven snapshot older than the kept checkpoint")
		}
		if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "rollback"); c != 1 {
			t.Fatalf("rollback refusals %v, want 1", c)
		}
	})
}

// TestMismatchReloadsProvenSnapshot: a node whose state lacks a key the
// log will never name again (its local file knew the key's version
// without the value or a seal, so the verifying node skipped it) does not
// match the publisher's checkpoints even after reading the log; it then
// reloads the namespace from the origin's snapshot, verified whole with
// its proof, and matches.
func TestMismatchReloadsProvenSnapshot(t *testing.T) {
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	ctx := context.Background()
	a, err := pub.Put(ctx, "keys", "a", []byte("A"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pub.Put(ctx, "keys", "b", []byte("B"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(20*time.Second), "a snapshot covering the writes", func() bool {
		snap, err := pub.Snapshot(ctx, "keys")
		return err == nil && snap.Version >= b.Version
	})
	dataDir := t.TempDir()
	file, err := record.MarshalSnapshot(record.Snapshot{
		Namespace: "keys", Version: record.MakeVersion(time.Now(), 0), Records: []record.Record{a},
		Known: []record.Change{{Namespace: "keys", Key: b.Key, Version: b.Version}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "keys.snapshot"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{
		Origin: store, Gossip: soloGossip("a"), Timing: oftenTiming(), Verifier: verifierOf(t, signer),
		Namespaces: []string{"keys"}, DataDir: dataDir, WarmTimeout: 200 * time.Millisecond, Logger: quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, ok := n.Known("keys", b.Key); ok {
		t.Fatal("the unsigned Known entry was loaded: the test does not test what it says")
	}
	store.down.Store(false)
	eventually(t, testscale.Duration(30*time.Second), "a checkpoint match", func() bool {
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1
	})
	if c := counter(t, reg, "dataplane_node_checkpoint_mismatches_total", "after_read"); c < 1 {
		t.Fatalf("matched without a mismatch after a read first (%v): the test does not test what it says", c)
	}
	if v, err := n.Get(ctx, "keys", b.Key); err != nil || v.Version != b.Version {
		t.Fatalf("the key the state lacked: %+v, %v", v, err)
	}
}
