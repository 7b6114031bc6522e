package checkpoint_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// history is a random run of writes and deletes over a few keys, in
// version order.
func history(seed uint64, n int) []record.Record {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]record.Record, n)
	for i := range out {
		key := fmt.Sprintf("k%d", r.IntN(20))
		value := ""
		if r.IntN(4) > 0 {
			value = fmt.Sprint("v", i)
		}
		out[i] = rec(nil, key, ver(10*(i+1)), value)
	}
	return out
}

// newestAt returns every key's newest record at or below v.
func newestAt(h []record.Record, v record.Version) []record.Record {
	m := map[string]record.Record{}
	for _, r := range h {
		if r.Version <= v {
			m[r.Key] = r
		}
	}
	out := make([]record.Record, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// TestStateAnyOrder: applying a history in any order, duplicated, reaches
// the hash of the newest states computed from scratch.
func TestStateAnyOrder(t *testing.T) {
	for seed := range uint64(20) {
		h := history(seed, 200)
		want, wantN := stateOf(newestAt(h, ver(1<<30)), 0)
		st := checkpoint.NewState("keys")
		r := rand.New(rand.NewPCG(seed, 9))
		for _, i := range r.Perm(len(h)) {
			for range 1 + r.IntN(2) {
				if _, err := st.Apply(statehash.ElementOf(h[i])); err != nil {
					t.Fatal(err)
				}
			}
		}
		got := st.Hash()
		if !got.Equal(&want) || st.Count() != wantN {
			t.Fatalf("seed %d: applied out of order: hash or count (%d, want %d) differs from the newest states'", seed, st.Count(), wantN)
		}
	}
}

// TestStateAt: the state as of any journaled version equals the newest
// states at or below it, computed from scratch; ElementsAt agrees key by
// key; Forget ends the reach.
func TestStateAt(t *testing.T) {
	h := history(1, 300)
	st := checkpoint.NewState("keys")
	for _, r := range h {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{0, 1, 57, 150, 299} {
		v := h[i].Version
		want, wantN := stateOf(newestAt(h, v), 0)
		got, n, err := st.At(v)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(&want) || n != wantN {
			t.Fatalf("At(%d): differs from the state built from the changes up to it", i)
		}
		els, err := st.ElementsAt(v, []string{"k1", "k2", "k19", "nokey"})
		if err != nil {
			t.Fatal(err)
		}
		byKey := map[string]record.Record{}
		for _, r := range newestAt(h, v) {
			byKey[r.Key] = r
		}
		for k, e := range els {
			r, ok := byKey[k]
			if !ok {
				if e != nil {
					t.Fatalf("ElementsAt(%d) gives %s a state it did not have yet", i, k)
				}
				continue
			}
			if e == nil || *e != statehash.ElementOf(r) {
				t.Fatalf("ElementsAt(%d)[%s] = %+v, want %+v", i, k, e, statehash.ElementOf(r))
			}
		}
	}
	st.Forget(h[100].Version)
	if _, _, err := st.At(h[99].Version); err == nil {
		t.Fatal("At below the forgotten version answered")
	}
	if _, _, err := st.At(h[100].Version); err != nil {
		t.Fatalf("At the forgotten version itself: %v", err)
	}
	if st.JournalLen() != 199 {
		t.Fatalf("journal holds %d changes after Forget, want 199", st.JournalLen())
	}
}

// TestStateAtAnyOrder: applied in any order (a restamp pushed by gossip
// before the log brings the first attempt; a snapshot's records above its
// version before the log's older ones), with Forget along the way, At and
// ElementsAt still answer the newest states at or below each version: an
// element that arrived after a newer one of its key was that key's state
// in between (a chaos run saw nodes mismatch checkpoints for this alone).
func TestStateAtAnyOrder(t *testing.T) {
	for seed := range uint64(30) {
		h := history(seed, 200)
		st := checkpoint.NewState("keys")
		r := rand.New(rand.NewPCG(seed, 11))
		// Out of order within a sliding window of 30 changes, as arrivals
		// from several paths are: shuffle each window.
		order := make([]int, len(h))
		for i := range order {
			order[i] = i
		}
		for lo := 0; lo < len(order); lo += 30 {
			hi := min(lo+30, len(order))
			r.Shuffle(hi-lo, func(i, j int) { order[lo+i], order[lo+j] = order[lo+j], order[lo+i] })
		}
		for n, i := range order {
			if _, err := st.Apply(statehash.ElementOf(h[i])); err != nil {
				t.Fatal(err)
			}
			if n == 100 {
				// Every change at or below h[40] has been applied (the
				// windows before the fourth are whole): what a match there
				// allows forgetting.
				st.Forget(h[40].Version)
			}
		}
		for _, i := range []int{40, 41, 77, 119, 150, 183, 199} {
			v := h[i].Version
			want, wantN := stateOf(newestAt(h, v), 0)
			got, n, err := st.At(v)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(&want) || n != wantN {
				t.Fatalf("seed %d: At(%d) after out-of-order arrivals differs from the state built from the changes up to it", seed, i)
			}
			keys := make([]string, 20)
			for k := range keys {
				keys[k] = fmt.Sprintf("k%d", k)
			}
			els, err := st.ElementsAt(v, keys)
			if err != nil {
				t.Fatal(err)
			}
			byKey := map[string]record.Record{}
			for _, rc := range newestAt(h, v) {
				byKey[rc.Key] = rc
			}
			for k, e := range els {
				rc, ok := byKey[k]
				switch {
				case !ok && e != nil:
					t.Fatalf("seed %d: ElementsAt(%d) gives %s a state it did not have yet", seed, i, k)
				case ok && (e == nil || *e != statehash.ElementOf(rc)):
					t.Fatalf("seed %d: ElementsAt(%d)[%s] = %+v, want %+v", seed, i, k, e, statehash.ElementOf(rc))
				}
			}
		}
	}
}

// TestStateFloor: tombstones below the floor leave the hash, live records
// never do, and At keeps to the floor too.
func TestStateFloor(t *testing.T) {
	h := history(2, 300)
	st := checkpoint.NewState("keys")
	for _, r := range h {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			t.Fatal(err)
		}
	}
	floor := h[200].Version
	st.SetFloor(floor)
	st.SetFloor(floor - 1) // never goes down
	want, wantN := stateOf(newestAt(h, ver(1<<30)), floor)
	got := st.Hash()
	if !got.Equal(&want) || st.Count() != wantN {
		t.Fatalf("after SetFloor: count %d, want %d, or hash differs", st.Count(), wantN)
	}
	wantAt, wantAtN := stateOf(newestAt(h, h[250].Version), floor)
	gotAt, n, _ := st.At(h[250].Version)
	if !gotAt.Equal(&wantAt) || n != wantAtN {
		t.Fatal("At after SetFloor differs from the floored state built from scratch")
	}
	// A tombstone below the floor applied later stays out.
	old := rec(nil, "new-key", floor-1, "")
	if _, err := st.Apply(statehash.ElementOf(old)); err != nil {
		t.Fatal(err)
	}
	if got := st.Hash(); !got.Equal(&want) {
		t.Fatal("a tombstone below the floor entered the hash")
	}
}

func TestStateOtherNamespace(t *testing.T) {
	st := checkpoint.NewState("keys")
	if _, err := st.Apply(statehash.Element{Namespace: "routes", Key: "a", Version: 1}); err == nil {
		t.Fatal("an element of another namespace was applied")
	}
}
