package record

import "testing"

// TestChangeID: Changes equal but for their Seal pointers have one ID (so
// are one map key) and are Equal; a different Seal, no Seal or another
// field makes another ID; ID and Change round-trip without sharing the
// Seal.
func TestChangeID(t *testing.T) {
	seal := Seal{KeyID: [8]byte{1}, Digest: [32]byte{2}, Sig: [64]byte{3}}
	s1, s2 := seal, seal
	a := Change{Namespace: "routes", Key: "a", Version: 5, Seal: &s1}
	b := Change{Namespace: "routes", Key: "a", Version: 5, Seal: &s2}
	if a == b {
		t.Fatal("the test needs Changes that == tells apart")
	}
	if !a.Equal(b) || a.ID() != b.ID() || len(map[ChangeID]bool{a.ID(): true, b.ID(): true}) != 1 {
		t.Fatal("one signed change with two Seal pointers is two")
	}
	other := seal
	other.Sig[0]++
	for _, c := range []Change{
		{Namespace: "routes", Key: "a", Version: 5},
		{Namespace: "routes", Key: "a", Version: 5, Seal: &other},
		{Namespace: "routes", Key: "a", Version: 6, Seal: &s1},
		{Namespace: "routes", Key: "a", Version: 5, Tombstone: true, Seal: &s1},
		{Namespace: "keys", Key: "a", Version: 5, Seal: &s1},
	} {
		if c.Equal(a) {
			t.Errorf("%+v equals %+v", c, a)
		}
	}
	back := a.ID().Change()
	if !back.Equal(a) || back.Seal == a.Seal {
		t.Fatalf("ID().Change() = %+v, want an equal change with its own Seal", back)
	}
	if u := (Change{Namespace: "routes", Key: "a", Version: 5}); u.ID().Change() != u {
		t.Fatal("an unsigned change does not round-trip")
	}
}
