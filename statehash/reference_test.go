package statehash_test

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// This file recomputes the state hash with a reference written from the
// specifications alone, sharing no code with the package: BLAKE3 (single
// chunk, root output of any length; the spec's reference implementation,
// checked below against the BLAKE3 team's published test vectors), the
// element encoding written out byte by byte, and lanes summed as plain
// uint16s. testdata/vectors.json holds what it computes; the package
// must agree with both, so a silent change of the construction (XOF,
// encoding, lane order, arithmetic) fails here.

var writeVectors = flag.Bool("write-vectors", false, "rewrite testdata/vectors.json from the reference implementation")

// refIV, refPerm and the flags are BLAKE3's (spec section 2).
var refIV = [8]uint32{0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19}
var refPerm = [16]int{2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8}

const (
	refChunkStart = 1
	refChunkEnd   = 2
	refRoot       = 8
)

func refG(s *[16]uint32, a, b, c, d int, mx, my uint32) {
	s[a] = s[a] + s[b] + mx
	s[d] = bits.RotateLeft32(s[d]^s[a], -16)
	s[c] = s[c] + s[d]
	s[b] = bits.RotateLeft32(s[b]^s[c], -12)
	s[a] = s[a] + s[b] + my
	s[d] = bits.RotateLeft32(s[d]^s[a], -8)
	s[c] = s[c] + s[d]
	s[b] = bits.RotateLeft32(s[b]^s[c], -7)
}

func refCompress(cv [8]uint32, m [16]uint32, counter uint64, blockLen, flags uint32) [16]uint32 {
	s := [16]uint32{cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
		refIV[0], refIV[1], refIV[2], refIV[3], uint32(counter), uint32(counter >> 32), blockLen, flags}
	for round := range 7 {
		refG(&s, 0, 4, 8, 12, m[0], m[1])
		refG(&s, 1, 5, 9, 13, m[2], m[3])
		refG(&s, 2, 6, 10, 14, m[4], m[5])
		refG(&s, 3, 7, 11, 15, m[6], m[7])
		refG(&s, 0, 5, 10, 15, m[8], m[9])
		refG(&s, 1, 6, 11, 12, m[10], m[11])
		refG(&s, 2, 7, 8, 13, m[12], m[13])
		refG(&s, 3, 4, 9, 14, m[14], m[15])
		if round < 6 {
			var p [16]uint32
			for i := range p {
				p[i] = m[refPerm[i]]
			}
			m = p
		}
	}
	for i := range 8 {
		s[i] ^= s[i+8]
		s[i+8] ^= cv[i]
	}
	return s
}

// refBLAKE3 is BLAKE3's hash mode with an extended output of n bytes, for
// inputs of one chunk (at most 1024 bytes: every element encoding is).
func refBLAKE3(t testing.TB, in []byte, n int) []byte {
	if len(in) > 1024 {
		t.Fatalf("reference BLAKE3 takes one chunk, got %d bytes", len(in))
	}
	var blocks [][]byte
	for len(in) > 64 {
		blocks, in = append(blocks, in[:64]), in[64:]
	}
	blocks = append(blocks, in)
	words := func(b []byte) (m [16]uint32) {
		var full [64]byte
		copy(full[:], b)
		for i := range m {
			m[i] = binary.LittleEndian.Uint32(full[4*i:])
		}
		return m
	}
	cv := refIV
	flags := uint32(refChunkStart)
	for _, b := range blocks[:len(blocks)-1] {
		out := refCompress(cv, words(b), 0, 64, flags)
		copy(cv[:], out[:8])
		flags = 0
	}
	last := blocks[len(blocks)-1]
	var out []byte
	for counter := uint64(0); len(out) < n; counter++ {
		w := refCompress(cv, words(last), counter, uint32(len(last)), flags|refChunkEnd|refRoot)
		for _, x := range w {
			out = binary.LittleEndian.AppendUint32(out, x)
		}
	}
	return out[:n]
}

