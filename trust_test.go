package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
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
	cfg := publisher.DefaultConfig()
	cfg.Signer = signer
	cfg.Logger = quiet()
	cfg.Schemas = schema.NewRegistry()
	cfg.LogRetention, cfg.TombstoneHorizon = 0, 0
	cfg.PublishBudget, cfg.ClockSkew, cfg.LogSettle = time.Second, 100*time.Millisecond, 1200*time.Millisecond
	cfg.Checkpoint = publisher.CheckpointConfig{Lifetime: 20 * time.Second, Interval: 200 * time.Millisecond}
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
	t.Cleanup(func() { cancel(); <-done })
	return p
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
			Origin: store, Gossip: &g, Follow: oftenFollow(), Verifier: verifierOf(t, signer),
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
