package mem_test

import (
	"context"
	"testing"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestSignedChangeHeldOnce: two copies of one signed change (equal Seals,
// different pointers, as two decodes give) are one log entry and one
// pending note, and a third copy deletes the note.
func TestSignedChangeHeldOnce(t *testing.T) {
	ctx := context.Background()
	s := mem.New()
	seal := record.Seal{KeyID: [8]byte{1}, Digest: [32]byte{2}, Sig: [64]byte{3}}
	change := func() record.Change {
		sl := seal
		return record.Change{Namespace: "routes", Key: "a.example.com", Version: 7, Seal: &sl}
	}
	for range 2 {
		if err := s.AppendLog(ctx, change()); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPending(ctx, change()); err != nil {
			t.Fatal(err)
		}
	}
	if log, err := s.ReadLog(ctx, 0, 0); err != nil || len(log) != 1 || !log[0].Equal(change()) {
		t.Fatalf("ReadLog = %+v, %v; want the change once", log, err)
	}
	if p, err := s.ListPending(ctx, 0); err != nil || len(p) != 1 {
		t.Fatalf("ListPending = %+v, %v; want the note once", p, err)
	}
	if err := s.DeletePending(ctx, change()); err != nil {
		t.Fatal(err)
	}
	if p, err := s.ListPending(ctx, 0); err != nil || len(p) != 0 {
		t.Fatalf("ListPending after DeletePending = %+v, %v; want none", p, err)
	}
	// An unsigned change and one with another Seal are other changes.
	other := change()
	other.Seal.Sig[0]++
	for _, c := range []record.Change{{Namespace: "routes", Key: "a.example.com", Version: 7}, other} {
		if err := s.AppendLog(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if log, err := s.ReadLog(ctx, 0, 0); err != nil || len(log) != 3 {
		t.Fatalf("ReadLog = %+v, %v; want 3 distinct changes", log, err)
	}
}
