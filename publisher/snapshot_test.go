package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// pastClock hands out versions an hour old, so that snapshots are allowed
// to claim them (a snapshot's Version stays a few seconds behind the wall
// clock).
func pastClock() *record.Clock {
	return record.NewClock(func() time.Time { return time.Now().Add(-time.Hour) })
}

// coldState is what a cold node knows of ns after loading its snapshot from
// a fresh handle on the store and following the change log after it.
func coldState(t *testing.T, s origin.Store, ns string) map[string]record.Record {
	t.Helper()
	ctx := testCtx(t)
	snap, err := s.GetSnapshot(ctx, ns)
	if err != nil {
		t.Fatalf("GetSnapshot(%s): %v", ns, err)
	}
	out := make(map[string]record.Record)
	for _, r := range snap.Records {
		out[r.Key] = r
	}
	cs, err := s.ReadLog(ctx, snap.Version, 0)
	if err != nil {
		t.Fatalf("ReadLog after snapshot version %s: %v", snap.Version, err)
	}
	for _, c := range cs {
		if c.Namespace != ns || c.Version <= out[c.Key].Version {
			continue
		}
		r, err := s.Get(ctx, ns, c.Key, 0)
		if err != nil {
			t.Fatal(err)
		}
		out[c.Key] = r
	}
	return out
}

func sameState(t *testing.T, what string, got, want map[string]record.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys, want %d:\n got %+v\nwant %+v", what, len(got), len(want), got, want)
	}
	for k, w := range want {
		g := got[k]
		if g.Version != w.Version || g.Tombstone != w.Tombstone || string(g.Value) != string(w.Value) {
			t.Fatalf("%s: key %s = %+v, want %+v", what, k, g, w)
		}
	}
}

func TestSnapshotColdRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		ctx := testCtx(t)
		keys := []string{"a", "b", "c", "d", "e"}
		for i, k := range keys {
			if _, err := e.pub.Put(ctx, "routes", k, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.pub.Put(ctx, "other", "a", []byte(`"elsewhere"`)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pub.Delete(ctx, "routes", "b"); err != nil {
			t.Fatal(err)
		}
		snap, err := e.pub.Snapshot(ctx, "routes")
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Records) != len(keys) {
			t.Fatalf("snapshot holds %d records, want %d (the tombstone included)", len(snap.Records), len(keys))
		}
		cold := b.reopen(t, e.store)
		sameState(t, "first snapshot", coldState(t, cold, "routes"), state(t, e.store, "routes", keys...))
		got, _ := cold.GetSnapshot(ctx, "routes")
		for _, r := range got.Records {
			if r.Key == "b" && !r.Tombstone {
				t.Fatal("the deleted key is live in the snapshot")
			}
		}

		// Incremental: delete one, bring one back, add one, snapshot again.
		for _, step := range []func() error{
			func() error { _, err := e.pub.Delete(ctx, "routes", "a"); return err },
			func() error { _, err := e.pub.Put(ctx, "routes", "b", []byte(`"back"`)); return err },
			func() error { _, err := e.pub.Put(ctx, "routes", "f", []byte(`"new"`)); return err },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.pub.Snapshot(ctx, "routes"); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, "f")
		want := state(t, e.store, "routes", keys...)
		sameState(t, "second snapshot", coldState(t, b.reopen(t, e.store), "routes"), want)
		got, _ = cold.GetSnapshot(ctx, "routes")
		snapOnly := make(map[string]record.Record)
		for _, r := range got.Records {
			snapOnly[r.Key] = r
		}
		sameState(t, "second snapshot alone", snapOnly, want)
		if v := e.metric(t, "dataplane_publisher_snapshot_duration_seconds"); v != 2 {
			t.Fatalf("snapshot_duration_seconds has %v samples, want 2", v)
		}
	})
}

