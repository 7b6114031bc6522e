// Package statehash provides the state hash of a namespace: a homomorphic
// multiset hash (LtHash, Lewi et al., "Securing Update Propagation with
// Homomorphic Hashing", 2019; Folly's LtHash16) over the elements
// (namespace, key, version, tombstone, value digest) of every key's state.
//
// A Hash is 1024 lanes of 16 bits. The hash of one element is the 2048-byte
// output of an extendable-output function (SHAKE128, crypto/sha3, over a
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
// Why hand-written: no maintained Go library provides LtHash (Folly's is
// C++; the Go ports found are unmaintained toys). The construction is small
// and all of its cryptography is delegated to the standard library's
// SHAKE128, so the code here is only the lane arithmetic and the element
// encoding. SHAKE128 rather than Folly's BLAKE2xb keeps the module free of
// a new dependency; the XOF is interchangeable, the lane arithmetic is not.
//
// The zero Hash is the hash of the empty set. Hashes are values (2 KiB):
// copy them freely; a Hash is not safe for concurrent mutation.
package statehash

import (
	"crypto/sha256"
	"crypto/sha3"
	"encoding/binary"
	"fmt"
	"sync"

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

// elementPrefix separates element hashes from every other use of the XOF.
const elementPrefix = "dataplane state element v1\x00"

// maxElementLen bounds the canonical encoding of an element.
const maxElementLen = len(elementPrefix) + 2*binary.MaxVarintLen32 + record.MaxNamespaceLen + record.MaxKeyLen + 8 + 1 + record.SealDigestLen

// AppendEncoding appends the canonical encoding of e, the XOF's input:
//
//	"dataplane state element v1" 0x00 | uvarint len + namespace |
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
	xof *sha3.SHAKE
	in  [maxElementLen]byte
	out [RawSize]byte
	h   Hash
}

var scratchPool = sync.Pool{New: func() any { return &scratch{xof: sha3.NewSHAKE128()} }}

// elementHash sets s.h to the hash of e.
func (s *scratch) elementHash(e *Element) {
	s.xof.Reset()
	_, _ = s.xof.Write(e.AppendEncoding(s.in[:0]))
	_, _ = s.xof.Read(s.out[:])
	for i := range s.h.w {
		s.h.w[i] = binary.LittleEndian.Uint64(s.out[8*i:])
	}
}

// Of returns the hash of the single element e.
func Of(e Element) Hash {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&e)
	h := s.h
	scratchPool.Put(s)
	return h
}

// hi is the top bit of every lane.
const hi = 0x8000_8000_8000_8000

// Add adds e to the set h hashes: O(1), no allocation.
func (h *Hash) Add(e Element) {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&e)
	h.Combine(&s.h)
	scratchPool.Put(s)
}

// Remove removes e from the set h hashes (its inverse of Add): O(1), no
// allocation. Removing an element that was never added yields the hash of
// no set anyone can build, which then matches nothing.
func (h *Hash) Remove(e Element) {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&e)
	h.Subtract(&s.h)
	scratchPool.Put(s)
}

// Replace removes old and adds new: one key's change from one state to the
// next.
func (h *Hash) Replace(old, new Element) {
	s := scratchPool.Get().(*scratch)
	s.elementHash(&old)
	h.Subtract(&s.h)
	s.elementHash(&new)
	h.Combine(&s.h)
	scratchPool.Put(s)
}

// Combine adds o to h: h becomes the hash of the union (as multisets) of
// the sets h and o hash. Lane-wise addition modulo 2^16, four lanes a word:
// the low 15 bits of each lane add without crossing into the next lane, and
// the top bit is the XOR of the two top bits and the carry into it.
func (h *Hash) Combine(o *Hash) {
	for i := range h.w {
		a, b := h.w[i], o.w[i]
		h.w[i] = ((a &^ hi) + (b &^ hi)) ^ ((a ^ b) & hi)
	}
}

// Subtract removes o from h: h becomes the hash of the difference of the
// sets h and o hash, when o's set is part of h's.
func (h *Hash) Subtract(o *Hash) {
	for i := range h.w {
		a, b := h.w[i], o.w[i]
		h.w[i] = ((a | hi) - (b &^ hi)) ^ ((a ^ ^b) & hi)
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

// Encoding of a Hash: "LH" | format (1) | XOF (1: SHAKE128) | lanes.
const (
	magic0, magic1 = 'L', 'H'
	format         = 1
	xofSHAKE128    = 1
)

// MarshalBinary returns the EncodedSize-byte encoding of h:
//
//	"LH" | format 0x01 | XOF 0x01 (SHAKE128, 1024 lanes of 16 bits) |
//	lanes (2048 bytes, little endian)
func (h *Hash) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, EncodedSize)
	b = append(b, magic0, magic1, format, xofSHAKE128)
	return h.AppendRaw(b), nil
}

// UnmarshalBinary decodes MarshalBinary's encoding; anything else (another
// length, format or XOF) is an error wrapping ErrCorrupt, and h is left
// unchanged.
func (h *Hash) UnmarshalBinary(b []byte) error {
	if len(b) != EncodedSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(b), EncodedSize)
	}
	if b[0] != magic0 || b[1] != magic1 {
		return fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if b[2] != format || b[3] != xofSHAKE128 {
		return fmt.Errorf("%w: format %d XOF %d, want %d %d", ErrCorrupt, b[2], b[3], format, xofSHAKE128)
	}
	return h.ParseRaw(b[4:])
}

// String shows the first lanes of h, for logs.
func (h *Hash) String() string {
	return fmt.Sprintf("lthash16:%016x%016x…", h.w[0], h.w[1])
}

func digest(v []byte) [record.SealDigestLen]byte { return sha256.Sum256(v) }
