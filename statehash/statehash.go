// Package statehash provides the state hash of a namespace: a homomorphic
// multiset hash (LtHash, Lewi et al., "Securing Update Propagation with
// Homomorphic Hashing", 2019; Folly's LtHash16) over the elements
// (namespace, key, version, tombstone, value digest) of every key's state.
//
// A Hash is 1024 lanes of 16 bits. The hash of one element is the 2048-byte
// output of an extendable-output function (BLAKE3 in its XOF mode, over a
// domain-separated canonical encoding of the element) read as 1024
// little-endian 16-bit lanes; the hash of a multiset is the lane-wise sum,
// modulo 2^16, of the hashes of its elements. So adding or removing one
// element costs one XOF call and 256 word operations whatever the size of
// the set, two hashes of disjoint sets combine by one addition, and the
// hash of a set does not depend on the order its elements were added in:
// a node that applies changes in any order reaches the hash the publisher
// computed from its origin. With 1024 lanes of 16 bits the construction is
// the paper's LtHash16 parameter set, for which the authors estimate at
// least 200 bits of security against collisions (finding two different
// multisets of the same hash reduces to a short-vector problem in a
// lattice of dimension 1024).
//
// The construction (XOF, element encoding, lane order) is part of every
// checkpoint's meaning, so it is named by Algorithm, which the encodings
// of a Hash and of a checkpoint carry: a hash computed by another
// construction is refused, never compared. Algorithm 1 (SHAKE128, element
// encoding v1) is retired; this package computes Algorithm 2 (BLAKE3,
// element encoding v2) only. testdata/vectors.json pins it, and the tests
// recompute it with a small independent reference (their own BLAKE3 and
// plain 16-bit lane sums).
//
// Why hand-written: no maintained Go library provides LtHash (Folly's is
// C++; the Go ports found are unmaintained toys). The construction is small
// and all of its cryptography is delegated to a maintained XOF, so the
// code here is only the lane arithmetic and the element encoding. The XOF
// is BLAKE3 from lukechampine.com/blake3 (v1.4.1), chosen by measurement:
// an element's 2048 bytes of output are 32 BLAKE3 output blocks, which
// that library computes 16 (AVX-512) or 8 (AVX2) at a time. On the
// project's 2-core AMD EPYC machine, one element's XOF (170-byte input,
// 2048-byte output) took 0.8-1.0 µs with it, on AVX-512 and on AVX2 alike,
// 4.1-5.0 µs on its generic Go code, against 2.5 µs for
// github.com/zeebo/blake3 v0.2.4 (which computes its XOF output one block
// at a time, SSE4.1) and 4.5-7.5 µs for the standard library's SHAKE128
// (crypto/sha3, no assembly on amd64). The module statehash/xofbench
// repeats the comparison (the AVX2 and generic figures came from a copy
// of the library with its CPU detection switched off, not committed).
// BLAKE3 is maintained and widely analysed, and has an XOF of its own; the
// standard library has no BLAKE3, and its SHAKE128 is the slowest here.
// The lane arithmetic adds four lanes in one 64-bit word with carry
// masking (Combine), about 0.15 µs an element.
//
// The zero Hash is the hash of the empty set. Hashes are values (2 KiB):
// copy them freely; a Hash is not safe for concurrent mutation.
package statehash

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"lukechampine.com/blake3"

	"github.com/dataplane/dataplane/record"
)

// Size of a hash in lanes, words and encoded bytes.
const (
	// Lanes is the number of 16-bit lanes.
	Lanes = 1024
	// words is Lanes packed four to a uint64.
	words = Lanes / 4
	// RawSize is the size of the lanes, in bytes (little endian).
	RawSize = Lanes * 2
	// EncodedSize is the size of Marshal's output.
	EncodedSize = 4 + RawSize
)

// ErrCorrupt means bytes could not be decoded as a Hash. It wraps
// record.ErrCorrupt, so callers that check for that still match.
var ErrCorrupt = fmt.Errorf("state hash: %w", record.ErrCorrupt)

// Element is one key's state as the state hash covers it: the same fields a
// record.Seal signs (sign.Message), the value by its SHA-256 digest (of
// nothing, for a tombstone).
type Element struct {
	Namespace string
	Key       string
	Version   record.Version
	Tombstone bool
	Digest    [record.SealDigestLen]byte
}

