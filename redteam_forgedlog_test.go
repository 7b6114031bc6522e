package dataplane_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// TestBucketWriterForgedLogEntryIsNoDenialOfService: a bucket writer
// appends one change-log entry with a forged seal (a key id and signature
// of its own). Every verifying node refuses the entry; the publisher's
// checkpoints must not count it either, or no node can ever match them
// again and keys fails closed on the whole fleet for one appended object.
func TestBucketWriterForgedLogEntryIsNoDenialOfService(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer, stranger := newSigner(t), newSigner(t)
	pub := signedPublisher(t, raw, signer)
	rec, err := pub.Put(ctx, "keys", "held", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(3 * time.Second)
	n, reg := openCheckingNode(t, store, signer, "a", d)
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match", func() bool {
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1
	})
	forged := stranger.Sign(record.Record{Namespace: "keys", Key: "forged", Value: []byte("allow"), Version: record.MakeVersion(time.Now(), 0)})
	if err := raw.AppendLog(ctx, forged.Change()); err != nil {
		t.Fatal(err)
	}
	// Keys keeps being proven: a match newer than the forged entry, and
	// the held key answered (not unavailable).
	deadline := time.Now().Add(d + testscale.Duration(20*time.Second))
	for {
		_, err := n.Get(ctx, "keys", rec.Key)
		age := gauge(t, reg, "dataplane_node_checkpoint_match_age_seconds")
		if err == nil && age >= 0 && time.Since(forged.Version.Time()) > time.Duration(age*float64(time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint match past the forged log entry: last match %.1fs ago, held key: %v; mismatches after a log read %v: the publisher's checkpoints count an entry no node accepts",
				age, err, counter(t, reg, "dataplane_node_checkpoint_mismatches_total", "after_read"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := n.Get(ctx, "keys", "forged"); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("the forged key: %v, want not found", err)
	}
}

// TestBucketWriterCannotInjectThroughSnapshot: a bucket writer stores a
// record signed by a key nobody trusts, with its change-log entry, as a
// publisher without the signing key would. The publisher's next snapshot
// pass reads the log and the stored records: the snapshot and its proof
// (signed by the publisher) must not carry the forged record, since a
// node verifies a proven snapshot by one signature and hashing, not a
// signature per record at or below the proof's version. A node warmed
// from the origin must answer "not found" for the forged key.
func TestBucketWriterCannotInjectThroughSnapshot(t *testing.T) {
	ctx := context.Background()
	_, raw := newPartsStore(t)
	signer, stranger := newSigner(t), newSigner(t)
	pub := signedPublisher(t, raw, signer)
	if _, err := pub.Put(ctx, "keys", "held", []byte("allow")); err != nil {
		t.Fatal(err)
	}
	forged := stranger.Sign(record.Record{Namespace: "keys", Key: "forged", Value: []byte(`allow`), Version: record.MakeVersion(time.Now(), 0)})
	if _, err := origin.Publish(ctx, raw, forged); err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(30*time.Second), "a snapshot covering the forged write", func() bool {
		snap, err := pub.Snapshot(ctx, "keys")
		return err == nil && snap.Version >= forged.Version
	})
	n, reg := openCheckingNode(t, raw, signer, "fresh", 0)
	eventually(t, testscale.Duration(20*time.Second), "a checkpoint match", func() bool {
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1
	})
	if v, err := n.Get(ctx, "keys", "forged"); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("the forged key, signed by an untrusted key: %+v (value %q), %v; want not found", v, v.Data, err)
	}
}
