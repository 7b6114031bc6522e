package dataplane

import (
	"context"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestWatchFromFiltersRaceDuplicates plays the race between the replay and
// the live subscription deterministically: changes the index already holds
// are handed to the watcher again (as if applied between the subscription
// and the index read), along with an older version and one at the cursor;
// each (key, version) is delivered once, the replay in version order.
func TestWatchFromFiltersRaceDuplicates(t *testing.T) {
	n, err := Open(context.Background(), Config{Origin: mem.New(), Namespaces: []string{"routes"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.cache.MarkComplete("routes")
	clock := record.NewClock(nil)
	var recs []record.Record
	for i := range 6 {
		r := record.Record{Namespace: "routes", Key: string(rune('a'+i%3)) + ".example.com", Value: []byte("v"), Version: clock.Now()}
		n.cache.Apply(r)
		recs = append(recs, r)
	}
	after := recs[1].Version // a@0 and b@1 are at or before the cursor
	ws, err := n.WatchFrom(context.Background(), "routes", after, WatchOptions{Progress: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Stop)
	for _, r := range recs {
		n.notify(r.Change()) // every one again, older ones included
	}
	live := record.Record{Namespace: "routes", Key: "d.example.com", Version: clock.Now()}
	(*applier)(n).Apply(live)

	// Progress marks (the node follows the log) may come between changes:
	// only changes are counted.
	next := func(wait time.Duration) (WatchEvent, bool) {
		timeout := time.After(wait)
		for {
			select {
			case ev := <-ws.C:
				if !ev.Progress {
					return ev, true
				}
			case <-timeout:
				return WatchEvent{}, false
			}
		}
	}
	want := []record.Change{recs[3].Change(), recs[4].Change(), recs[5].Change(), live.Change()}
	for i, w := range want {
		ev, ok := next(30 * time.Second)
		if !ok {
			t.Fatalf("event %d: nothing delivered, want %+v", i, w)
		}
		if ev.Change != w {
			t.Fatalf("event %d: %+v, want %+v", i, ev, w)
		}
	}
	if ev, ok := next(200 * time.Millisecond); ok {
		t.Fatalf("extra event %+v", ev)
	}
}
