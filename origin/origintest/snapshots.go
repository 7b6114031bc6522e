package origintest

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// testSnapshotParts drives a store's origin.SnapshotParts through the
// layouts the publisher uses at scale: a snapshot cut into chunks, deltas
// appended, deltas merged, a new base with old tombstones dropped, and a
// shrink back into one object. Whatever the layout, the store's GetSnapshot
// returns the one merged snapshot. A store without parts must still round
// trip a snapshot of many records through PutSnapshot.
func testSnapshotParts(t *testing.T, h Harness) {
	s := h.New(t)
	const ns = "routes"
	model := map[string]record.Record{}
	var version record.Version
	want := func() record.Snapshot {
		out := record.Snapshot{Namespace: ns, Version: version, Records: []record.Record{}}
		for i := 0; i < 100; i++ {
			if r, ok := model[fmt.Sprintf("k%03d", i)]; ok {
				out.Records = append(out.Records, r)
			}
		}
		return out
	}
	check := func(step string) {
		t.Helper()
		got, err := s.GetSnapshot(ctx(t), ns)
		if err != nil {
			t.Fatalf("%s: GetSnapshot: %v", step, err)
		}
		if got.Records == nil {
			got.Records = []record.Record{}
		}
		got.Known = nil
		if w := want(); !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: GetSnapshot = %d records @%v, want %d @%v\n got %+v\nwant %+v", step, len(got.Records), got.Version, len(w.Records), w.Version, got.Records, w.Records)
		}
		if o, ok := s.(origin.SnapshotOpener); ok {
			if streamed := drain(t, o, ns); !reflect.DeepEqual(streamed, want()) {
				t.Fatalf("%s: OpenSnapshot streamed %d records @%v, GetSnapshot %d", step, len(streamed.Records), streamed.Version, len(got.Records))
			}
		}
	}
	set := func(i int, v record.Version, tomb bool) record.Record {
		r := record.Record{Namespace: ns, Key: fmt.Sprintf("k%03d", i), Version: v, Tombstone: tomb}
		if !tomb {
			r.Value = []byte(fmt.Sprintf("value of k%03d at %d", i, v))
		}
		model[r.Key] = r
		return r
	}
	for i := 0; i < 40; i++ {
		set(i, 10, i%10 == 9)
	}
	version = 10

	ps, ok := s.(origin.SnapshotParts)
	if !ok {
		if err := s.PutSnapshot(ctx(t), want()); err != nil {
			t.Fatal(err)
		}
		check("whole snapshot")
		return
	}
	small := origin.Layout{InlineSize: 512, ChunkSize: 400, DeltaRatio: 10, MaxDeltas: 2}
	if err := origin.WriteSnapshot(ctx(t), ps, want(), small); err != nil {
		t.Fatalf("WriteSnapshot in chunks: %v", err)
	}
	check("chunked base")
	// Three deltas with MaxDeltas 2: the third merges them.
	for round := 1; round <= 3; round++ {
		version = record.Version(10 + round)
		delta := record.Snapshot{Namespace: ns, Version: version, Records: []record.Record{
			set(round, version, false),         // an update
			set(40+round, version, false),      // a new key
			set(20+round, version, round == 2), // a delete
		}}
		if err := origin.AppendSnapshot(ctx(t), ps, delta, 0, small); err != nil {
			t.Fatalf("AppendSnapshot %d: %v", round, err)
		}
		check(fmt.Sprintf("delta %d", round))
	}
	// A new base: tombstones below version 12 are dropped, newer kept.
	version = 20
	small.DeltaRatio = 0.01
	delta := record.Snapshot{Namespace: ns, Version: version, Records: []record.Record{set(60, 20, true)}}
	if err := origin.AppendSnapshot(ctx(t), ps, delta, 12, small); err != nil {
		t.Fatalf("AppendSnapshot with a new base: %v", err)
	}
	for key, r := range model {
		if r.Tombstone && r.Version < 12 {
			delete(model, key)
		}
	}
	check("new base")
	// Shrunk below InlineSize: one object again.
	for key := range model {
		if key != "k060" {
			delete(model, key)
		}
	}
	version = 21
	if err := origin.WriteSnapshot(ctx(t), ps, want(), small); err != nil {
		t.Fatal(err)
	}
	check("back to one object")
	if err := ps.PutSnapshotPart(ctx(t), ns, "../escape", []byte("x")); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("part name with a path: %v, want ErrInvalid", err)
	}
	if _, err := ps.GetSnapshotPart(ctx(t), ns, "never-written"); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("missing part: %v, want ErrNotFound", err)
	}
	if err := ps.DeleteSnapshotPart(ctx(t), ns, "never-written"); err != nil {
		t.Fatalf("deleting a missing part: %v", err)
	}
}

// drain reads the whole stream OpenSnapshot gives.
func drain(t *testing.T, o origin.SnapshotOpener, ns string) record.Snapshot {
	t.Helper()
	st, err := o.OpenSnapshot(ctx(t), ns)
	if err != nil {
		t.Fatalf("OpenSnapshot: %v", err)
	}
	defer st.Close()
	out := record.Snapshot{Namespace: st.Namespace(), Version: st.Version(), Records: []record.Record{}}
	for {
		r, err := st.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		out.Records = append(out.Records, r)
	}
}
