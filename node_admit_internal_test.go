package dataplane

import (
	"context"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestAdmitOrdersWatchersAcrossPaths: gossip and the log follower reach the
// cache by separate paths; whichever delivers a key's versions in whatever
// order, watchers never see an older version after a newer one, and a
// version the index learned first by an origin read is still delivered.
func TestAdmitOrdersWatchersAcrossPaths(t *testing.T) {
	n, err := Open(context.Background(), Config{Origin: mem.New(), Namespaces: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ch, cancel := n.Watch("routes")
	defer cancel()
	clock := record.NewClock(nil)
	v1, v2, v3 := clock.Now(), clock.Now(), clock.Now()

	(*logTarget)(n).Invalidate("routes", "a.example.com", v2) // the log first
	(*applier)(n).Invalidate("routes", "a.example.com", v1)   // gossip late, older
	(*applier)(n).Invalidate("routes", "a.example.com", v2)   // gossip, the same version
	// An origin read learned v3 before either path told the node.
	n.cache.Apply(record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("3"), Version: v3})
	(*logTarget)(n).Invalidate("routes", "a.example.com", v3)

	var got []record.Version
	timeout := time.After(200 * time.Millisecond)
collect:
	for {
		select {
		case c := <-ch:
			got = append(got, c.Version)
		case <-timeout:
			break collect
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Errorf("watcher saw %s after %s: %v", got[i], got[i-1], got)
		}
	}
	if len(got) == 0 || got[0] != v2 || got[len(got)-1] != v3 {
		t.Errorf("watcher saw %v; want v2 (%s) first and v3 (%s) last", got, v2, v3)
	}
}