// TestSnapshotAllTrims: Run's pass snapshots the configured namespaces and
// those it finds in the log, and trims the log only once all of them have a
// snapshot; cold reads still see everything.
func TestSnapshotAllTrims(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := b.open(t)
		e := newEnv(t, store, func(c *publisher.Config) {
			c.Clock = pastClock()
			c.Namespaces = []string{"routes"}
			c.Timing.LogRetention = time.Millisecond
		})
		other := newEnv(t, store, func(c *publisher.Config) { c.Clock = pastClock() }) // another control plane
		ctx := testCtx(t)
		for i := 0; i < 20; i++ {
			if _, err := e.pub.Put(ctx, "routes", fmt.Sprint("r", i%7), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
			if _, err := other.pub.Put(ctx, "keys", fmt.Sprint("k", i%5), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // spread versions over several milliseconds, so the retention trims some
		}
		if _, err := other.pub.Delete(ctx, "keys", "k0"); err != nil {
			t.Fatal(err)
		}

		// First pass: routes is snapshotted and keys discovered; no trim yet.
		if err := e.pub.SnapshotAll(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := store.ReadLog(ctx, 0, 1); err != nil {
			t.Fatalf("the log was trimmed before every namespace had a snapshot: %v", err)
		}
		// Second pass: both snapshotted, then trimmed.
		if err := e.pub.SnapshotAll(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := store.ReadLog(ctx, 0, 1); !errors.Is(err, origin.ErrLogTruncated) {
			t.Fatalf("ReadLog(0) after trimming: %v, want ErrLogTruncated", err)
		}
		cold := b.reopen(t, store)
		sameState(t, "routes", coldState(t, cold, "routes"), state(t, store, "routes", "r0", "r1", "r2", "r3", "r4", "r5", "r6"))
		sameState(t, "keys", coldState(t, cold, "keys"), state(t, store, "keys", "k0", "k1", "k2", "k3", "k4"))
	})
}

// TestSnapshotSurvivesACorruptRecord: a corrupt stored record keeps its
// previous state in the snapshot, whose Version then stops short of the
// change that could not be read; everything else goes on.
func TestSnapshotSurvivesACorruptRecord(t *testing.T) {
	store := mem.New()
	e := newEnv(t, store, func(c *publisher.Config) { c.Clock = pastClock() })
	ctx := testCtx(t)
	if _, err := e.pub.Put(ctx, "routes", "a", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pub.Snapshot(ctx, "routes"); err != nil {
		t.Fatal(err)
	}
	a2, err := e.pub.Put(ctx, "routes", "a", []byte(`2`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pub.Put(ctx, "routes", "b", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	store.CorruptForTest("routes", "a")
	if _, err := e.pub.Snapshot(ctx, "routes"); err != nil {
		t.Fatalf("a corrupt record failed the snapshot: %v", err)
	}
	snap, err := store.GetSnapshot(ctx, "routes")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Records) != 2 || string(snap.Records[0].Value) != "1" || snap.Records[1].Key != "b" {
		t.Fatalf("snapshot %+v, want a's previous state and b", snap.Records)
	}
	if snap.Version >= a2.Version {
		t.Fatalf("snapshot version %s claims the unreadable change %s", snap.Version, a2.Version)
	}
}

func TestRunSnapshotsUntilCancelled(t *testing.T) {
	store := mem.New()
	e := newEnv(t, store, func(c *publisher.Config) {
		c.SnapshotInterval = 10 * time.Millisecond
		c.Namespaces = []string{"routes"}
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- e.pub.Run(ctx) }()

	if _, err := e.pub.Put(testCtx(t), "routes", "a", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	var snap record.Snapshot
	var err error
	if !testkit.Poll(10*time.Second, func() bool {
		snap, err = store.GetSnapshot(testCtx(t), "routes")
		return err == nil && len(snap.Records) == 1
	}) {
		t.Fatalf("no snapshot with the write: %+v, %v", snap, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
