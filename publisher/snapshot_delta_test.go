package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// partsStore is a mem store that counts the snapshot bytes written into it
// and can fail the snapshot writes of one namespace.
type partsStore struct {
	*mem.Store
	mu      sync.Mutex // guards written, failNS
	written map[string]int
	failNS  string
}

func newPartsStore() *partsStore {
	return &partsStore{Store: mem.New(), written: map[string]int{}}
}

func (s *partsStore) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	s.mu.Lock()
	fail := ns == s.failNS
	if !fail {
		s.written[ns] += len(b)
	}
	s.mu.Unlock()
	if fail {
		return fmt.Errorf("snapshot %s: %w", ns, origin.ErrUnavailable)
	}
	return s.Store.PutSnapshotPart(ctx, ns, name, b)
}

func (s *partsStore) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	return origin.WriteSnapshot(ctx, s, snap, origin.DefaultLayout())
}

func (s *partsStore) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	return origin.ReadSnapshot(ctx, s, ns)
}

// take returns and resets the bytes written into ns's snapshot.
func (s *partsStore) take(ns string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.written[ns]
	s.written[ns] = 0
	return n
}

// wholeStore hides the mem store's snapshot parts: the publisher's
// fallback for stores that only read and write whole snapshots.
type wholeStore struct{ origin.Store }

var (
	_ origin.SnapshotParts = (*partsStore)(nil)
	_ origin.Store         = wholeStore{}
)

