package dataplane_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// TestBucketWriterCannotHideAnotherProcessDelete: the cross-process form
// of TestBucketWriterCannotHideRevocation (redteam defect A2). Publisher A
// acknowledges a delete; a bucket writer (write access to the directory
// origin, no signing key) removes its log entry and puts the key's
// previous signed record back before issuer B, another publisher process
// (its own Publisher on its own handle of the directory, sharing nothing
// in memory with A), reads the log. B, which never saw the delete, then
// signs checkpoints without it, and a verifying node that never heard the
// delete by push matches them: the revoked key keeps verifying. A, which
// runs (Run: snapshots, repair and, with a signer, the check of the writes
// it acknowledged), finds its delete missing from the log once the log
// must hold it and publishes it again under a fresh version, which B's
// next checkpoint carries: the node answers "not found" within D plus the
// skew of the delete.
func TestBucketWriterCannotHideAnotherProcessDelete(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	// B: the checkpoint issuer, on its own handle.
	issuerB := signedPublisher(t, openDir(t, raw.Root()), signer)
	// A: a signing publisher that does not issue checkpoints, run as
	// `publish serve` runs it.
	cfg := publisher.DefaultConfig()
	cfg.Signer = signer
	cfg.Logger = quiet()
	cfg.Schemas = schema.NewRegistry()
	cfg.TombstoneHorizon = 0
	cfg.Timing = revocationTiming()
	cfg.Timing.CheckpointLifetime = 20 * time.Second
	cfg.Namespaces = []string{"keys"}
	pubA, err := publisher.New(openDir(t, raw.Root()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopA := context.WithCancel(ctx)
	doneA := make(chan struct{})
	go func() { defer close(doneA); _ = pubA.Run(runCtx) }()
	t.Cleanup(func() { stopA(); <-doneA })

	rec, del := hideDelete(t, store, raw, signer, issuerB, pubA, "issuer B")
	// And the key stays deleted on a fresh read of the origin: the
	// republished delete is stored.
	got, err := openDir(t, raw.Root()).Get(ctx, "keys", rec.Key, 0)
	if err != nil || !got.Tombstone || got.Version <= del.Version {
		t.Fatalf("stored %s/%s = %+v, %v; want a tombstone newer than %s", "keys", rec.Key, got, err, del.Version)
	}
}

// TestHiddenDeleteStaysOnPushedNode: what remains of the hidden delete
// when the publisher that acknowledged it runs no check (it stopped right
// after acknowledging): issuer B signs the state without the delete. A
// node that got the delete by push refuses to match those checkpoints,
// and never serves a key older than a version it holds: the deleted key
// stays refused on it, past D.
func TestHiddenDeleteStaysOnPushedNode(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	issuerB := signedPublisher(t, openDir(t, raw.Root()), signer)
	push := &pushSwitch{}
	cfg := publisher.DefaultConfig()
	cfg.Signer, cfg.Notifier = signer, push
	cfg.Logger, cfg.Schemas, cfg.TombstoneHorizon = quiet(), schema.NewRegistry(), 0
	cfg.Timing = revocationTiming()
	cfg.Timing.CheckpointLifetime = 20 * time.Second
	pubA, err := publisher.New(openDir(t, raw.Root()), cfg) // never Run: no check of what it acknowledges
	if err != nil {
		t.Fatal(err)
	}
	rec, err := issuerB.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := issuerB.Put(ctx, "keys", "other", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuerB.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(3 * time.Second)
	n, reg := openCheckingNode(t, store, signer, "a", d)
	push.node.Store(n)
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match and both keys served", func() bool {
		v, err := n.Get(ctx, "keys", rec.Key)
		w, err2 := n.Get(ctx, "keys", other.Key)
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1 && err == nil && v.Version == rec.Version &&
			err2 == nil && w.Version == other.Version
	})

	objPath := raw.RecordPath("keys", rec.Key)
	old, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	store.down.Store(true) // the node learns the delete by push alone
	del, err := pubA.Delete(ctx, "keys", rec.Key)
	if err != nil {
		t.Fatal(err)
	}
	ack := time.Now()
	if removed := removeLogEntries(t, raw.Root(), del.Version); removed != 1 {
		t.Fatalf("removed %d log entries of the delete, want 1", removed)
	}
	if err := os.WriteFile(objPath, old, 0o644); err != nil {
		t.Fatal(err)
	}
	store.down.Store(false)
	flow(t, issuerB, nil) // other signed changes: B issues a checkpoint every interval
	mismatches := counter(t, reg, "dataplane_node_checkpoint_mismatches_total", "")
	refused := func() {
		t.Helper()
		if v, err := n.Get(ctx, "keys", rec.Key); err == nil {
			t.Fatalf("the deleted key (at %s) verifies again (%s) %v after the delete on the node that got it by push",
				del.Version, v.Version, time.Since(ack).Round(time.Millisecond))
		}
	}
	// B goes on signing the state the writer left: the node holding the
	// delete refuses to match it.
	eventually(t, testscale.Duration(20*time.Second), "a mismatch of B's checkpoints without the delete", func() bool {
		refused()
		return counter(t, reg, "dataplane_node_checkpoint_mismatches_total", "") > mismatches
	})
	// And the key stays refused past D, whatever the node does next.
	until := time.Now().Add(d + testscale.Duration(time.Second))
	eventually(t, d+testscale.Duration(10*time.Second), "D passed with the key refused", func() bool {
		refused()
		return time.Now().After(until)
	})
	_, otherErr := n.Get(ctx, "keys", other.Key)
	t.Logf("after D: checkpoint matches %v, mismatches %v since the delete; another key: %v",
		counter(t, reg, "dataplane_node_checkpoint_matches_total", ""), counter(t, reg, "dataplane_node_checkpoint_mismatches_total", "")-mismatches, otherErr)
}

// logCut is a directory origin (with snapshot parts) whose change log
// alone can be cut.
type logCut struct {
	*partsOutage
	logDown atomic.Bool
}

func (o *logCut) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if o.logDown.Load() {
		return nil, o.err()
	}
	return o.partsOutage.ReadLog(ctx, after, limit)
}

