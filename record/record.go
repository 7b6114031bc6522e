// Package record defines the unit of data the dataplane moves around: a
// versioned, possibly tombstoned value under namespace/key, its limits, and a
// compact binary encoding that is safe to decode from untrusted bytes.
package record

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on the parts of a record. They keep every record storable in every
// origin (an S3 object name is at most 1024 bytes, a DynamoDB item 400 KB) and
// every gossip message bounded.
const (
	// MaxNamespaceLen is the longest namespace, in bytes.
	MaxNamespaceLen = 64
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 256
	// MaxValueSize is the largest value, in bytes.
	MaxValueSize = 256 << 10
)

// Sentinel errors. Errors returned by this package wrap one of them, so callers
// check with errors.Is and still get a message naming what was wrong.
var (
	// ErrInvalid means a namespace, key, value or version breaks a rule.
	ErrInvalid = errors.New("invalid record")
	// ErrCorrupt means bytes could not be decoded as a record or snapshot.
	ErrCorrupt = errors.New("corrupt encoding")
)

// Version orders the states of one key. It is a hybrid logical clock
// timestamp: milliseconds since the Unix epoch shifted left by 16 bits, plus a
// logical counter in the low 16 bits. Zero means "no version" (absent).
type Version uint64

// logicalBits is how many low bits of a Version hold the logical counter.
const logicalBits = 16

// MakeVersion builds a Version from a physical time and a logical counter.
func MakeVersion(t time.Time, logical uint16) Version {
	return Version(uint64(t.UnixMilli())<<logicalBits | uint64(logical))
}

// Time returns the physical part of v as a time.
func (v Version) Time() time.Time {
	return time.UnixMilli(int64(uint64(v) >> logicalBits))
}

// Logical returns the logical counter of v.
func (v Version) Logical() uint16 { return uint16(v) }

// String formats v as fixed-width hex, which sorts like the number.
func (v Version) String() string { return fmt.Sprintf("%016x", uint64(v)) }

// Record is one state of namespace/key. A deleted key is a Record with
// Tombstone set and no value: deletes carry a version like any write, so a
// late message can never bring a deleted record back.
type Record struct {
	Namespace string
	Key       string
	Value     []byte
	Version   Version
	Tombstone bool
	// Seal is the publisher's signature over this state (see Seal); nil
	// for an unsigned record. Encodings carry it untouched.
	Seal *Seal
}

// Seal is a publisher's ed25519 signature over one state of one key: over a
// canonical encoding of namespace, key, version, tombstone flag and Digest
// (package sign builds and checks it). Because it signs the digest, not the
// value, a change that travels without its value (an invalidation, a change
// log entry, a version known without its value) carries the same Seal as
// the record and is verified without the value. A Seal is never modified
// once made; share the pointer.
type Seal struct {
	// KeyID names the signing key: the first 8 bytes of the SHA-256 of
	// the ed25519 public key.
	KeyID [SealKeyIDLen]byte
	// Digest is the SHA-256 of the value (of nothing, for a tombstone).
	Digest [SealDigestLen]byte
	// Sig is the ed25519 signature.
	Sig [SealSigLen]byte
}

// Sizes of the parts of a Seal, and of its encoding.
const (
	SealKeyIDLen  = 8
	SealDigestLen = 32
	SealSigLen    = 64
	SealLen       = SealKeyIDLen + SealDigestLen + SealSigLen
)

// AppendSeal appends the fixed-size encoding of s (key id, digest,
// signature) to b.
func AppendSeal(b []byte, s *Seal) []byte {
	b = append(b, s.KeyID[:]...)
	b = append(b, s.Digest[:]...)
	return append(b, s.Sig[:]...)
}

// ParseSeal decodes the first SealLen bytes of b as a Seal.
func ParseSeal(b []byte) (*Seal, error) {
	if len(b) < SealLen {
		return nil, fmt.Errorf("%w: seal truncated at %d bytes", ErrCorrupt, len(b))
	}
	s := new(Seal)
	copy(s.KeyID[:], b)
	copy(s.Digest[:], b[SealKeyIDLen:])
	copy(s.Sig[:], b[SealKeyIDLen+SealDigestLen:])
	return s, nil
}