// TestReferenceBLAKE3 checks the reference against the BLAKE3 team's test
// vectors (test_vectors.json of the BLAKE3 repository: input byte i is
// i mod 251, 131 bytes of extended output), for inputs of one chunk.
func TestReferenceBLAKE3(t *testing.T) {
	for n, want := range map[int]string{
		0:    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262e00f03e7b69af26b7faaf09fcd333050338ddfe085b8cc869ca98b206c08243a26f5487789e8f660afe6c99ef9e0c52b92e7393024a80459cf91f476f9ffdbda7001c22e159b402631f277ca96f2defdf1078282314e763699a31c5363165421cce14d",
		1:    "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213c3a6cb8bf623e20cdb535f8d1a5ffb86342d9c0b64aca3bce1d31f60adfa137b358ad4d79f97b47c3d5e79f179df87a3b9776ef8325f8329886ba42f07fb138bb502f4081cbcec3195c5871e6c23e2cc97d3c69a613eba131e5f1351f3f1da786545e5",
		1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11a182d27a591b05592b15607500e1e8dd56bc6c7fc063715b7a1d737df5bad3339c56778957d870eb9717b57ea3d9fb68d1b55127bba6a906a4a24bbd5acb2d123a37b28f9e9a81bbaae360d58f85e5fc9d75f7c370a0cc09b6522d9c8d822f2f28f485",
		1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af71cf8107265ecdaf8505b95d8fcec83a98a6a96ea5109d2c179c47a387ffbb404756f6eeae7883b446b70ebb144527c2075ab8ab204c0086bb22b7c93d465efc57f8d917f0b385c6df265e77003b85102967486ed57db5c5ca170ba441427ed9afa684e",
	} {
		in := make([]byte, n)
		for i := range in {
			in[i] = byte(i % 251)
		}
		if got := hex.EncodeToString(refBLAKE3(t, in, 131)); got != want {
			t.Errorf("reference BLAKE3 of %d bytes = %s…, want %s…", n, got[:16], want[:16])
		}
	}
}

// refEncode is the element encoding (AppendEncoding's doc), written out.
func refEncode(e statehash.Element) []byte {
	b := []byte("dataplane state element v2")
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(len(e.Namespace)))
	b = append(b, e.Namespace...)
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(e.Version))
	b = append(b, v[:]...)
	if e.Tombstone {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, e.Digest[:]...)
}

// refLanes is the hash of one element as 1024 uint16 lanes.
func refLanes(t testing.TB, e statehash.Element) []uint16 {
	out := refBLAKE3(t, refEncode(e), 2048)
	lanes := make([]uint16, 1024)
	for i := range lanes {
		lanes[i] = binary.LittleEndian.Uint16(out[2*i:])
	}
	return lanes
}

func lanesHex(lanes []uint16) string {
	var b []byte
	for _, l := range lanes {
		b = binary.LittleEndian.AppendUint16(b, l)
	}
	return hex.EncodeToString(b)
}

// vectorFile is testdata/vectors.json.
type vectorFile struct {
	Comment   string         `json:"comment"`
	Algorithm int            `json:"algorithm"`
	Elements  []vectorElem   `json:"elements"`
	Sets      []vectorSetSum `json:"sets"`
}

type vectorElem struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Version   uint64 `json:"version"`
	Tombstone bool   `json:"tombstone"`
	Digest    string `json:"digest"`   // hex, 32 bytes
	Encoding  string `json:"encoding"` // hex: the XOF's input
	Lanes     string `json:"lanes"`    // hex, 2048 bytes: 1024 little-endian uint16
}

// vectorSetSum is the hash of a multiset: the elements Add lists (by
// index into Elements, repeats allowed) minus those Remove lists.
type vectorSetSum struct {
	Add    []int  `json:"add"`
	Remove []int  `json:"remove"`
	Lanes  string `json:"lanes"`
}

func (v vectorElem) element(t testing.TB) statehash.Element {
	e := statehash.Element{Namespace: v.Namespace, Key: v.Key, Version: record.Version(v.Version), Tombstone: v.Tombstone}
	d, err := hex.DecodeString(v.Digest)
	if err != nil || len(d) != len(e.Digest) {
		t.Fatalf("vector digest %q: %v", v.Digest, err)
	}
	copy(e.Digest[:], d)
	return e
}

// vectorElements are the elements of the vectors: the shortest and
// longest namespaces and keys, a tombstone, the extreme versions, the
// digest of a value and of nothing.
func vectorElements() []statehash.Element {
	val := record.Record{Value: []byte(`{"upstream":"http://10.0.0.1:8080"}`)}
	return []statehash.Element{
		{Namespace: "routes", Key: "example.com", Version: 1},
		statehash.ElementOf(record.Record{Namespace: "routes", Key: "api.example.com", Version: 0x0001_8f3a_5c2e_0003, Value: val.Value}),
		statehash.ElementOf(record.Record{Namespace: "keys", Key: "ks/" + strings.Repeat("ab", 32), Version: 1 << 62, Tombstone: true}),
		{Namespace: strings.Repeat("n", record.MaxNamespaceLen), Key: strings.Repeat("k", record.MaxKeyLen), Version: 1<<64 - 1, Digest: [32]byte{0: 0xff, 31: 0x01}},
		{Namespace: "k", Key: "eys/x", Version: 2},
	}
}

