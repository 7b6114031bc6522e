package gossip

import (
	"errors"
	"testing"

	"github.com/dataplane/dataplane/record"
)

// TestDropRecords: a change message carrying a dropped record is dropped
// whole, a digest loses exactly those entries and keeps its high-water
// mark and truncation, and anything else comes back as it was.
func TestDropRecords(t *testing.T) {
	tomb := func(r record.Record) bool { return r.Tombstone && r.Namespace == "keys" }
	changes := sampleChanges() // the third is a tombstone of keys
	for i, c := range changes {
		b := encodeChange(c)
		out, err := DropRecords(b, tomb)
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		if tomb(c.rec) != (out == nil) {
			t.Errorf("change %d (%s/%s, tombstone %v): dropped %v", i, c.rec.Namespace, c.rec.Key, c.rec.Tombstone, out == nil)
		}
		if out != nil && &out[0] != &b[0] {
			t.Errorf("change %d: kept, but not as the same bytes", i)
		}
	}

	d := digest{highWater: 1<<63 + 10, truncated: true, changes: changes}
	b := encodeDigest(d, MaxDigestSize)
	out, err := DropRecords(b, tomb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeDigest(out)
	if err != nil {
		t.Fatalf("the filtered digest does not decode: %v", err)
	}
	if got.highWater != d.highWater || !got.truncated || len(got.changes) != len(changes)-1 {
		t.Fatalf("filtered digest: high water %s truncated %v, %d changes; want %s, true, %d", got.highWater, got.truncated, len(got.changes), d.highWater, len(changes)-1)
	}
	for _, c := range got.changes {
		if tomb(c.rec) {
			t.Errorf("filtered digest still carries %s/%s", c.rec.Namespace, c.rec.Key)
		}
	}
	if out, _ := DropRecords(b, func(record.Record) bool { return false }); &out[0] != &b[0] {
		t.Error("a digest nothing is dropped from came back re-encoded")
	}

	a := encodeAck(ack{ns: "keys", key: "ks/gone", version: 9, from: "n1"})
	if out, err := DropRecords(a, func(record.Record) bool { return true }); err != nil || &out[0] != &a[0] {
		t.Errorf("ack: %v, changed %v", err, err == nil && &out[0] != &a[0])
	}
	if _, err := DropRecords([]byte{kindChange, 0, 1}, tomb); !errors.Is(err, record.ErrCorrupt) {
		t.Errorf("garbage: %v, want ErrCorrupt", err)
	}
}
