package dataplane_test

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
	"github.com/dataplane/dataplane/sign"
)

// stoppablePublisher is signedPublisher whose checkpoint issuer can be
// stopped before the test ends (a publisher that stopped issuing, or a
// bucket writer deleting every new checkpoint it stores).
func stoppablePublisher(t *testing.T, store origin.Store, signer *sign.Signer) (*publisher.Publisher, func()) {
	t.Helper()
	cfg := publisher.DefaultConfig()
	cfg.Signer, cfg.Logger, cfg.Schemas = signer, quiet(), schema.NewRegistry()
	cfg.TombstoneHorizon = 0
	cfg.Timing = revocationTiming()
	cfg.Timing.CheckpointLifetime, cfg.IssueCheckpoints = 20*time.Second, true
	cfg.Timing.LogInterval = 200 * time.Millisecond // its issuer reads the log, and checkpoints, that often
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
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return p, stop
}

// TestBucketWriterOldCheckpointIsNoProof: the publisher stops issuing (or
// a bucket writer deletes every new checkpoint) and the writer puts back
// an older checkpoint of keys, validly signed and unexpired, as the
// latest. The log stays readable and signed changes keep flowing through
// it. The node must refuse the old checkpoint (rollback, counted) and,
// with nothing newer matching, fail closed at D: neither the replayed
// checkpoint nor the log reads nor the changes prove keys current (a
// freeze attack, TUF's timestamp).
func TestBucketWriterOldCheckpointIsNoProof(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub, stopIssuer := stoppablePublisher(t, raw, signer)
	held, err := pub.Put(ctx, "keys", "held", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(3 * time.Second)
	n, reg := openCheckingNode(t, store, signer, "a", d)
	matches := func() float64 { return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") }
	var old *checkpoint.Checkpoint
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint stored and a match", func() bool {
		old, err = checkpoint.GetLatest(ctx, raw, "keys")
		return err == nil && matches() >= 1
	})
	latest, stopFlow := flow(t, pub, nil) // signed changes, through the origin and the log only
	defer stopFlow()
	var newer *checkpoint.Checkpoint
	eventually(t, testscale.Duration(20*time.Second), "a newer checkpoint stored", func() bool {
		newer, err = checkpoint.GetLatest(ctx, raw, "keys")
		return err == nil && newer.Version > old.Version
	})
	stopIssuer()
	// The node has verified the newer one (whether its state matches it
	// yet or not: the log may lag on a loaded machine); here it is
	// handed over as gossip or the next log read would.
	b, err := newer.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := dataplane.OfferCheckpoint(n, b); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.PutLatest(ctx, raw, old); err != nil { // the writer's replay
		t.Fatal(err)
	}
	stopped := time.Now()
	reads := counter(t, reg, "dataplane_follow_log_reads_total", "ok")
	// Refused as older than the last verified, or, on a machine slow
	// enough that it outlived its lifetime meanwhile, as expired.
	refused := func() float64 {
		return counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "rollback") + counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "expired")
	}
	eventually(t, d+testscale.Duration(20*time.Second), "the replayed checkpoint refused and keys failing closed", func() bool {
		_, err := n.Get(ctx, "keys", held.Key)
		return refused() >= 1 && errors.Is(err, dataplane.ErrUnavailable)
	})
	if counter(t, reg, "dataplane_follow_log_reads_total", "ok") <= reads {
		t.Fatal("no log read succeeded after the issuer stopped: the test does not test what it says")
	}
	// Signed changes written after the issuer stopped reach the node by
	// the log, and prove nothing.
	eventually(t, testscale.Duration(10*time.Second), "a change written after the issuer stopped reaching the node", func() bool {
		l := latest()
		k, ok := n.Known("keys", l.Key)
		return ok && k.Version >= l.Version && l.Version.Time().After(stopped)
	})
	if _, err := n.Get(ctx, "keys", held.Key); !errors.Is(err, dataplane.ErrUnavailable) {
		t.Fatalf("keys proven current again by log reads and changes alone: %v", err)
	}
}