// ElementOf returns the element of r, digesting its value. It does not
// look at r.Seal: a record whose value does not match its seal's digest
// then hashes differently from what the publisher hashed.
func ElementOf(r record.Record) Element {
	return Element{Namespace: r.Namespace, Key: r.Key, Version: r.Version, Tombstone: r.Tombstone, Digest: digest(r.Value)}
}

// elementPrefix separates element hashes from every other use of the XOF
// (and from Algorithm 1's elements).
const elementPrefix = "dataplane state element v2\x00"

// maxElementLen bounds the canonical encoding of an element.
const maxElementLen = len(elementPrefix) + 2*binary.MaxVarintLen32 + record.MaxNamespaceLen + record.MaxKeyLen + 8 + 1 + record.SealDigestLen

// AppendEncoding appends the canonical encoding of e, the XOF's input:
//
//	"dataplane state element v2" 0x00 | uvarint len + namespace |
//	uvarint len + key | version (8 bytes, big endian) |
//	tombstone (1 byte, 0 or 1) | digest (32 bytes)
//
// Lengths prefix the strings, so no two elements encode alike.
func (e *Element) AppendEncoding(b []byte) []byte {
	b = append(b, elementPrefix...)
	b = binary.AppendUvarint(b, uint64(len(e.Namespace)))
	b = append(b, e.Namespace...)
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Version))
	if e.Tombstone {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, e.Digest[:]...)
}

// Hash is the LtHash16 of a multiset of elements. The zero value is the
// hash of the empty set.
type Hash struct {
	w [words]uint64 // lane i is bits 16*(i%4).. of w[i/4]
}

// scratch is what hashing one element needs; pooled so Add and Remove do
// not allocate.
type scratch struct {
	xof *blake3.Hasher
	in  [maxElementLen]byte
	out [RawSize]byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{xof: blake3.New(32, nil)} }}

// xofBlock is what one call of the BLAKE3 output reader computes at once
// without starting goroutines: a Read of more than one such block at a
// block boundary spreads the blocks over every CPU (lukechampine.com/
// blake3's OutputReader.Read), which costs more than it saves for 2 KiB
// and would fight the callers that already hash on every core.
const xofBlock = 1024

// elementHash sets s.out to the lanes of the hash of e.
func (s *scratch) elementHash(e *Element) {
	s.xof.Reset()
	_, _ = s.xof.Write(e.AppendEncoding(s.in[:0]))
	x := s.xof.XOF()
	for off := 0; off < RawSize; off += xofBlock {
		_, _ = x.Read(s.out[off : off+xofBlock])
	}
}

// addRaw adds the RawSize bytes of lanes in b to h (Combine without
// decoding b into a Hash first).
func (h *Hash) addRaw(b *[RawSize]byte) {
	for i := range h.w {
		h.w[i] = addLanes(h.w[i], binary.LittleEndian.Uint64(b[8*i:]))
	}
}

// subRaw subtracts the lanes in b from h.
func (h *Hash) subRaw(b *[RawSize]byte) {
	for i := range h.w {
		h.w[i] = subLanes(h.w[i], binary.LittleEndian.Uint64(b[8*i:]))
	}
}

// Of returns the hash of the single element e.
func Of(e Element) Hash {
	var h Hash
	h.Add(e)
	return h
}

// hi is the top bit of every lane.
const hi = 0x8000_8000_8000_8000

// addLanes adds the four 16-bit lanes of b to those of a, each modulo
// 2^16: the low 15 bits of each lane add without crossing into the next
// lane, and the top bit is the XOR of the two top bits and the carry into
// it.
func addLanes(a, b uint64) uint64 { return ((a &^ hi) + (b &^ hi)) ^ ((a ^ b) & hi) }

// subLanes subtracts the four 16-bit lanes of b from those of a, each
// modulo 2^16: with every top bit of a set, the low 15 bits of each lane
// subtract without borrowing from the next lane, and the top bit is then
// fixed up as in addLanes.
func subLanes(a, b uint64) uint64 { return ((a | hi) - (b &^ hi)) ^ ((a ^ ^b) & hi) }

// Add adds e to the set h hashes: O(1), no allocation.
func (h *Hash) Add(e Element) {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&e)
	h.addRaw(&s.out)
	scratchPool.Put(s)
}

