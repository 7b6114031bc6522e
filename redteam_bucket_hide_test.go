package dataplane_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// TestBucketWriterCannotHideRevocation: a bucket writer (write access to
// the directory origin, no signing key) removes a delete's entry from the
// change log within LogSettle of its append, and puts the key's previous,
// validly signed record object back. The node (verifying, checkpoints
// enforced, no gossip push) must refuse the deleted key within D plus the
// skew: either it learns the delete, or it cannot prove keys current and
// fails closed. What the README allows this writer is to withhold, never
// to keep a revoked key verifying past D; and the publisher, which
// acknowledged the delete, finds its entry missing from the log before it
// signs past it and publishes the delete again, so the key is answered
// "not found" (not merely refused while keys fails closed).
func TestBucketWriterCannotHideRevocation(t *testing.T) {
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	hideDelete(t, store, raw, signer, pub, pub, "the publisher")
}

// hideDelete is the bucket writer's attack on a revocation: issuer (a
// publisher issuing checkpoints, named issuerName in failures) puts a key
// of keys and snapshots it, and a verifying node (checkpoints enforced,
// no gossip push, keys failing closed) serves it; acker (the same
// publisher or another on its own handle) deletes the key while the node
// cannot read the bucket, and the writer removes the delete's log entry
// and puts the key's previous signed record back. The node must answer
// the key "not found" within D plus the skew of the delete: acker finds
// its delete missing from the log and publishes it again. It returns the
// key's record and the delete acker acknowledged.
func hideDelete(t *testing.T, store *partsOutage, raw *dir.Store, signer *sign.Signer, issuer, acker *publisher.Publisher, issuerName string) (rec, del record.Record) {
	t.Helper()
	ctx := context.Background()
	rec, err := issuer.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(3 * time.Second)
	n, reg := openCheckingNode(t, store, signer, "a", d)
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match and the key served", func() bool {
		v, err := n.Get(ctx, "keys", rec.Key)
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1 && err == nil && v.Version == rec.Version
	})

	// The writer works while the node cannot read the bucket, so that it
	// never sees the entry (the publishers' own handles are unaffected).
	objPath := raw.RecordPath("keys", rec.Key)
	old, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	del, err = acker.Delete(ctx, "keys", rec.Key)
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
	// (Had the writer been slower than the publisher's LogSettle, the
	// issuer would have read the entry: the outcome wanted is the same.)

	bound := d + testscale.Duration(2*time.Second)
	matchesAtAck := counter(t, reg, "dataplane_node_checkpoint_matches_total", "")
	eventually(t, bound+testscale.Duration(10*time.Second), "the deleted key answered not found: the delete published again", func() bool {
		_, err := n.Get(ctx, "keys", rec.Key)
		if err == nil && time.Since(ack) > bound {
			t.Fatalf("the deleted key (at %s) still verifies %v after the delete (bound D + skew %v); checkpoint matches since the delete: %v: %s signed the state the writer left in the log",
				del.Version, time.Since(ack).Round(time.Millisecond), bound, counter(t, reg, "dataplane_node_checkpoint_matches_total", "")-matchesAtAck, issuerName)
		}
		return errors.Is(err, dataplane.ErrNotFound)
	})
	return rec, del
}
