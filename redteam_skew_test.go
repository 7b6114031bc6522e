package dataplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/record"
)

// TestCheckpointSkewCoversRecordSkew: a node accepts a signed change whose
// version is up to Timing.MaxFutureSkew() (5 s) ahead of its clock (README,
// "Versions bounded by time"), so a publisher 4 s ahead of a node (each
// within 2 s of the origin, as the publisher's clock check allows)
// writes changes the node takes. Its checkpoints, issued on the same
// clock, must be taken too: a node that takes the changes but refuses
// every checkpoint as "from the future" never matches, and keys fails
// closed on it for as long as the skew lasts.
func TestCheckpointSkewCoversRecordSkew(t *testing.T) {
	ctx := context.Background()
	signer := newSigner(t)
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{ // the default log settle (2 s)
		Origin: newStore(t), Gossip: soloGossip("behind"), Namespaces: []string{"keys"}, Verifier: verifierOf(t, signer), RequireCheckpoints: true,
		Logger: quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	pubNow := time.Now().Add(4 * time.Second) // the publisher's clock
	// A change at the publisher's now: taken (4 s < MaxFutureSkew).
	r := signer.Sign(record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: record.MakeVersion(pubNow, 0)})
	if err := n.Publish(ctx, r); err != nil {
		t.Fatal(err)
	}
	eventually(t, testscale.Duration(5*time.Second), "the change 4 s ahead taken", func() bool {
		k, ok := n.Known("keys", "k")
		return ok && k.Version == r.Version
	})
	// Its checkpoint, as the publisher issues it: version its now less
	// LogSettle, issued at its now.
	c := signedCheckpoint(t, signer, record.MakeVersion(pubNow.Add(-1200*time.Millisecond), 0), pubNow)
	if err := dataplane.OfferCheckpoint(n, marshal(t, c)); err != nil {
		t.Fatalf("a checkpoint issued on the clock of a change the node took: %v", err)
	}
}
