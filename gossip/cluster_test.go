package gossip

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPublishReachesEveryNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{n: 10})

	small := []byte(`{"upstream":"http://10.0.0.1"}`)
	start := time.Now()
	rec := c.publish(3, "routes", "example.com", small)
	eventually(t, 5*time.Second, func() bool { return c.has("routes", "example.com", rec.Version) }, "small change on all nodes")
	t.Logf("small value on all 10 nodes in %s", time.Since(start))
	for i, a := range c.appliers {
		h := a.get("routes", "example.com")
		if !h.inline || !bytes.Equal(h.value, small) {
			t.Errorf("node %d: holds %+v, want the value inline", i, h)
		}
	}

	// A value over InlineValueMax travels as an invalidation only.
	big := bytes.Repeat([]byte("x"), 2000)
	rec = c.publish(7, "routes", "big.example.com", big)
	eventually(t, 5*time.Second, func() bool { return c.has("routes", "big.example.com", rec.Version) }, "big change on all nodes")
	for i, a := range c.appliers {
		h := a.get("routes", "big.example.com")
		if i != 7 && (h.inline || h.value != nil) {
			t.Errorf("node %d: holds %+v, want a version floor without value", i, h)
		}
		if i == 7 && !h.inline {
			t.Errorf("publisher: holds %+v, want the value applied locally", h)
		}
	}

	// A delete is a tombstone, applied as such everywhere.
	rec = c.publish(0, "routes", "example.com", nil)
	eventually(t, 5*time.Second, func() bool { return c.has("routes", "example.com", rec.Version) }, "tombstone on all nodes")
	for i, a := range c.appliers {
		if h := a.get("routes", "example.com"); !h.tomb {
			t.Errorf("node %d: holds %+v, want a tombstone", i, h)
		}
	}

	// The eager push reaches every other member of the region: 9 per
	// publish. Which path delivers a change first is a race (on an idle
	// machine the push wins it every time; under -race on a loaded one
	// gossip sometimes does, as memberlist handles queued packets newest
	// first), so the test counts the pushes received, not who came first.
	received := func(path string) float64 {
		var sum float64
		for _, n := range c.nodes {
			sum += testutil.ToFloat64(n.m.received.WithLabelValues(path))
		}
		return sum
	}
	eventually(t, 5*time.Second, func() bool { return received("push") >= 27 }, "27 eager pushes received")
	var push, relay, gossip float64
	for _, n := range c.nodes {
		push += testutil.ToFloat64(n.m.applied.WithLabelValues("push"))
		relay += testutil.ToFloat64(n.m.applied.WithLabelValues("relay"))
		gossip += testutil.ToFloat64(n.m.applied.WithLabelValues("gossip"))
	}
	t.Logf("first deliveries: push %v, relay %v, gossip %v", push, relay, gossip)
}

func TestEagerPushAcrossRegions(t *testing.T) {
	t.Parallel()
	regions := []string{"eu", "us", "ap"}
	c := newCluster(t, clusterOpts{n: 12, regions: regions})

	for i := 0; i < 3; i++ {
		rec := c.publish(i, "keys", fmt.Sprintf("k%d", i), []byte("v"))
		eventually(t, 5*time.Second, func() bool { return c.has("keys", rec.Key, rec.Version) }, "change from region %s everywhere", regions[i])
	}
	var relay, relaySent, retries float64
	for _, n := range c.nodes {
		relay += testutil.ToFloat64(n.m.applied.WithLabelValues("relay"))
		relaySent += testutil.ToFloat64(n.m.sent.WithLabelValues("relay"))
		retries += testutil.ToFloat64(n.m.retries)
	}
	// Each publish sends to RelaysPerRegion=2 members of each of 2 other
	// regions, and each relay forwards the relay message to the other
	// relay of its region (plus any retries of unacknowledged sends).
	const want = 3 * 2 * (2 + 2*1)
	if relaySent < want || relaySent > want+retries {
		t.Errorf("relay messages sent = %v, want %d (+ up to %v retries)", relaySent, want, retries)
	}
	// Every relay message arrives; which path delivers first is a race
	// (see TestPublishReachesEveryNode), so first deliveries are only
	// logged.
	relayReceived := func() float64 {
		var sum float64
		for _, n := range c.nodes {
			sum += testutil.ToFloat64(n.m.received.WithLabelValues("relay"))
		}
		return sum
	}
	eventually(t, 5*time.Second, func() bool { return relayReceived() >= 3*2*2 }, "12 relay messages received")
	t.Logf("first deliveries by relay: %v of 12", relay)
	for _, m := range c.nodes[0].Members() {
		if m.Region == "" {
			t.Errorf("member %s has no region", m.Name)
		}
	}
}
