package dataplane_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/record"
)

// TestExpiredCheckpointProvesNothing: a node whose clock is ahead of the
// publisher's by more than a checkpoint's lifetime sees every checkpoint
// expired. Validly signed and matching its state, such a checkpoint must
// still be refused (freeze: TUF's timestamp role), counted as expired,
// and keys, enforced from the start, must fail closed rather than count
// it as a proof; the same checkpoint unexpired matches and keys answers.
func TestExpiredCheckpointProvesNothing(t *testing.T) {
	ctx := context.Background()
	signer := newSigner(t)
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{
		Origin: newStore(t), Gossip: soloGossip("a"), Namespaces: []string{"keys"}, Verifier: verifierOf(t, signer), RequireCheckpoints: true,
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: time.Hour}},
		Logger:    quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	now := time.Now()
	// Of the empty namespace (the origin has no snapshot of keys): the
	// node's state matches it. Issued two minutes ago, expired one
	// minute ago: what a node one minute ahead of a 1-minute lifetime
	// sees.
	expired := &checkpoint.Checkpoint{Namespace: "keys", Version: record.MakeVersion(now.Add(-2*time.Minute), 0), IssuedAt: now.Add(-2 * time.Minute), ExpiresAt: now.Add(-time.Minute)}
	if err := expired.Sign(signer); err != nil {
		t.Fatal(err)
	}
	if err := dataplane.OfferCheckpoint(n, marshal(t, expired)); !errors.Is(err, checkpoint.ErrExpired) {
		t.Fatalf("an expired checkpoint the state matches: %v, want ErrExpired", err)
	}
	if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "expired"); c != 1 {
		t.Fatalf("expired refusals %v, want 1", c)
	}
	if c := counter(t, reg, "dataplane_node_checkpoint_matches_total", ""); c != 0 {
		t.Fatalf("%v matches from an expired checkpoint", c)
	}
	if _, err := n.Get(ctx, "keys", "any"); !errors.Is(err, dataplane.ErrUnavailable) {
		t.Fatalf("keys after only an expired checkpoint: %v, want ErrUnavailable", err)
	}
	live := signedCheckpoint(t, signer, record.MakeVersion(now.Add(-time.Second), 0), now)
	if err := dataplane.OfferCheckpoint(n, marshal(t, live)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Get(ctx, "keys", "any"); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("keys after a live match: %v, want not found", err)
	}
}

// TestNodeClockAheadStillFailsClosed: a verifying node whose clock runs 10
// s ahead (its log follower's clock here: the follower moves its cursor to
// its own now less LogSettle, past the versions the publisher takes until
// then) never reads from the log a delete that the publisher appends
// there, and no gossip carries it. Its state then no longer matches the
// publisher's checkpoints, which name the delete: the deleted key must be
// refused (not found once a reload from the origin's proven snapshot and
// the log catches the node up, or unavailable at D) within D plus the
// skew.
func TestNodeClockAheadStillFailsClosed(t *testing.T) {
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
	tm := oftenTiming()
	ahead := tm.LogSettle + 10*time.Second // the cursor runs 10 s ahead of the publisher's versions
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{
		Origin: store, Gossip: soloGossip("ahead"), Timing: tm, Verifier: verifierOf(t, signer),
		Now:       func() time.Time { return time.Now().Add(ahead) },
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: d}},
		Logger:    quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	eventually(t, testscale.Duration(20*time.Second), "the node matching a checkpoint and serving the key", func() bool {
		v, err := n.Get(ctx, "keys", rec.Key)
		return counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1 && err == nil && v.Version == rec.Version
	})
	eventually(t, testscale.Duration(10*time.Second), "the log cursor ahead of the clock", func() bool {
		return n.LogCursor().Time().After(time.Now().Add(5 * time.Second))
	})
	del, err := pub.Delete(ctx, "keys", rec.Key) // in the origin and the log; no gossip
	if err != nil {
		t.Fatal(err)
	}
	ack := time.Now()
	bound := d + ahead + testscale.Duration(time.Second)
	served := 0
	eventually(t, bound+testscale.Duration(10*time.Second), "the deleted key refused", func() bool {
		_, err := n.Get(ctx, "keys", rec.Key)
		if err == nil {
			if time.Since(ack) > bound {
				t.Fatalf("the deleted key (at %s) still served %v after the delete; bound D + skew = %v", del.Version, time.Since(ack), bound)
			}
			served++
		}
		return errors.Is(err, dataplane.ErrNotFound) || errors.Is(err, dataplane.ErrUnavailable)
	})
	t.Logf("refused %v after the delete (served %d times before)", time.Since(ack).Round(time.Millisecond), served)
}