// TestSnapshotWritesOnlyChanges: at scale a pass writes the changed records
// (a delta), not the namespace; deltas are merged and the base rewritten as
// they grow; a cold reader sees the same state throughout.
func TestSnapshotWritesOnlyChanges(t *testing.T) {
	store := newPartsStore()
	layout := origin.Layout{InlineSize: 1 << 10, ChunkSize: 4 << 10, DeltaRatio: 0.3, MaxDeltas: 3}
	e := newEnv(t, store, func(c *publisher.Config) {
		c.Clock = pastClock()
		publisher.SetSnapshotLayout(c, layout)
	})
	ctx := testCtx(t)
	const n = 300
	keys := make([]string, n)
	value := []byte(`"` + strings.Repeat("v", 60) + `"`)
	for i := range keys {
		keys[i] = fmt.Sprintf("host-%04d.example.com", i)
		if _, err := e.pub.Put(ctx, "routes", keys[i], value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.pub.Snapshot(ctx, "routes"); err != nil {
		t.Fatal(err)
	}
	full := store.take("routes")
	if full < n*len(value) {
		t.Fatalf("first pass wrote %d bytes, less than the namespace", full)
	}
	sameState(t, "base", coldState(t, store, "routes"), state(t, store, "routes", keys...))
	for pass := 0; pass < 20; pass++ {
		// Two updates and a delete per pass.
		for j := 0; j < 2; j++ {
			if _, err := e.pub.Put(ctx, "routes", keys[(pass*7+j*31)%n], []byte(fmt.Sprintf(`"pass %d"`, pass))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.pub.Delete(ctx, "routes", keys[(pass*13+5)%n]); err != nil {
			t.Fatal(err)
		}
		snap, err := e.pub.Snapshot(ctx, "routes")
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Records) != 3 {
			t.Fatalf("pass %d wrote %d records, want the 3 changed", pass, len(snap.Records))
		}
		sameState(t, fmt.Sprintf("pass %d", pass), coldState(t, store, "routes"), state(t, store, "routes", keys...))
		got, err := store.GetSnapshot(ctx, "routes")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Records) != n {
			t.Fatalf("pass %d: merged snapshot holds %d records, want %d", pass, len(got.Records), n)
		}
	}
	// Over 20 passes the bytes written stay far below 20 rewrites of the
	// namespace: deltas, a few delta merges and base rewrites.
	w := store.take("routes")
	t.Logf("first pass %d bytes, 20 passes %d bytes", full, w)
	if w > 3*full {
		t.Fatalf("20 passes of 3 changes wrote %d bytes; one full snapshot is %d", w, full)
	}
	// An idle pass writes no records.
	if snap, err := e.pub.Snapshot(ctx, "routes"); err != nil || len(snap.Records) != 0 {
		t.Fatalf("idle pass: %d records, %v", len(snap.Records), err)
	}
}

// TestSnapshotDropsOldTombstones: a tombstone older than TombstoneHorizon
// leaves the snapshot when its namespace is rewritten; a newer one stays.
// Whatever the store: whole snapshots, one object, or chunks and deltas.
func TestSnapshotDropsOldTombstones(t *testing.T) {
	for _, tc := range []struct {
		name   string
		store  func() origin.Store
		layout origin.Layout
	}{
		{"whole snapshots", func() origin.Store { return wholeStore{mem.New()} }, origin.Layout{}},
		{"one object", func() origin.Store { return mem.New() }, origin.Layout{}},
		{"chunks and deltas", func() origin.Store { return mem.New() }, origin.Layout{InlineSize: 256, ChunkSize: 512, DeltaRatio: 0.01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store()
			ctx := testCtx(t)
			// Writes from two days ago, and from an hour ago.
			old := newEnv(t, store, func(c *publisher.Config) {
				c.Clock = record.NewClock(func() time.Time { return time.Now().Add(-48 * time.Hour) })
			})
			e := newEnv(t, store, func(c *publisher.Config) {
				c.Clock = pastClock()
				c.Timing.LogRetention = 0
				c.TombstoneHorizon = 24 * time.Hour
				publisher.SetSnapshotLayout(c, tc.layout)
			})
			var keys []string
			for i := 0; i < 20; i++ {
				keys = append(keys, fmt.Sprintf("k%02d", i))
				if _, err := old.pub.Put(ctx, "routes", keys[i], []byte(`"some value of a route"`)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := old.pub.Delete(ctx, "routes", "k00"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.pub.Delete(ctx, "routes", "k01"); err != nil {
				t.Fatal(err)
			}
			for pass := 0; pass < 2; pass++ {
				if _, err := e.pub.Put(ctx, "routes", "k02", []byte(fmt.Sprint(pass))); err != nil {
					t.Fatal(err)
				}
				if _, err := e.pub.Snapshot(ctx, "routes"); err != nil {
					t.Fatal(err)
				}
			}
			snap, err := store.GetSnapshot(ctx, "routes")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]record.Record{}
			for _, r := range snap.Records {
				got[r.Key] = r
			}
			if _, ok := got["k00"]; ok {
				t.Fatalf("a tombstone two days old is still in the snapshot (horizon 24 h)")
			}
			if r, ok := got["k01"]; !ok || !r.Tombstone {
				t.Fatalf("an hour-old tombstone left the snapshot: %+v", r)
			}
			if len(got) != 19 {
				t.Fatalf("snapshot holds %d keys, want 19", len(got))
			}
		})
	}
}

func TestTombstoneHorizonValidated(t *testing.T) {
	for _, tc := range []struct {
		retention, horizon time.Duration
		ok                 bool
	}{
		{24 * time.Hour, 0, true},
		{24 * time.Hour, 24 * time.Hour, true},
		{24 * time.Hour, 7 * 24 * time.Hour, true},
		{24 * time.Hour, time.Hour, false},
		{0, time.Hour, true},
		{0, -time.Hour, false},
	} {
		cfg := publisher.DefaultConfig()
		cfg.Timing.LogRetention, cfg.TombstoneHorizon = tc.retention, tc.horizon
		_, err := publisher.New(mem.New(), cfg)
		if (err == nil) != tc.ok {
			t.Errorf("LogRetention %v, TombstoneHorizon %v: New err %v, want ok=%v", tc.retention, tc.horizon, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "TombstoneHorizon") {
			t.Errorf("error %q does not name the field", err)
		}
	}
}

// TestTrimSkippedIsVisible: a namespace whose snapshot fails keeps the log
// untrimmed, and says so in a log line and a metric.
func TestTrimSkippedIsVisible(t *testing.T) {
	store := newPartsStore()
	store.failNS = "keys"
	e := newEnv(t, store, func(c *publisher.Config) {
		c.Clock = pastClock()
		c.Timing.LogRetention = time.Millisecond
		c.TombstoneHorizon = 0
	})
	ctx := testCtx(t)
	for _, ns := range []string{"routes", "keys"} {
		if _, err := e.pub.Put(ctx, ns, "a", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	err := e.pub.SnapshotAll(ctx)
	if !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("SnapshotAll = %v, want the failed namespace's error", err)
	}
	if _, err := store.ReadLog(ctx, 0, 1); err != nil {
		t.Fatalf("the log was trimmed although a snapshot failed: %v", err)
	}
	if v := e.metric(t, "dataplane_publisher_log_trim_skipped_total"); v != 1 {
		t.Fatalf("log_trim_skipped_total = %v, want 1", v)
	}
	if !strings.Contains(e.logs.String(), "change log not trimmed") {
		t.Fatalf("no log line says the log was not trimmed:\n%s", e.logs.String())
	}
}
