package statehash_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

func elem(i int) statehash.Element {
	return statehash.ElementOf(record.Record{Namespace: "keys", Key: fmt.Sprintf("k%07d", i), Version: record.Version(1000 + i), Value: []byte(fmt.Sprint("value ", i))})
}

func TestOrderDoesNotMatter(t *testing.T) {
	var a, b statehash.Hash
	for i := range 100 {
		a.Add(elem(i))
	}
	for _, i := range rand.Perm(100) {
		b.Add(elem(i))
	}
	if !a.Equal(&b) {
		t.Fatal("the same set added in another order hashes differently")
	}
	if a.IsZero() {
		t.Fatal("a non-empty set hashes to zero")
	}
}

func TestAddRemoveIsIdentity(t *testing.T) {
	var h, want statehash.Hash
	for i := range 10 {
		h.Add(elem(i))
		want.Add(elem(i))
	}
	h.Add(elem(99))
	if h.Equal(&want) {
		t.Fatal("adding an element did not change the hash")
	}
	h.Remove(elem(99))
	if !h.Equal(&want) {
		t.Fatal("removing the element just added did not restore the hash")
	}
	for i := range 10 {
		h.Remove(elem(i))
	}
	if !h.IsZero() {
		t.Fatal("removing every element does not give the empty set's hash")
	}
}

func TestReplaceAndCombine(t *testing.T) {
	var whole, left, right statehash.Hash
	for i := range 50 {
		whole.Add(elem(i))
		if i%2 == 0 {
			left.Add(elem(i))
		} else {
			right.Add(elem(i))
		}
	}
	sum := left
	sum.Combine(&right)
	if !sum.Equal(&whole) {
		t.Fatal("the hashes of two halves do not combine into the whole's")
	}
	sum.Subtract(&right)
	if !sum.Equal(&left) {
		t.Fatal("subtracting a half does not leave the other")
	}
	a, b := whole, whole
	a.Replace(elem(3), elem(77))
	b.Remove(elem(3))
	b.Add(elem(77))
	if !a.Equal(&b) {
		t.Fatal("Replace differs from Remove then Add")
	}
}

// TestLaneArithmetic checks the four-lanes-a-word addition and subtraction
// against plain 16-bit arithmetic, lane by lane, including every carry
// and borrow case.
func TestLaneArithmetic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		a, b := statehash.Of(elem(round)), statehash.Of(elem(round+1000))
		if round%3 == 0 {
			// Push lanes to the edges: 0xffff + 1, 0 - 1, 0x7fff + 1.
			raw := a.AppendRaw(nil)
			for i := range raw {
				if r.IntN(2) == 0 {
					raw[i] = 0xff
				}
			}
			if err := a.ParseRaw(raw); err != nil {
				t.Fatal(err)
			}
		}
		sum, diff := a, a
		sum.Combine(&b)
		diff.Subtract(&b)
		for i := range statehash.Lanes {
			if got, want := sum.Lane(i), a.Lane(i)+b.Lane(i); got != want {
				t.Fatalf("round %d lane %d: %#x + %#x = %#x, want %#x", round, i, a.Lane(i), b.Lane(i), got, want)
			}
			if got, want := diff.Lane(i), a.Lane(i)-b.Lane(i); got != want {
				t.Fatalf("round %d lane %d: %#x - %#x = %#x, want %#x", round, i, a.Lane(i), b.Lane(i), got, want)
			}
		}
	}
}

