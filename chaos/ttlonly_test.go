package chaos

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/schema"
)

// TestTTLOnlyFailsClosed: a node without gossip proves itself current by
// reading the change log, so its keys namespace (D = 2 s) serves while the
// origin is up, even with a fresh window far longer than D and no change
// flowing; fails closed once the origin (and so the log) has been down
// longer than D, while routes keeps serving stale; and serves again once
// the origin is back and the log has been read.
func TestTTLOnlyFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for D to pass")
	}
	const d = 2 * time.Second
	raw, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pcfg := publisher.DefaultConfig()
	pcfg.Logger, pcfg.Schemas = discard(), schema.NewRegistry()
	pcfg.Namespaces = []string{"routes", "keys"}
	pub, err := publisher.New(raw, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, w := range [][2]string{{"routes", "h.example.com"}, {"keys", "ks/k1"}} {
		if _, err := pub.Put(ctx, w[0], w[1], []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.SnapshotAll(ctx); err != nil {
		t.Fatal(err)
	}

	faulty := NewFaultyStore(raw)
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour} // the TTL proves nothing within a run
	n, err := dataplane.Open(ctx, dataplane.Config{
		Origin: faulty, Cache: copts, Logger: discard(), Registerer: prometheus.NewRegistry(),
		// The log read every 200 ms, settled 300 ms behind: the publisher
		// above writes only before the node starts, so no publish budget
		// longer than that settle is ever in flight.
		Timing: origin.Timing{
			PublishBudget: 250 * time.Millisecond, ClockSkew: 50 * time.Millisecond,
			LogInterval: 200 * time.Millisecond, LogSettle: 300 * time.Millisecond, SnapshotLag: origin.DefaultSnapshotLag,
		},
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: d}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	// Origin up, nothing written, nothing read: the log reads alone keep
	// keys proven current, for longer than D (without them, no origin read
	// would renew the proof and the namespace would fail closed).
	keysStatus := func() dataplane.NamespaceStatus {
		for _, st := range n.Status().Namespaces {
			if st.Namespace == "keys" {
				return st
			}
		}
		t.Fatal("no status for keys")
		return dataplane.NamespaceStatus{}
	}
	if !pollUntil(10*time.Second, func() bool { return !keysStatus().FailingClosed }) {
		t.Fatalf("keys never proven current with the origin up: %+v", keysStatus())
	}
	upUntil := time.Now().Add(2 * d)
	for time.Now().Before(upUntil) {
		if st := keysStatus(); st.FailingClosed {
			t.Fatalf("keys failing closed with the origin up and no reads: heard %s ago", st.HeardAgo)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := n.Get(ctx, "keys", "ks/k1"); err != nil {
		t.Fatalf("keys with the origin up: %v", err)
	}

	// Origin down: within D plus a log interval, keys fails closed;
	// routes serves its last value, stale.
	faulty.SetMode(Down)
	down := time.Now()
	if !pollUntil(d+5*time.Second, func() bool {
		_, err := n.Get(ctx, "keys", "ks/k1")
		return errors.Is(err, dataplane.ErrUnavailable)
	}) {
		t.Fatalf("keys still served %s after the origin went down (D = %s)", time.Since(down), d)
	}
	if v, err := n.Get(ctx, "routes", "h.example.com"); err != nil || string(v.Data) != "v1" {
		t.Errorf("routes with the origin down: %+v, %v; want v1, served stale", v, err)
	}

	// Origin back: the next log read proves the node current again.
	faulty.SetMode(Healthy)
	if !pollUntil(10*time.Second, func() bool {
		v, err := n.Get(ctx, "keys", "ks/k1")
		return err == nil && string(v.Data) == "v1"
	}) {
		_, err := n.Get(ctx, "keys", "ks/k1")
		t.Fatalf("keys not served again after the origin came back: %v", err)
	}
}
