package checkpoint_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// snapshotCase is a namespace whose snapshot at V holds two records newer
// than V (a key changed after V, and a key created after V), as the
// publisher's snapshot passes write them, with its honest proof.
func snapshotCase(t *testing.T, n int) (*sign.Signer, *sign.Verifier, record.Snapshot, *checkpoint.SnapshotProof, time.Time) {
	s, v := keys(t)
	V := ver(1_000_000)
	recs := nsRecords(s, n, ver(0))
	recs = append(recs, rec(s, "gone", ver(500), "")) // a tombstone
	st := checkpoint.NewState("keys")
	for _, r := range recs {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			t.Fatal(err)
		}
	}
	// After V: k00001 changes, "late" appears.
	changed := rec(s, "k00001", V+5, "changed after V")
	created := rec(s, "late", V+6, "created after V")
	for _, r := range []record.Record{changed, created} {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			t.Fatal(err)
		}
	}
	h, cnt, err := st.At(V)
	if err != nil {
		t.Fatal(err)
	}
	now := V.Time().Add(2 * time.Second)
	c := signed(t, s, "keys", V, h, cnt, now)
	els, err := st.ElementsAt(V, []string{"k00001", "late"})
	if err != nil {
		t.Fatal(err)
	}
	proof := &checkpoint.SnapshotProof{Checkpoint: c, Above: []checkpoint.AtVersion{{Key: "k00001", Element: els["k00001"]}, {Key: "late", Element: els["late"]}}}
	recs[1] = changed
	recs = append(recs, created)
	snap := record.Snapshot{Namespace: "keys", Version: V, Records: recs}
	return s, v, snap, proof, now
}

func TestVerifySnapshot(t *testing.T) {
	for _, n := range []int{10, 5000} { // one core, and every core
		s, keysV, snap, proof, now := snapshotCase(t, n)
		v := &checkpoint.Verifier{Keys: keysV, MaxSkew: time.Second, Now: func() time.Time { return now }}
		// vs checks the same snapshots streamed (Verifier.StartSnapshot),
		// in batches of 7 records.
		vs := &checkpoint.Verifier{Keys: keysV, MaxSkew: time.Second, Now: func() time.Time { return now }}
		streamed := func(s record.Snapshot, p *checkpoint.SnapshotProof) error {
			sc, err := vs.StartSnapshot(s.Namespace, s.Version, p, nil)
			if err != nil {
				return err
			}
			// One buffer for every batch, overwritten after each Add (as a
			// streaming reader reuses its batch): Add must not keep it.
			buf := make([]record.Record, 7)
			for recs := s.Records; len(recs) > 0; recs = recs[min(7, len(recs)):] {
				n := copy(buf, recs)
				sc.Add(buf[:n])
				for i := range buf {
					buf[i] = record.Record{Namespace: "keys", Key: "overwritten", Version: 1}
				}
			}
			return sc.Finish()
		}
		if err := v.VerifySnapshot(snap, proof, nil); err != nil {
			t.Fatalf("n=%d: the honest snapshot is refused: %v", n, err)
		}
		if err := streamed(snap, proof); err != nil {
			t.Fatalf("n=%d: the honest snapshot is refused streamed: %v", n, err)
		}
		tamper := func(name string, f func(recs []record.Record) []record.Record, p *checkpoint.SnapshotProof, want error) {
			t.Helper()
			s2 := snap
			s2.Records = f(append([]record.Record(nil), snap.Records...))
			if p == nil {
				p = proof
			}
			if err := v.VerifySnapshot(s2, p, nil); !errors.Is(err, want) {
				t.Errorf("n=%d %s: err = %v, want %v", n, name, err, want)
			}
			if err := streamed(s2, p); !errors.Is(err, want) {
				t.Errorf("n=%d %s streamed: err = %v, want %v", n, name, err, want)
			}
		}
		// A bucket writer without the key leaves a signed key out.
		tamper("key left out", func(r []record.Record) []record.Record { return append(r[:3], r[4:]...) }, nil, checkpoint.ErrMismatch)
		tamper("tombstone left out", func(r []record.Record) []record.Record { return r[:n] }, nil, checkpoint.ErrMismatch)
		// ...replays an older signed version of a key.
		tamper("older signed version", func(r []record.Record) []record.Record {
			r[2] = rec(s, r[2].Key, r[2].Version-1, "older")
			return r
		}, nil, checkpoint.ErrMismatch)
		// ...changes a value, seal untouched.
		tamper("value changed", func(r []record.Record) []record.Record {
			r[4].Value = []byte("forged")
			return r
		}, nil, checkpoint.ErrMismatch)
		// ...names a key twice (a record duplicated).
		tamper("record duplicated", func(r []record.Record) []record.Record {
			return append(r, r[3])
		}, nil, checkpoint.ErrMismatch)
		// ...adds a key.
		tamper("key added", func(r []record.Record) []record.Record {
			return append(r, rec(s, "extra", ver(7), "x"))
		}, nil, checkpoint.ErrMismatch)
		// ...claims a record above V the proof does not know.
		tamper("unproven record above V", func(r []record.Record) []record.Record {
			return append(r, rec(s, "extra", snap.Version+1, "x"))
		}, nil, checkpoint.ErrMismatch)
		// ...forges the record above V (its seal is checked one by one).
		tamper("forged record above V", func(r []record.Record) []record.Record {
			for i := range r {
				if r[i].Key == "late" {
					r[i].Value = []byte("forged")
				}
			}
			return r
		}, nil, sign.ErrDigestMismatch)
		if got := v.Refused("digest_mismatch"); got != 1 {
			t.Errorf("n=%d: %d digest mismatches counted, want 1", n, got)
		}
		// ...or changes the proof's state of a key above V.
		bad := *proof
		bad.Above = append([]checkpoint.AtVersion(nil), proof.Above...)
		bad.Above[1] = checkpoint.AtVersion{Key: "late", Element: &statehash.Element{Namespace: "keys", Key: "late", Version: 3}}
		tamper("proof's state above V changed", func(r []record.Record) []record.Record { return r }, &bad, checkpoint.ErrMismatch)
		// ...or the checkpoint.
		badC := *proof.Checkpoint
		badC.Count--
		tamper("checkpoint changed", func(r []record.Record) []record.Record { return r }, &checkpoint.SnapshotProof{Checkpoint: &badC, Above: proof.Above}, sign.ErrBadSignature)
		for name, v := range map[string]*checkpoint.Verifier{"whole": v, "streamed": vs} {
			if got := v.Refused("mismatch"); got != 8 {
				t.Errorf("n=%d %s: %d mismatches counted, want 8", n, name, got)
			}
			if got := v.Refused("digest_mismatch"); got != 1 {
				t.Errorf("n=%d %s: %d digest mismatches counted, want 1", n, name, got)
			}
		}
	}
}