func refVectors(t testing.TB) vectorFile {
	f := vectorFile{
		Comment: "State hash (package statehash) known answers, algorithm 2: LtHash16 over BLAKE3. " +
			"An element's hash is the first 2048 bytes of BLAKE3's extended output (hash mode, no key) of its encoding, " +
			"read as 1024 little-endian uint16 lanes; a set's hash is the lane-wise sum mod 2^16. " +
			"Computed by the reference in statehash/reference_test.go (go test ./statehash -run TestVectors -write-vectors).",
		Algorithm: 2,
	}
	els := vectorElements()
	lanes := make([][]uint16, len(els))
	for i, e := range els {
		lanes[i] = refLanes(t, e)
		f.Elements = append(f.Elements, vectorElem{
			Namespace: e.Namespace, Key: e.Key, Version: uint64(e.Version), Tombstone: e.Tombstone,
			Digest: hex.EncodeToString(e.Digest[:]), Encoding: hex.EncodeToString(refEncode(e)), Lanes: lanesHex(lanes[i]),
		})
	}
	for _, s := range []vectorSetSum{
		{Add: []int{0, 1, 2, 3, 4}},
		{Add: []int{1, 1, 1}},
		{Add: []int{0, 2}, Remove: []int{1}},
		{Add: []int{3}, Remove: []int{3}},
	} {
		sum := make([]uint16, 1024)
		for _, i := range s.Add {
			for l := range sum {
				sum[l] += lanes[i][l]
			}
		}
		for _, i := range s.Remove {
			for l := range sum {
				sum[l] -= lanes[i][l]
			}
		}
		s.Lanes = lanesHex(sum)
		f.Sets = append(f.Sets, s)
	}
	return f
}

// TestVectors: the reference and the package both compute
// testdata/vectors.json.
func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	ref := refVectors(t)
	if *writeVectors {
		b, err := json.MarshalIndent(ref, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Algorithm != statehash.Algorithm || len(f.Elements) == 0 || len(f.Sets) == 0 {
		t.Fatalf("vectors of algorithm %d (%d elements, %d sets), package computes %d", f.Algorithm, len(f.Elements), len(f.Sets), statehash.Algorithm)
	}
	hashes := make([]statehash.Hash, len(f.Elements))
	for i, v := range f.Elements {
		e := v.element(t)
		if i < len(ref.Elements) && ref.Elements[i] != v {
			t.Errorf("element %d: the reference computes another vector than the file's", i)
		}
		if got := hex.EncodeToString(e.AppendEncoding(nil)); got != v.Encoding {
			t.Errorf("element %d: encoding %s, want %s", i, got, v.Encoding)
		}
		hashes[i] = statehash.Of(e)
		if got := hex.EncodeToString(hashes[i].AppendRaw(nil)); got != v.Lanes {
			t.Errorf("element %d (%s/%s): lanes %s…, want %s…", i, v.Namespace, v.Key, got[:16], v.Lanes[:16])
		}
	}
	for i, s := range f.Sets {
		if i < len(ref.Sets) && ref.Sets[i].Lanes != s.Lanes {
			t.Errorf("set %d: the reference computes another sum than the file's", i)
		}
		// Through Add and Remove, and through Combine and Subtract.
		var viaAdd, viaCombine statehash.Hash
		for _, j := range s.Add {
			viaAdd.Add(f.Elements[j].element(t))
			viaCombine.Combine(&hashes[j])
		}
		for _, j := range s.Remove {
			viaAdd.Remove(f.Elements[j].element(t))
			viaCombine.Subtract(&hashes[j])
		}
		for name, h := range map[string]*statehash.Hash{"Add/Remove": &viaAdd, "Combine/Subtract": &viaCombine} {
			if got := hex.EncodeToString(h.AppendRaw(nil)); got != s.Lanes {
				t.Errorf("set %d via %s: lanes %s…, want %s…", i, name, got[:16], s.Lanes[:16])
			}
		}
	}
}
