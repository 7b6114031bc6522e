package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

func TestParseStaleness(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]dataplane.Policy
		wantErr bool
	}{
		{in: "", want: map[string]dataplane.Policy{}},
		{in: "keys=5m", want: map[string]dataplane.Policy{"keys": {FailClosedAfter: 5 * time.Minute}}},
		{in: "keys=off, routes=2s", want: map[string]dataplane.Policy{"keys": {}, "routes": {FailClosedAfter: 2 * time.Second}}},
		{in: "keys=stale,configs=0", want: map[string]dataplane.Policy{"keys": {}, "configs": {}}},
		{in: "keys", wantErr: true},
		{in: "keys=-1s", wantErr: true},
		{in: "keys=soon", wantErr: true},
		{in: "Bad NS=1s", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := dataplane.ParseStaleness(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseStaleness(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("ParseStaleness(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDefaultPolicies(t *testing.T) {
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: newStore(t), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if p := n.Policy("keys"); p.FailClosedAfter != dataplane.DefaultFailClosedAfter {
		t.Errorf("keys policy %v, want fail-closed after %v", p, dataplane.DefaultFailClosedAfter)
	}
	if p := n.Policy("routes"); p.FailsClosed() {
		t.Errorf("routes policy %v, want serve-stale", p)
	}
	if p := n.Policy("configs"); p.FailsClosed() {
		t.Errorf("configs policy %v, want serve-stale", p)
	}
}

// TestRevokedKeyFailsClosedWhenCutOff: node b is cut off from gossip (a
// netsim partition between two real memberlist nodes) and from the origin;
// a key deleted meanwhile stops verifying on b within D (it answers
// ErrUnavailable), while routes keep serving; once b hears again it
// answers not-found.
func TestRevokedKeyFailsClosedWhenCutOff(t *testing.T) {
	const d = 2 * time.Second
	store := newStore(t) // b's view of the origin, which the test takes down
	clock := record.NewClock(nil)
	keyKey := sentinel.KeyRecordKey("ks", "secret-key")
	put(t, store.Store, clock, "keys", keyKey, `{"key_id":"k1","enabled":true}`)
	put(t, store.Store, clock, "routes", "api.example.com", "route-v1")

	net := netsim.New(1)
	open := func(name, zone string, st origin.Store, seeds []string) *dataplane.Node {
		tr, err := net.Listen("127.0.0.1", 0, zone, nil)
		if err != nil {
			t.Fatal(err)
		}
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name, g.Region, g.Transport, g.Seeds = name, "local", tr, seeds
		n, err := dataplane.Open(context.Background(), dataplane.Config{
			Origin: st, Gossip: &g.Cluster, Logger: quiet(),
			Timing:    followTiming(500*time.Millisecond, 200*time.Millisecond),
			Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: d}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a := open("a", "za", store.Store, nil)
	b := open("b", "zb", store, []string{a.GossipAddr()})
	eventually(t, 30*time.Second, "2 members", func() bool {
		return len(a.Members()) == 2 && len(b.Members()) == 2
	})
	ctx := context.Background()
	eventually(t, 30*time.Second, "b verifies the key", func() bool {
		_, err := b.Get(ctx, "keys", keyKey)
		return err == nil
	})
	if _, err := b.Get(ctx, "routes", "api.example.com"); err != nil {
		t.Fatal(err)
	}

	// Cut b off from gossip and from the origin, then revoke the key.
	net.Cut("za", "zb")
	store.down.Store(true)
	cut := time.Now()
	tomb := record.Record{Namespace: "keys", Key: keyKey, Version: clock.Now(), Tombstone: true}
	if _, err := origin.Publish(ctx, store.Store, tomb); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, tomb); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a sees the revocation", func() bool {
		_, err := a.Get(ctx, "keys", keyKey)
		return errors.Is(err, dataplane.ErrNotFound)
	})

	// b never learns of it, so it must fail closed within D of its last
	// proof (D after the cut at the latest, plus polling).
	var failed time.Time
	eventually(t, 60*time.Second, "b fails closed on keys", func() bool {
		_, err := b.Get(ctx, "keys", keyKey)
		switch {
		case errors.Is(err, dataplane.ErrUnavailable):
			failed = time.Now()
			return true
		case errors.Is(err, dataplane.ErrNotFound):
			t.Fatalf("b learned of the revocation while cut off: %v", err)
		}
		return false
	})
	st := statusOf(t, b, "keys")
	if !st.FailingClosed || st.Heard.IsZero() || failed.Sub(st.Heard) <= d {
		t.Fatalf("b's keys status %+v at %v: want failing closed with a proof older than %v", st, failed, d)
	}
	if st.Heard.After(cut) {
		t.Fatalf("b's keys proof %v is after the cut %v: it heard something while cut off", st.Heard, cut)
	}
	// Routes serve stale for ever.
	if v, err := b.Get(ctx, "routes", "api.example.com"); err != nil || string(v.Data) != "route-v1" {
		t.Fatalf("b's route while cut off: %+v, %v; want route-v1 served", v, err)
	}
	if rst := statusOf(t, b, "routes"); rst.FailingClosed || rst.Policy != "serve-stale" {
		t.Fatalf("b's routes status %+v: want serve-stale, not failing closed", rst)
	}
	// The sentinel's memory path fails closed too.
	if _, err, ok := b.Cached("keys", keyKey); !ok || !errors.Is(err, dataplane.ErrUnavailable) {
		t.Fatalf("b.Cached(keys) = %v, %v; want ErrUnavailable from memory", err, ok)
	}

	// Heal: b reads the log again and answers the revocation.
	store.down.Store(false)
	net.HealAll()
	eventually(t, 60*time.Second, "b answers not-found after healing", func() bool {
		_, err := b.Get(ctx, "keys", keyKey)
		return errors.Is(err, dataplane.ErrNotFound)
	})
	if st := statusOf(t, b, "keys"); st.FailingClosed {
		t.Fatalf("b's keys status after healing %+v: still failing closed", st)
	}
}

// TestFailClosedTTLOnly: without gossip, origin reads are the proof: keys
// verify while the origin answers (even past D), and fail closed within D
// of the origin going down; routes serve stale. The fresh window must not
// be longer than D (the values within it are not read again).
func TestFailClosedTTLOnly(t *testing.T) {
	const d = time.Second
	store := newStore(t)
	clock := record.NewClock(nil)
	keyKey := sentinel.KeyRecordKey("ks", "k")
	put(t, store.Store, clock, "keys", keyKey, `{"key_id":"k1","enabled":true}`)
	put(t, store.Store, clock, "routes", "h.example.com", "r1")
	copts := cache.DefaultConfig()
	copts.Default.Fresh = d / 2
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: store, Logger: quiet(), Cache: copts,
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: d}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := context.Background()
	start := time.Now()
	for time.Since(start) < 3*d {
		if _, err := n.Get(ctx, "keys", keyKey); err != nil {
			t.Fatalf("key read with the origin up, %v after start: %v", time.Since(start), err)
		}
		if _, err := n.Get(ctx, "routes", "h.example.com"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	store.down.Store(true)
	eventually(t, 30*time.Second, "keys fail closed", func() bool {
		_, err := n.Get(ctx, "keys", keyKey)
		return errors.Is(err, dataplane.ErrUnavailable)
	})
	if v, err := n.Get(ctx, "routes", "h.example.com"); err != nil || string(v.Data) != "r1" {
		t.Fatalf("route with the origin down: %+v, %v", v, err)
	}
	store.down.Store(false)
	eventually(t, 30*time.Second, "keys verify again", func() bool {
		_, err := n.Get(ctx, "keys", keyKey)
		return err == nil
	})
}

func statusOf(t *testing.T, n *dataplane.Node, ns string) dataplane.NamespaceStatus {
	t.Helper()
	for _, st := range n.Status().Namespaces {
		if st.Namespace == ns {
			return st
		}
	}
	t.Fatalf("no status for namespace %s", ns)
	return dataplane.NamespaceStatus{}
}

// TestKnownOutdatedKeyNotServed: with Policy.RefuseOutdated, a key whose
// newer version is announced (the value did not travel) but cannot be read
// is refused even with a recent proof, while a route in the same state is
// served stale.
func TestKnownOutdatedKeyNotServed(t *testing.T) {
	store := newStore(t)
	clock := record.NewClock(nil)
	keyKey := sentinel.KeyRecordKey("ks", "k")
	put(t, store.Store, clock, "keys", keyKey, `{"key_id":"k1","enabled":true}`)
	put(t, store.Store, clock, "routes", "h.example.com", "r1")
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: store, Logger: quiet(),
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: time.Hour, RefuseOutdated: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx := context.Background()
	for _, ns := range []string{"keys", "routes"} {
		key := map[string]string{"keys": keyKey, "routes": "h.example.com"}[ns]
		if _, err := n.Get(ctx, ns, key); err != nil {
			t.Fatal(err)
		}
	}
	store.down.Store(true)
	dataplane.Announce(n, "keys", keyKey, clock.Now())
	dataplane.Announce(n, "routes", "h.example.com", clock.Now())
	eventually(t, 30*time.Second, "the outdated key refused", func() bool {
		_, err := n.Get(ctx, "keys", keyKey)
		return errors.Is(err, dataplane.ErrUnavailable)
	})
	if v, err := n.Get(ctx, "routes", "h.example.com"); err != nil || string(v.Data) != "r1" || !v.Stale {
		t.Fatalf("outdated route: %+v, %v; want r1 served stale", v, err)
	}
}

// BenchmarkGetPolicy measures what the fail-closed check adds to a fresh
// hit (benchstat serve-stale against fail-closed).
func BenchmarkGetPolicy(b *testing.B) {
	for _, tc := range []struct {
		name string
		p    dataplane.Policy
	}{{"serve-stale", dataplane.Policy{}}, {"fail-closed", dataplane.Policy{FailClosedAfter: time.Hour}}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := dir.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			clock := record.NewClock(nil)
			const n = 1000
			keys := make([]string, n)
			for i := range keys {
				keys[i] = sentinel.KeyRecordKey("ks", fmt.Sprint("k", i))
				r := record.Record{Namespace: "keys", Key: keys[i], Value: []byte(`{"key_id":"k","enabled":true}`), Version: clock.Now()}
				if _, err := origin.Publish(context.Background(), s, r); err != nil {
					b.Fatal(err)
				}
			}
			copts := cache.DefaultConfig()
			copts.Default.Fresh = time.Hour
			node, err := dataplane.Open(context.Background(), dataplane.Config{
				Origin: s, Cache: copts, Logger: quiet(),
				Staleness: map[string]dataplane.Policy{"keys": tc.p},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer node.Close()
			ctx := context.Background()
			for _, k := range keys {
				if _, err := node.Get(ctx, "keys", k); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := node.Get(ctx, "keys", keys[i%n]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// TestStalenessMetrics: the heard age and refusals are exported per
// namespace.
func TestStalenessMetrics(t *testing.T) {
	store := newStore(t)
	clock := record.NewClock(nil)
	keyKey := sentinel.KeyRecordKey("ks", "k")
	put(t, store.Store, clock, "keys", keyKey, `{"key_id":"k1","enabled":true}`)
	reg := prometheus.NewRegistry()
	copts := cache.DefaultConfig()
	copts.Default.Fresh = 100 * time.Millisecond
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: store, Logger: quiet(), Registerer: reg, Cache: copts,
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: 500 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.Get(context.Background(), "keys", keyKey); err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	eventually(t, 30*time.Second, "keys fail closed", func() bool {
		_, err := n.Get(context.Background(), "keys", keyKey)
		return errors.Is(err, dataplane.ErrUnavailable)
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == "keys" {
					switch mf.GetName() {
					case "dataplane_node_heard_age_seconds":
						got[mf.GetName()] = m.GetGauge().GetValue()
					case "dataplane_node_fail_closed_total":
						got[mf.GetName()] = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if got["dataplane_node_heard_age_seconds"] <= 0.5 || got["dataplane_node_fail_closed_total"] < 1 {
		t.Fatalf("metrics for keys: %v; want a heard age over 0.5 s and at least one refusal", got)
	}
}