// Change is what the change log and invalidations carry: which key moved to
// which version, without the value.
type Change struct {
	Namespace string
	Key       string
	Version   Version
	Tombstone bool
	// Seal is the publisher's signature of the record this change
	// produced (nil: unsigned); it lets a receiver verify the change
	// without the value.
	Seal *Seal
}

// ChangeID is the comparable value of a Change: two Changes are the same
// change exactly when their IDs are equal, their Seals compared by value.
// Change holds a *Seal, so == on Changes (and a map keyed by Change)
// compares Seal pointers and tells apart two copies of one signed change
// decoded separately; key maps by ChangeID and compare with Equal.
type ChangeID struct {
	Namespace string
	Key       string
	Version   Version
	Tombstone bool
	// Signed reports that the change has a Seal, whose value is Seal.
	Signed bool
	Seal   Seal
}

// ID returns c's comparable value.
func (c Change) ID() ChangeID {
	id := ChangeID{Namespace: c.Namespace, Key: c.Key, Version: c.Version, Tombstone: c.Tombstone}
	if c.Seal != nil {
		id.Signed, id.Seal = true, *c.Seal
	}
	return id
}

// Change returns the change id names (with a Seal of its own when
// signed).
func (id ChangeID) Change() Change {
	c := Change{Namespace: id.Namespace, Key: id.Key, Version: id.Version, Tombstone: id.Tombstone}
	if id.Signed {
		seal := id.Seal
		c.Seal = &seal
	}
	return c
}

// Equal reports whether c and d are the same change, Seals compared by
// value.
func (c Change) Equal(d Change) bool { return c.ID() == d.ID() }

// Change returns the change that produced r, with r's Seal.
func (r Record) Change() Change {
	return Change{Namespace: r.Namespace, Key: r.Key, Version: r.Version, Tombstone: r.Tombstone, Seal: r.Seal}
}

// Validate reports whether r may be stored: valid namespace and key, a
// non-zero version, a value within MaxValueSize, and no value on a tombstone.
func (r Record) Validate() error {
	if err := ValidateKey(r.Namespace, r.Key); err != nil {
		return err
	}
	if r.Version == 0 {
		return fmt.Errorf("%w: %s/%s: version must be non-zero", ErrInvalid, r.Namespace, r.Key)
	}
	if len(r.Value) > MaxValueSize {
		return fmt.Errorf("%w: %s/%s: value is %d bytes, limit is %d", ErrInvalid, r.Namespace, r.Key, len(r.Value), MaxValueSize)
	}
	if r.Tombstone && len(r.Value) > 0 {
		return fmt.Errorf("%w: %s/%s: a tombstone carries no value", ErrInvalid, r.Namespace, r.Key)
	}
	return nil
}

// ValidateNamespace reports whether ns is a valid namespace: 1 to
// MaxNamespaceLen bytes of lower-case ASCII letters, digits, '-' and '_'.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("%w: empty namespace", ErrInvalid)
	}
	if len(ns) > MaxNamespaceLen {
		return fmt.Errorf("%w: namespace %.20q... is %d bytes, limit is %d", ErrInvalid, ns, len(ns), MaxNamespaceLen)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: namespace %q: byte %q at %d not allowed (use a-z, 0-9, '-', '_')", ErrInvalid, ns, c, i)
		}
	}
	return nil
}

// ValidateKey reports whether ns/key is a valid address. A key is 1 to
// MaxKeyLen bytes of valid UTF-8 without control characters; slashes, dots and
// any printable unicode are allowed.
func ValidateKey(ns, key string) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("%w: %s: empty key", ErrInvalid, ns)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %s: key %.20q... is %d bytes, limit is %d", ErrInvalid, ns, key, len(key), MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: %s: key %q is not valid UTF-8", ErrInvalid, ns, key)
	}
	if strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("%w: %s: key %q contains a control character", ErrInvalid, ns, key)
	}
	return nil
}

// Newer reports whether a should replace b: a has the higher version. Equal
// versions never replace each other, which makes every apply idempotent.
func Newer(a, b Version) bool { return a > b }
