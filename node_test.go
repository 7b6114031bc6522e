package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
)

// outage wraps a real store and fails every call while down, as an
// unreachable origin would.
type outage struct {
	origin.Store
	down  atomic.Bool
	reads atomic.Int64 // Get calls
	snaps atomic.Int64 // GetSnapshot calls
}

func (o *outage) err() error { return fmt.Errorf("test outage: %w", origin.ErrUnavailable) }

func (o *outage) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	o.reads.Add(1)
	if o.down.Load() {
		return record.Record{}, o.err()
	}
	return o.Store.Get(ctx, ns, key, ifNewer)
}

func (o *outage) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	o.snaps.Add(1)
	if o.down.Load() {
		return record.Snapshot{}, o.err()
	}
	return o.Store.GetSnapshot(ctx, ns)
}

func (o *outage) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if o.down.Load() {
		return nil, o.err()
	}
	return o.Store.ReadLog(ctx, after, limit)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newStore(t *testing.T) *outage {
	s, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &outage{Store: s}
}

func put(t *testing.T, s origin.Store, clock *record.Clock, ns, key, val string) record.Record {
	t.Helper()
	r := record.Record{Namespace: ns, Key: key, Value: []byte(val), Version: clock.Now()}
	if _, err := origin.Publish(context.Background(), s, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, timeout, what, cond)
}

func TestOpenWarmsFromOriginSnapshot(t *testing.T) {
	s := newStore(t)
	clock := record.NewClock(nil)
	r := put(t, s, clock, "routes", "a.example.com", `{"upstreams":["http://127.0.0.1:1"]}`)
	if err := s.PutSnapshot(context.Background(), record.Snapshot{Namespace: "routes", Version: r.Version, Records: []record.Record{r}}); err != nil {
		t.Fatal(err)
	}
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !n.Ready() {
		t.Fatal("not ready after warming from the origin snapshot")
	}
	before := s.reads.Load()
	v, err := n.Get(context.Background(), "routes", "a.example.com")
	if err != nil || v.Version != r.Version {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	if s.reads.Load() != before {
		t.Fatal("a warmed key was read from the origin")
	}
	if _, err := n.Get(context.Background(), "routes", "missing.example.com"); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
}

func TestRestartWithOriginDownWarmsFromLocalSnapshot(t *testing.T) {
	s := newStore(t)
	clock := record.NewClock(nil)
	put(t, s, clock, "routes", "a.example.com", "A")
	put(t, s, clock, "keys", "ks/abc", "K")
	dataDir := t.TempDir()
	cfg := dataplane.Config{Origin: s, DataDir: dataDir, Logger: quiet()}
	n, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range [][2]string{{"routes", "a.example.com"}, {"keys", "ks/abc"}} {
		if _, err := n.Get(context.Background(), k[0], k[1]); err != nil {
			t.Fatal(err)
		}
	}
	n.Close() // writes the local snapshot files

	s.down.Store(true)
	n2, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if !n2.Ready() {
		t.Fatal("not ready: should have warmed from the local snapshot files")
	}
	v, err := n2.Get(context.Background(), "routes", "a.example.com")
	if err != nil || string(v.Data) != "A" {
		t.Fatalf("with the origin down after restart: %q, %v", v.Data, err)
	}
	if _, err := n2.Get(context.Background(), "keys", "ks/abc"); err != nil {
		t.Fatalf("key with the origin down after restart: %v", err)
	}
}

func TestNotReadyUntilOriginReturns(t *testing.T) {
	s := newStore(t)
	s.down.Store(true)
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Logger: quiet(), WarmTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Ready() {
		t.Fatal("ready with the origin down and no local snapshot")
	}
	s.down.Store(false)
	eventually(t, 10*time.Second, "ready after the origin returned", n.Ready)
}

func TestOpenRejectsBadConfig(t *testing.T) {
	if _, err := dataplane.Open(context.Background(), dataplane.Config{}); err == nil {
		t.Fatal("Open without an origin succeeded")
	}
	if _, err := dataplane.Open(context.Background(), dataplane.Config{Origin: newStore(t), Namespaces: []string{"Bad NS"}}); err == nil {
		t.Fatal("Open with a bad namespace succeeded")
	}
}

// TestGossipClusterPublishAndWatch: three nodes over real memberlist on
// loopback; a change handed to one is served by all and seen by watchers.
func TestGossipClusterPublishAndWatch(t *testing.T) {
	s := newStore(t)
	clock := record.NewClock(nil)
	old := put(t, s, clock, "routes", "w.example.com", "v1")
	var nodes []*dataplane.Node
	var seeds []string
	for i := 0; i < 3; i++ {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name = fmt.Sprintf("node-%d", i)
		g.Region = "local"
		g.Seeds = seeds
		n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Gossip: &g.Cluster, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
		seeds = []string{nodes[0].GossipAddr()}
	}
	eventually(t, 10*time.Second, "3 members", func() bool {
		for _, n := range nodes {
			if len(n.Members()) != 3 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if v, err := n.Get(context.Background(), "routes", "w.example.com"); err != nil || v.Version != old.Version {
			t.Fatalf("initial read: %+v %v", v, err)
		}
	}
	changes, cancel := nodes[2].Watch("routes")
	defer cancel()

	r := put(t, s, clock, "routes", "w.example.com", "v2")
	if err := nodes[0].Publish(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d serving v2", i), func() bool {
			v, err := n.Get(context.Background(), "routes", "w.example.com")
			return err == nil && string(v.Data) == "v2"
		})
	}
	select {
	case c := <-changes:
		if c.Key != "w.example.com" || c.Version != r.Version {
			t.Fatalf("watch delivered %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch delivered nothing")
	}
}