// TestEveryFieldCounts: changing any field of an element changes its hash,
// and the length prefixes keep key and namespace apart.
func TestEveryFieldCounts(t *testing.T) {
	base := statehash.Element{Namespace: "keys", Key: "a", Version: 7, Digest: [32]byte{1}}
	variants := map[string]statehash.Element{}
	v := base
	v.Namespace = "keyz"
	variants["namespace"] = v
	v = base
	v.Key = "b"
	variants["key"] = v
	v = base
	v.Version = 8
	variants["version"] = v
	v = base
	v.Tombstone = true
	variants["tombstone"] = v
	v = base
	v.Digest[31] = 1
	variants["digest"] = v
	shifted := statehash.Element{Namespace: "key", Key: "sa", Version: 7, Digest: [32]byte{1}}
	variants["namespace/key boundary"] = shifted
	h0 := statehash.Of(base)
	for name, e := range variants {
		if h := statehash.Of(e); h.Equal(&h0) {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
}

// TestPinnedEncoding pins the hash of one element: changing the element
// encoding, the XOF or the lane order changes every hash, and would make
// nodes and publishers of different builds disagree about every namespace.
func TestPinnedEncoding(t *testing.T) {
	h := statehash.Of(statehash.Element{Namespace: "routes", Key: "example.com", Version: 1, Digest: [32]byte{}})
	got := fmt.Sprintf("%04x %04x %04x %04x", h.Lane(0), h.Lane(1), h.Lane(2), h.Lane(1023))
	const want = "223a bb21 e157 2827" // algorithm 2 (BLAKE3); testdata/vectors.json pins every lane
	if got != want {
		t.Fatalf("lanes 0, 1, 2, 1023 = %s, want %s", got, want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	var h statehash.Hash
	for i := range 5 {
		h.Add(elem(i))
	}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != statehash.EncodedSize {
		t.Fatalf("encoding is %d bytes, want %d", len(b), statehash.EncodedSize)
	}
	var back statehash.Hash
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(&h) {
		t.Fatal("round trip changed the hash")
	}
	for name, bad := range map[string][]byte{
		"empty":  nil,
		"short":  b[:len(b)-1],
		"long":   append(append([]byte(nil), b...), 0),
		"magic":  append([]byte("XX"), b[2:]...),
		"format": append([]byte{'L', 'H', 2}, b[3:]...),
		"xof":    append([]byte{'L', 'H', 1, 9}, b[4:]...),
		// A hash of the retired algorithm 1 (SHAKE128) is never read as one
		// of this algorithm's.
		"algorithm 1": append([]byte{'L', 'H', 1, 1}, b[4:]...),
	} {
		before := back
		err := back.UnmarshalBinary(bad)
		if !errors.Is(err, statehash.ErrCorrupt) || !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
		if !back.Equal(&before) {
			t.Errorf("%s: a failed decode changed the hash", name)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	var h statehash.Hash
	h.Add(elem(1))
	b, _ := h.MarshalBinary()
	f.Add(b)
	f.Add([]byte("LH\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h statehash.Hash
		if err := h.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("error %v does not wrap record.ErrCorrupt", err)
			}
			return
		}
		out, err := h.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("decoded hash re-encodes differently (err %v)", err)
		}
	})
}

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// TestSeedCorpus builds FuzzUnmarshal's seeds (a valid encoding, the empty
// set's, a truncated one, one of the retired algorithm 1) and checks each
// decodes as its name says; with -write-seeds it writes them to
// testdata/fuzz/FuzzUnmarshal, which must hold them, so the fuzzer starts
// from the inside of the format.
func TestSeedCorpus(t *testing.T) {
	var h, zero statehash.Hash
	h.Add(elem(1))
	b, _ := h.MarshalBinary()
	zb, _ := zero.MarshalBinary()
	seeds := []struct {
		name  string
		b     []byte
		valid bool
	}{
		{"valid", b, true},
		{"zero", zb, true},
		{"truncated", b[:len(b)-1], false},
		{"algorithm1", append([]byte{'L', 'H', 1, 1}, b[4:]...), false},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzUnmarshal")
	for _, s := range seeds {
		var back statehash.Hash
		if err := back.UnmarshalBinary(s.b); (err == nil) != s.valid {
			t.Errorf("seed %s: decode error %v, want valid=%v", s.name, err, s.valid)
		}
		if *writeSeeds {
			if err := os.WriteFile(filepath.Join(dir, s.name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s.b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) < len(seeds) {
		t.Fatalf("seed corpus missing or thin (%d files): %v", len(entries), err)
	}
}
