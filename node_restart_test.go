package dataplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/record"
)

// TestRestartServesNoOlderThanBefore: a node restarted gracefully must not
// serve an older version than it served before (invariant 1 across a
// restart), even though the origin's snapshot it warms from is older than
// what it had learned since. Its local snapshot file holds the newer
// versions; they are loaded over the origin's snapshot. (Without gossip
// nothing else would correct the old version before its fresh window
// ends; with gossip, not before the log is readable.)
func TestRestartServesNoOlderThanBefore(t *testing.T) {
	s := newStore(t)
	clock := record.NewClock(nil)
	v1 := put(t, s, clock, "routes", "r.example.com", "v1")
	if err := s.PutSnapshot(context.Background(), record.Snapshot{Namespace: "routes", Version: v1.Version, Records: []record.Record{v1}}); err != nil {
		t.Fatal(err)
	}
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour}
	cfg := dataplane.Config{Origin: s, DataDir: t.TempDir(), Cache: copts, Logger: quiet()}
	n, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	v2 := put(t, s, clock, "routes", "r.example.com", "v2")
	dataplane.Announce(n, "routes", "r.example.com", v2.Version) // as gossip would
	if v, err := n.Get(context.Background(), "routes", "r.example.com"); err != nil || v.Version != v2.Version {
		t.Fatalf("before restart: %+v, %v; want v2", v, err)
	}
	n.Close() // saves the local snapshot file

	n2, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	if v, err := n2.Get(context.Background(), "routes", "r.example.com"); err != nil || v.Version != v2.Version {
		t.Fatalf("after restart: version %s (%q), %v; served %s before the restart", v.Version, v.Data, err, v2.Version)
	}
}