// TestBucketWriterReplaysOldSignedRecord: a key is written and deleted
// by the publisher; a bucket writer then puts the key's earlier, validly
// signed record back as the stored object and appends its change to the
// log again under a newer entry name (the directory origin orders the log
// by name). Every path that reads them (log reads, origin reads) brings
// an older version than the delete: the node must keep answering "not
// found" and keep matching the publisher's checkpoints.
func TestBucketWriterReplaysOldSignedRecord(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	rec, err := pub.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	objPath := raw.RecordPath("keys", rec.Key)
	oldObj, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	del, err := pub.Delete(ctx, "keys", rec.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	n, reg := openCheckingNode(t, store, signer, "a", 0)
	matches := func() float64 { return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") }
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match", func() bool { return matches() >= 1 })
	if k, ok := n.Known("keys", rec.Key); !ok || !k.Tombstone || k.Version != del.Version {
		eventually(t, testscale.Duration(20*time.Second), "the delete known", func() bool {
			k, ok := n.Known("keys", rec.Key)
			return ok && k.Tombstone && k.Version == del.Version
		})
	}

	// The writer: the old object back, and the old change as the newest
	// log entry.
	if err := os.WriteFile(objPath, oldObj, 0o644); err != nil {
		t.Fatal(err)
	}
	entry, err := record.Marshal(record.Record{Namespace: "keys", Key: rec.Key, Version: rec.Version, Seal: rec.Seal})
	if err != nil {
		t.Fatal(err)
	}
	name := record.MakeVersion(time.Now(), 0).String() + "-" + hex.EncodeToString([]byte("replay00"))
	if err := os.WriteFile(filepath.Join(raw.Root(), "log", name), entry, 0o644); err != nil {
		t.Fatal(err)
	}
	if back, err := raw.Get(ctx, "keys", rec.Key, 0); err != nil || back.Version != rec.Version {
		t.Fatalf("the replayed object reads back as %+v, %v", back, err)
	}
	// Some log reads (which reach the replayed entry: it is named
	// after the cursor) and new checkpoint matches later:
	reads, m0 := counter(t, reg, "dataplane_follow_log_reads_total", "ok"), matches()
	eventually(t, testscale.Duration(20*time.Second), "more log reads and a match", func() bool {
		if _, err := n.Get(ctx, "keys", rec.Key); !errors.Is(err, dataplane.ErrNotFound) {
			t.Fatalf("the deleted key after the writer's replay: %v, want not found", err)
		}
		return counter(t, reg, "dataplane_follow_log_reads_total", "ok") >= reads+5 && matches() > m0
	})
	// An origin read, as a refresh would make, brings the old object too.
	if _, err := n.Get(ctx, "keys", rec.Key); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("the deleted key: %v, want not found", err)
	}
	if k, ok := n.Known("keys", rec.Key); !ok || !k.Tombstone || k.Version != del.Version {
		t.Fatalf("known %+v, want the delete at %s", k, del.Version)
	}
}

// refusingPeer answers every snapshot request with an error, proven or
// not: a peer that will not help.
type refusingPeer struct{}

func (refusingPeer) GetSnapshot(context.Context, string) (record.Snapshot, error) {
	return record.Snapshot{}, errors.New("refused")
}

func (refusingPeer) GetProvenSnapshot(context.Context, string) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	return record.Snapshot{}, nil, errors.New("refused")
}