func TestProofRoundTrip(t *testing.T) {
	_, _, _, proof, _ := snapshotCase(t, 3)
	b, err := proof.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := checkpoint.UnmarshalProof(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.Marshal()
	if !bytes.Equal(b, b2) || len(back.Above) != 2 || back.Above[1].Element != nil || back.Above[0].Element == nil || *back.Above[0].Element != *proof.Above[0].Element {
		t.Fatalf("round trip changed the proof: %+v", back.Above)
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-1],
		"trailing":  append(append([]byte(nil), b...), 0),
		"header":    append([]byte("DQ"), b[2:]...),
	} {
		if _, err := checkpoint.UnmarshalProof(bad); !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	dup := *proof
	dup.Above = append(dup.Above, dup.Above[0])
	if _, err := dup.Marshal(); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("a key twice: err = %v", err)
	}
}

// TestNodeLoadsSnapshotWithProof follows the package doc: a node builds
// its State exactly at the snapshot's version from the snapshot and its
// proof, then applies the records above the version as changes; it then
// matches the proof's checkpoint at that version and holds the newest
// states as its current hash.
func TestNodeLoadsSnapshotWithProof(t *testing.T) {
	_, _, snap, proof, _ := snapshotCase(t, 50)
	V := proof.Checkpoint.Version
	above := map[string]*statehash.Element{}
	for _, a := range proof.Above {
		above[a.Key] = a.Element
	}
	st := checkpoint.NewState("keys")
	var later []record.Record
	for _, r := range snap.Records {
		e := statehash.ElementOf(r)
		if r.Version > V {
			later = append(later, r)
			if above[r.Key] == nil {
				continue
			}
			e = *above[r.Key]
		}
		if _, err := st.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	st.Forget(V)
	for _, r := range later {
		if ok, err := st.Apply(statehash.ElementOf(r)); err != nil || !ok {
			t.Fatalf("applying %s above the version: %v, %v", r.Key, ok, err)
		}
	}
	h, n, err := st.At(V)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.Match(proof.Checkpoint, &h, n); err != nil {
		t.Fatalf("the node's state at the snapshot's version does not match its proof: %v", err)
	}
	want, wantN := stateOf(snap.Records, 0)
	if cur := st.Hash(); !cur.Equal(&want) || st.Count() != wantN {
		t.Fatal("the node's current state is not the snapshot's newest states")
	}
}

// TestSnapshotCheckFailsEarly: once a worker has found a mismatch, Add
// takes no more work and never blocks, and Finish reports the mismatch;
// a snapshot header of another version is refused at the start, and
// Finish twice is an error.
func TestSnapshotCheckFailsEarly(t *testing.T) {
	_, keysV, snap, proof, now := snapshotCase(t, 50)
	v := &checkpoint.Verifier{Keys: keysV, MaxSkew: time.Second, Now: func() time.Time { return now }}
	if _, err := v.StartSnapshot(snap.Namespace, snap.Version+1, proof, nil); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("a snapshot of another version: err = %v, want ErrInvalid", err)
	}
	sc, err := v.StartSnapshot(snap.Namespace, snap.Version, proof, nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger := snap.Records[0]
	stranger.Namespace = "routes"
	sc.Add([]record.Record{stranger})
	// Far more batches than the workers' queue holds: with the check
	// failed, none of them may wait for a worker.
	for range 10_000 {
		sc.Add(snap.Records[:1])
	}
	if err := sc.Finish(); !errors.Is(err, checkpoint.ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch", err)
	}
	if err := sc.Finish(); err == nil {
		t.Fatal("Finish twice succeeded")
	}
}

// TestSnapshotCheckState: the State a matched check builds from the
// digests its hashing computed (SnapshotCheck.State, records given with
// Take, no copy) is the state built by applying every element again: the
// same hash, count and keys now, at the snapshot's version, and after the
// tombstone floor rises past its tombstone. It is refused before a match,
// after a mismatch, and a second time.
func TestSnapshotCheckState(t *testing.T) {
	for _, n := range []int{10, 5000} {
		_, keysV, snap, proof, now := snapshotCase(t, n)
		v := &checkpoint.Verifier{Keys: keysV, MaxSkew: time.Second, Now: func() time.Time { return now.Add(time.Hour) }} // expired: a base
		V := proof.Checkpoint.Version
		// The reference: the state at V element by element, the journal
		// forgotten there, the records above V applied as changes.
		want := checkpoint.NewState("keys")
		above := map[string]*statehash.Element{}
		for _, a := range proof.Above {
			above[a.Key] = a.Element
		}
		for _, r := range snap.Records {
			e := statehash.ElementOf(r)
			if r.Version > V {
				if above[r.Key] == nil {
					continue
				}
				e = *above[r.Key]
			}
			if _, err := want.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
		want.Forget(V)
		for _, r := range snap.Records {
			if r.Version > V {
				if _, err := want.Apply(statehash.ElementOf(r)); err != nil {
					t.Fatal(err)
				}
			}
		}

		if _, err := v.StartBase("keys", V, proof, V+1); !errors.Is(err, checkpoint.ErrRollback) {
			t.Fatalf("n=%d: a proof older than the floor: err = %v, want ErrRollback", n, err)
		}
		sc, err := v.StartBase("keys", V, proof, V)
		if err != nil {
			t.Fatal(err)
		}
		recs := append([]record.Record(nil), snap.Records...)
		for rest := recs; len(rest) > 0; rest = rest[min(7, len(rest)):] {
			sc.Take(rest[:min(7, len(rest))])
		}
		if _, err := sc.State(); !errors.Is(err, record.ErrInvalid) {
			t.Fatalf("n=%d: State before Finish: err = %v", n, err)
		}
		if err := sc.Finish(); err != nil {
			t.Fatalf("n=%d: the honest snapshot is refused: %v", n, err)
		}
		got, err := sc.State()
		if err != nil {
			t.Fatal(err)
		}
		same := func(what string) {
			t.Helper()
			gh, wh := got.Hash(), want.Hash()
			if !gh.Equal(&wh) || got.Count() != want.Count() || got.Len() != want.Len() {
				t.Fatalf("n=%d %s: state %d elements, %d keys; want %d, %d, or the hash differs", n, what, got.Count(), got.Len(), want.Count(), want.Len())
			}
			ga, gn, err := got.At(V)
			if err != nil {
				t.Fatal(err)
			}
			wa, wn, _ := want.At(V)
			if !ga.Equal(&wa) || gn != wn {
				t.Fatalf("n=%d %s: the state at V differs", n, what)
			}
			ge, _ := got.ElementsAt(V, []string{"k00001", "late", "gone", "k00002"})
			we, _ := want.ElementsAt(V, []string{"k00001", "late", "gone", "k00002"})
			for k, w := range we {
				if g := ge[k]; (g == nil) != (w == nil) || g != nil && *g != *w {
					t.Fatalf("n=%d %s: %s at V = %v, want %v", n, what, k, g, w)
				}
			}
		}
		same("built")
		if h, cnt, _ := got.At(V); !proof.Checkpoint.Hash.Equal(&h) || proof.Checkpoint.Count != cnt {
			t.Fatalf("n=%d: the state at V is not the checkpoint's", n)
		}
		got.SetFloor(ver(600)) // past the tombstone "gone" (ver(500))
		want.SetFloor(ver(600))
		same("floor raised")
		if _, err := sc.State(); err == nil {
			t.Fatalf("n=%d: a second State succeeded (the check let go of its records)", n)
		}

		sc, err = v.StartBase("keys", V, proof, 0)
		if err != nil {
			t.Fatal(err)
		}
		sc.Take(recs[1:])
		if err := sc.Finish(); !errors.Is(err, checkpoint.ErrMismatch) {
			t.Fatalf("n=%d: a record left out: err = %v, want ErrMismatch", n, err)
		}
		if _, err := sc.State(); err == nil {
			t.Fatalf("n=%d: State after a mismatch", n)
		}
	}
}