// TestNodeWarmsFromSnapshotWithUnloggedWrite: the store holds a signed
// version of a key that the change log never named (its publisher died
// between the compare-and-swap and the log append), below a logged write
// of another key. The publisher's next snapshot must still verify against
// its own proof, so a node that starts with the log unreachable warms
// from it (RequireCheckpoints) and serves every key, the unlogged
// version included, instead of refusing the snapshot whole.
func TestNodeWarmsFromSnapshotWithUnloggedWrite(t *testing.T) {
	ctx := context.Background()
	parts, raw := newPartsStore(t)
	store := &logCut{partsOutage: parts}
	signer := newSigner(t)
	// Versions a minute old, so the snapshot's version (which trails
	// the clock by SnapshotLag) covers them all.
	lagged := func() time.Time { return time.Now().Add(-time.Minute) }
	cfg := publisher.DefaultConfig()
	cfg.Signer, cfg.Clock = signer, record.NewClock(lagged)
	cfg.Logger, cfg.Schemas, cfg.TombstoneHorizon = quiet(), schema.NewRegistry(), 0
	cfg.Timing = revocationTiming()
	cfg.Timing.CheckpointLifetime, cfg.IssueCheckpoints = 20*time.Second, true // a directory origin tells no time: no clock check
	pub, err := publisher.New(raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := pub.Put(ctx, "keys", "a", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	clock := record.NewClock(lagged)
	clock.Observe(a.Version)
	unlogged := signer.Sign(record.Record{Namespace: "keys", Key: "a", Value: []byte("unlogged"), Version: clock.Now()})
	if err := raw.CompareAndSwap(ctx, unlogged, a.Version); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // the publisher's next version is above it
	b, err := pub.Put(ctx, "keys", "b", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Version <= unlogged.Version {
		t.Fatalf("b at %s is not above the unlogged write %s (the test needs it)", b.Version, unlogged.Version)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	store.logDown.Store(true)
	n, reg := openCheckingNode(t, store, signer, "a", 0)
	if refused := counter(t, reg, "dataplane_node_checkpoint_refusals_total", ""); refused != 0 {
		t.Fatalf("the node refused %v snapshots or proofs: the publisher's snapshot does not verify against its own proof", refused)
	}
	for _, want := range []record.Record{unlogged, b} {
		v, err := n.Get(ctx, "keys", want.Key)
		if err != nil || v.Version != want.Version {
			t.Fatalf("Get %s = %v, %v; want version %s from the snapshot", want.Key, v.Version, err, want.Version)
		}
	}
}
