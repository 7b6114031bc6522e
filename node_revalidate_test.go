package dataplane_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// flaky fails record reads and log reads separately, on top of outage.
type flaky struct {
	*outage
	getsDown, logDown atomic.Bool
	failedGets        atomic.Int64
}

func (f *flaky) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if f.getsDown.Load() {
		f.failedGets.Add(1)
		return record.Record{}, f.err()
	}
	return f.outage.Get(ctx, ns, key, ifNewer)
}

func (f *flaky) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if f.logDown.Load() {
		return nil, f.err()
	}
	return f.outage.ReadLog(ctx, after, limit)
}

// counter sums the counters of family name whose labels include value
// (any, when value is empty).
func counter(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := value == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == value
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestRevalidationRetriesFailedReads is a regression test for a bug the
// chaos suite found: when a node's log position had been trimmed away, it
// revalidated everything it held, but dropped the records whose origin read
// failed, while its log position jumped ahead. A change it had missed was
// then never learned (until the record's fresh window ended), and every
// node of the cluster could serve an outdated version after the last heal.
// Failed reads are now retried until they succeed.
func TestRevalidationRetriesFailedReads(t *testing.T) {
	s := &flaky{outage: newStore(t)}
	clock := record.NewClock(nil)
	v1 := put(t, s, clock, "routes", "r.example.com", "v1")

	g := gossip.DefaultLocalConfig()
	g.Insecure = true
	g.Name, g.Region = "solo", "local"
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour} // no TTL to hide the miss
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Gossip: &g.Cluster, Timing: followTiming(50*time.Millisecond, 20*time.Millisecond), Cache: copts, Logger: quiet(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if v, err := n.Get(context.Background(), "routes", "r.example.com"); err != nil || v.Version != v1.Version {
		t.Fatalf("Get = %+v, %v", v, err)
	}

	// The node misses a change (no gossip, log unreadable), and the log is
	// trimmed past its position.
	s.logDown.Store(true)
	eventually(t, 10*time.Second, "a failed catch-up", func() bool { // the position stays behind
		return counter(t, reg, "dataplane_follow_log_reads_total", "error") >= 1
	})
	v2 := put(t, s, clock, "routes", "r.example.com", "v2")
	if err := s.TrimLog(context.Background(), clock.Now()); err != nil {
		t.Fatal(err)
	}

	// The log is back but record reads fail: the revalidation cannot read.
	s.getsDown.Store(true)
	s.logDown.Store(false)
	eventually(t, 10*time.Second, "a full revalidation", func() bool {
		return counter(t, reg, "dataplane_node_full_revalidations_total", "") >= 1
	})
	eventually(t, 10*time.Second, "a failed revalidation read", func() bool { return s.failedGets.Load() > 0 })

	s.getsDown.Store(false)
	eventually(t, 10*time.Second, "the node to learn v2", func() bool {
		v, err := n.Get(context.Background(), "routes", "r.example.com")
		return err == nil && v.Version == v2.Version
	})
}
