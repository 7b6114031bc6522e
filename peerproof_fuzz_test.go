package dataplane_test

import (
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// provenSeed is a valid proven snapshot: two records, one above the
// checkpoint's version with its state there in the proof.
func provenSeed(tb testing.TB) []byte {
	tb.Helper()
	_, priv, err := sign.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := sign.NewSigner(priv)
	if err != nil {
		tb.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	v := record.MakeVersion(t0, 0)
	a := s.Sign(record.Record{Namespace: "keys", Key: "a", Value: []byte("A"), Version: v - 1})
	b := s.Sign(record.Record{Namespace: "keys", Key: "b", Value: []byte("B"), Version: v + 1})
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: v, Count: 1, IssuedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	if err := c.Sign(s); err != nil {
		tb.Fatal(err)
	}
	out, err := dataplane.MarshalProvenSnapshot(
		record.Snapshot{Namespace: "keys", Version: v, Records: []record.Record{a, b}},
		&checkpoint.SnapshotProof{Checkpoint: c, Above: []checkpoint.AtVersion{{Key: "b"}}})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// FuzzUnmarshalProvenSnapshot: any input decodes or errors, never panics,
// and what decodes encodes back to the same bytes.
func FuzzUnmarshalProvenSnapshot(f *testing.F) {
	f.Add(provenSeed(f))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		snap, proof, err := dataplane.UnmarshalProvenSnapshot(b)
		if err != nil {
			return
		}
		again, err := dataplane.MarshalProvenSnapshot(snap, proof)
		if err != nil {
			t.Fatalf("decoded but does not encode: %v", err)
		}
		if _, _, err := dataplane.UnmarshalProvenSnapshot(again); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
	})
}
