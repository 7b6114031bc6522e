package dataplane_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/internal/testscale"
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
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	rec, err := pub.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(3 * time.Second)
	n, reg := openCheckingNode(t, store, signer, "a", d)
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match and the key served", func() bool {
		v, err := n.Get(ctx, "keys", rec.Key)
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1 && err == nil && v.Version == rec.Version
	})

	// The writer works while the node cannot read the bucket, so that it
	// never sees the entry (the publisher's own writes are unaffected).
	objPath := raw.RecordPath("keys", rec.Key)
	old, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	del, err := pub.Delete(ctx, "keys", rec.Key)
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
			t.Fatalf("the deleted key (at %s) still verifies %v after the delete (bound D + skew %v); checkpoint matches since the delete: %v: the publisher signed the state the writer left in the log",
				del.Version, time.Since(ack).Round(time.Millisecond), bound, counter(t, reg, "dataplane_node_checkpoint_matches_total", "")-matchesAtAck)
		}
		return errors.Is(err, dataplane.ErrNotFound)
	})
}
