package dataplane_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// getsDown is a store whose record reads (Get) fail while down, while its
// change log, snapshots and checkpoints stay readable: a node learns every
// change's version and seal, and matches checkpoints, but cannot read a
// value.
type getsDown struct {
	origin.Store
	origin.SnapshotParts
	down atomic.Bool
}

func (g *getsDown) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if g.down.Load() {
		return record.Record{}, origin.ErrUnavailable
	}
	return g.Store.Get(ctx, ns, key, ifNewer)
}

// TestEnforcedNamespaceRefusesOutdatedValue: a key revoked by an update
// (a new value, say enabled:false) rather than a delete. The node learns
// the new version and its seal from the change log, so its state matches
// the publisher's checkpoints and the namespace is proven current; but
// the value cannot be read. Serving the old value stale would keep the
// revoked key verifying for as long as checkpoints keep matching, with no
// D to end it: on a namespace whose checkpoints are enforced, a fail-closed
// namespace refuses a value it knows is outdated (Policy.RefuseOutdated
// implied).
func TestEnforcedNamespaceRefusesOutdatedValue(t *testing.T) {
	_, raw := newPartsStore(t)
	store := &getsDown{Store: raw, SnapshotParts: raw}
	signer := newSigner(t)
	pub := signedPublisher(t, raw, signer)
	ctx := context.Background()
	// Too large to travel inline in gossip: the node learns it from the log.
	allow := `{"enabled":true,"pad":"` + strings.Repeat("a", 2048) + `"}`
	first, err := pub.Put(ctx, "keys", "k", []byte(allow))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	g := gossip.DefaultLocalConfig()
	g.Insecure, g.Name, g.Region = true, "n0", "local"
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{
		Origin: store, Gossip: &g.Cluster, Timing: oftenTiming(), Verifier: verifierOf(t, signer),
		RequireCheckpoints: true,
		Staleness:          map[string]dataplane.Policy{"keys": {FailClosedAfter: time.Hour}},
		Logger:             quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	eventually(t, testscale.Duration(20*time.Second), "the key served, proven by a checkpoint", func() bool {
		v, err := n.Get(ctx, "keys", "k")
		return err == nil && v.Version == first.Version && counter(t, reg, "dataplane_node_checkpoint_matches_total", "") >= 1
	})

	store.down.Store(true)
	revoked, err := pub.Put(ctx, "keys", "k", []byte(`{"enabled":false}`))
	if err != nil {
		t.Fatal(err)
	}
	matches := counter(t, reg, "dataplane_node_checkpoint_matches_total", "")
	eventually(t, testscale.Duration(20*time.Second), "the new version known and a later checkpoint matched", func() bool {
		k, ok := n.Known("keys", "k")
		return ok && k.Version == revoked.Version && counter(t, reg, "dataplane_node_checkpoint_matches_total", "") > matches+1
	})
	for _, ns := range n.Status().Namespaces {
		if ns.Namespace == "keys" && ns.FailingClosed {
			t.Fatalf("keys failing closed: the test needs it proven current: %+v", ns)
		}
	}
	v, err := n.Get(ctx, "keys", "k")
	if !errors.Is(err, dataplane.ErrUnavailable) {
		t.Fatalf("Get of a key whose newer version %s is known but unreadable = version %s (stale %v), %v; want ErrUnavailable, not the old value served stale", revoked.Version, v.Version, v.Stale, err)
	}
	store.down.Store(false)
	eventually(t, testscale.Duration(20*time.Second), "the new value served once readable", func() bool {
		v, err := n.Get(ctx, "keys", "k")
		return err == nil && v.Version == revoked.Version
	})
}