// Remove removes e from the set h hashes (its inverse of Add): O(1), no
// allocation. Removing an element that was never added yields the hash of
// no set anyone can build, which then matches nothing.
func (h *Hash) Remove(e Element) {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&e)
	h.subRaw(&s.out)
	scratchPool.Put(s)
}

// Replace removes old and adds new: one key's change from one state to the
// next.
func (h *Hash) Replace(old, new Element) {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&old)
	h.subRaw(&s.out)
	s.elementHash(&new)
	h.addRaw(&s.out)
	scratchPool.Put(s)
}

// Combine adds o to h: h becomes the hash of the union (as multisets) of
// the sets h and o hash. Lane-wise addition modulo 2^16, four lanes a
// 64-bit word (addLanes).
func (h *Hash) Combine(o *Hash) {
	for i := range h.w {
		h.w[i] = addLanes(h.w[i], o.w[i])
	}
}

// Subtract removes o from h: h becomes the hash of the difference of the
// sets h and o hash, when o's set is part of h's.
func (h *Hash) Subtract(o *Hash) {
	for i := range h.w {
		h.w[i] = subLanes(h.w[i], o.w[i])
	}
}

// Equal reports whether h and o are the same hash, in time that does not
// depend on where they differ.
func (h *Hash) Equal(o *Hash) bool {
	var d uint64
	for i := range h.w {
		d |= h.w[i] ^ o.w[i]
	}
	return d == 0 // one branch on the OR of every difference
}

// IsZero reports whether h is the hash of the empty set (or of a set whose
// hashes cancel, which is as hard to find as a collision).
func (h *Hash) IsZero() bool { var z Hash; return h.Equal(&z) }

// Lane returns lane i (0 <= i < Lanes).
func (h *Hash) Lane(i int) uint16 { return uint16(h.w[i/4] >> (16 * (i % 4))) }

// AppendRaw appends the RawSize bytes of h's lanes (little endian) to b.
func (h *Hash) AppendRaw(b []byte) []byte {
	for _, w := range h.w {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

// ParseRaw sets h from exactly RawSize bytes of lanes.
func (h *Hash) ParseRaw(b []byte) error {
	if len(b) != RawSize {
		return fmt.Errorf("%w: %d bytes of lanes, want %d", ErrCorrupt, len(b), RawSize)
	}
	for i := range h.w {
		h.w[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return nil
}

// Algorithm names the construction this package computes: LtHash16 (1024
// lanes of 16 bits) over BLAKE3's XOF, element encoding v2
// (AppendEncoding). The encodings of a Hash (MarshalBinary) and of a
// checkpoint carry it, so that a hash of another construction is refused
// as corrupt instead of compared (and then never matching, or worse).
// Algorithm 1 was LtHash16 over SHAKE128 with element encoding v1; it is
// no longer computed or accepted.
const Algorithm = 2

// Encoding of a Hash: "LH" | format (1: 1024 lanes of 16 bits) |
// algorithm (Algorithm) | lanes.
const (
	magic0, magic1 = 'L', 'H'
	format         = 1
)

// MarshalBinary returns the EncodedSize-byte encoding of h:
//
//	"LH" | format 0x01 (1024 lanes of 16 bits) |
//	algorithm 0x02 (Algorithm: BLAKE3 XOF, element encoding v2) |
//	lanes (2048 bytes, little endian)
func (h *Hash) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, EncodedSize)
	b = append(b, magic0, magic1, format, Algorithm)
	return h.AppendRaw(b), nil
}

// UnmarshalBinary decodes MarshalBinary's encoding; anything else (another
// length, format or algorithm, such as a hash of the retired Algorithm 1)
// is an error wrapping ErrCorrupt, and h is left unchanged.
func (h *Hash) UnmarshalBinary(b []byte) error {
	if len(b) != EncodedSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(b), EncodedSize)
	}
	if b[0] != magic0 || b[1] != magic1 {
		return fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if b[2] != format || b[3] != Algorithm {
		return fmt.Errorf("%w: format %d algorithm %d, want %d %d", ErrCorrupt, b[2], b[3], format, Algorithm)
	}
	return h.ParseRaw(b[4:])
}

// String shows the first lanes of h, for logs.
func (h *Hash) String() string {
	return fmt.Sprintf("lthash16:%016x%016x…", h.w[0], h.w[1])
}

func digest(v []byte) [record.SealDigestLen]byte { return sha256.Sum256(v) }