// TestPeerRefusingToAnswerCostsNothing: all a peer can do to a node that
// warms while the origin is down is refuse to answer; the node then warms
// from its own local file (kept with its last verified checkpoint by its
// previous run) and serves what it held, keys failing closed until a
// checkpoint matches; once the origin answers, keys is proven again.
func TestPeerRefusingToAnswerCostsNothing(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	route, err := pub.Put(ctx, "routes", "a.example.com", []byte(`{"upstreams":["http://127.0.0.1:1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pub.Put(ctx, "keys", "k", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"routes", "keys"} {
		if _, err := pub.Snapshot(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := t.TempDir()
	cfg := dataplane.Config{
		Origin: store, Gossip: soloGossip("a"), Timing: oftenTiming(), Verifier: verifierOf(t, signer), DataDir: dataDir,
		Peers: []dataplane.SnapshotSource{refusingPeer{}}, WarmTimeout: 200 * time.Millisecond, Logger: quiet(), Registerer: prometheus.NewRegistry(),
	}
	first, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := cfg.Registerer.(*prometheus.Registry)
	eventually(t, testscale.Duration(20*time.Second), "the first run matching checkpoints of both namespaces", func() bool {
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "keys") >= 1 && counter(t, reg, "dataplane_node_checkpoint_matches_total", "routes") >= 1
	})
	first.Close() // writes its local files and the checkpoints they hold
	for _, f := range []string{"keys.snapshot", "keys.checkpoint", "routes.snapshot", "routes.checkpoint"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Fatalf("the first run left no %s: %v", f, err)
		}
	}

	store.down.Store(true)
	reg = prometheus.NewRegistry()
	cfg.Gossip, cfg.Registerer = soloGossip("a2"), reg
	n, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !n.Ready() {
		t.Fatal("not warmed from the local file with the peer refusing")
	}
	if c := counter(t, reg, "dataplane_node_warm_loads_total", "local"); c != 2 {
		t.Fatalf("%v namespaces warmed from the local file, want 2", c)
	}
	if v, err := n.Get(ctx, "routes", route.Key); err != nil || v.Version != route.Version {
		t.Fatalf("route from the local file: %+v, %v", v, err)
	}
	if _, err := n.Get(ctx, "keys", key.Key); !errors.Is(err, dataplane.ErrUnavailable) {
		t.Fatalf("keys before any match: %v, want unavailable (enforced by the kept checkpoint)", err)
	}
	store.down.Store(false)
	eventually(t, testscale.Duration(20*time.Second), "the key served once a checkpoint matches", func() bool {
		v, err := n.Get(ctx, "keys", key.Key)
		return err == nil && v.Version == key.Version
	})
}

// TestBucketWriterRollsBackSnapshot: rollback at the snapshot level. A
// bucket writer puts back an older snapshot of keys with its own valid
// proof (both once written by the publisher, kept by the writer) and trims
// the change log past a running node, so that the node must reload from
// snapshots. The node has matched a newer checkpoint: it must refuse the
// older snapshot (rollback, counted) and keep serving what it holds: a key
// deleted after that snapshot stays deleted, a key created after it stays.
func TestBucketWriterRollsBackSnapshot(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	revoked, err := pub.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	var s1 record.Snapshot
	eventually(t, testscale.Duration(20*time.Second), "a snapshot covering the first write", func() bool {
		s1, err = pub.Snapshot(ctx, "keys")
		return err == nil && s1.Version >= revoked.Version
	})
	s1, err = raw.GetSnapshot(ctx, "keys")
	if err != nil {
		t.Fatal(err)
	}
	p1, err := checkpoint.GetProof(ctx, raw, "keys", s1.Version)
	if err != nil {
		t.Fatal(err)
	}
	n, reg := openCheckingNode(t, store, signer, "a", 0)
	later, err := pub.Put(ctx, "keys", "later", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	del, err := pub.Delete(ctx, "keys", revoked.Key)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(30*time.Second), "a match newer than the delete", func() bool {
		age := gauge(t, reg, "dataplane_node_checkpoint_match_age_seconds")
		return age >= 0 && time.Duration(age*float64(time.Second)) < time.Since(del.Version.Time())
	})

	// The writer.
	if err := raw.PutSnapshot(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.PutProof(ctx, raw, p1); err != nil {
		t.Fatal(err)
	}
	if back, err := raw.GetSnapshot(ctx, "keys"); err != nil || back.Version != s1.Version {
		t.Fatalf("the old snapshot reads back at %s (%v), want %s", back.Version, err, s1.Version)
	}
	truncated := counter(t, reg, "dataplane_follow_log_reads_total", "truncated")
	if err := raw.TrimLog(ctx, record.MakeVersion(time.Now(), 0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(20*time.Second), "the old snapshot refused as a rollback after the log was found trimmed", func() bool {
		return counter(t, reg, "dataplane_follow_log_reads_total", "truncated") > truncated &&
			counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "rollback") >= 1
	})
	if _, err := n.Get(ctx, "keys", revoked.Key); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("the key deleted after the old snapshot: %v, want not found", err)
	}
	if k, ok := n.Known("keys", later.Key); !ok || k.Version != later.Version {
		t.Fatalf("the key created after the old snapshot: known %+v, %v", k, ok)
	}
}
