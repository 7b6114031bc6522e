package record

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
)

// Snapshot is the state of one namespace as of Version: every record (live or
// tombstoned) whose version is at most Version. A cold node loads a namespace
// from its snapshot in one read and then follows the change log after Version.
type Snapshot struct {
	Namespace string
	// Version is the highest version the snapshot covers.
	Version Version
	// Records are sorted by key.
	Records []Record
	// Known are versions known to exist without their value: a node's own
	// snapshot (a local file, or one served to a peer) lists here the keys
	// whose value it no longer holds, or holds only in an older version, so
	// that whoever loads the snapshot still knows every key's newest
	// version. Origin snapshots never carry them. Sorted by key, one entry
	// per key; Value is never set.
	Known []Change
}

// MaxSnapshotSize bounds an encoded snapshot, so a corrupt length can never
// make a reader allocate without limit.
const MaxSnapshotSize = 1 << 30

const snapshotMagic0, snapshotMagic1 = 'D', 'S'

// MarshalSnapshot validates s (every record valid and in s.Namespace, keys
// unique) and returns its encoding:
//
//	"DS" 0x01 0x00 | version (8 bytes) | uvarint len + namespace |
//	uvarint count | count × (uvarint len + record encoding) |
//	[format 2 and 3: uvarint known count | count × (flags | version (8 bytes) | uvarint len + key |
//	 [format 3, flag bit 1 set: the change's Seal, record.SealLen bytes])] |
//	CRC-32C (4 bytes)
//
// Records and Known are written sorted by key. Records carry their own Seal
// in the record encoding. A snapshot without Known is written in format 1,
// which every earlier reader understands; one whose Known entries carry no
// Seal in format 2; format 3 only when a Known entry is sealed.
func MarshalSnapshot(s Snapshot) ([]byte, error) {
	if err := ValidateNamespace(s.Namespace); err != nil {
		return nil, err
	}
	recs := append([]Record(nil), s.Records...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	size := headerLen + len(s.Namespace) + 2*binary.MaxVarintLen64 + crcLen
	for i, r := range recs {
		if r.Namespace != s.Namespace {
			return nil, fmt.Errorf("%w: snapshot of %q holds a record of %q", ErrInvalid, s.Namespace, r.Namespace)
		}
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if i > 0 && recs[i-1].Key == r.Key {
			return nil, fmt.Errorf("%w: snapshot of %q holds key %q twice", ErrInvalid, s.Namespace, r.Key)
		}
		size += binary.MaxVarintLen32 + headerLen + len(r.Namespace) + len(r.Key) + len(r.Value) + 3*binary.MaxVarintLen32 + crcLen
		if r.Seal != nil {
			size += SealLen
		}
	}
	known := append([]Change(nil), s.Known...)
	sort.Slice(known, func(i, j int) bool { return known[i].Key < known[j].Key })
	for i, c := range known {
		if c.Namespace != s.Namespace && c.Namespace != "" {
			return nil, fmt.Errorf("%w: snapshot of %q knows a version of %q", ErrInvalid, s.Namespace, c.Namespace)
		}
		if err := ValidateKey(s.Namespace, c.Key); err != nil {
			return nil, err
		}
		if c.Version == 0 {
			return nil, fmt.Errorf("%w: snapshot of %q: known version of %q is zero", ErrInvalid, s.Namespace, c.Key)
		}
		if i > 0 && known[i-1].Key == c.Key {
			return nil, fmt.Errorf("%w: snapshot of %q knows key %q twice", ErrInvalid, s.Namespace, c.Key)
		}
		size += 1 + 8 + binary.MaxVarintLen32 + len(c.Key) + SealLen
	}
	if size > MaxSnapshotSize {
		return nil, fmt.Errorf("%w: snapshot of %q would exceed %d bytes", ErrInvalid, s.Namespace, MaxSnapshotSize)
	}
	format := byte(formatV1)
	if len(known) > 0 {
		format = formatV2
	}
	for _, c := range known {
		if c.Seal != nil {
			format = formatV3
			break
		}
	}
	b := make([]byte, 0, size)
	b = append(b, snapshotMagic0, snapshotMagic1, format, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Version))
	b = appendBytes(b, []byte(s.Namespace))
	b = binary.AppendUvarint(b, uint64(len(recs)))
	var one []byte
	for _, r := range recs {
		one = AppendRecord(one[:0], r)
		b = appendBytes(b, one)
	}
	if format >= formatV2 {
		b = binary.AppendUvarint(b, uint64(len(known)))
		for _, c := range known {
			var flags byte
			if c.Tombstone {
				flags = flagTombstone
			}
			if c.Seal != nil {
				flags |= flagKnownSealed
			}
			b = append(b, flags)
			b = binary.BigEndian.AppendUint64(b, uint64(c.Version))
			b = appendBytes(b, []byte(c.Key))
			if c.Seal != nil {
				b = AppendSeal(b, c.Seal)
			}
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// formatV2 is the snapshot format with a Known section; formatV3 allows a
// Seal on Known entries (flagKnownSealed).
const (
	formatV2        = 2
	formatV3        = 3
	flagKnownSealed = 1 << 1
)

// checkSealedFormat rejects a format-3 Known section without any Seal: it
// would be written in format 2, and every encoding has one form.
func checkSealedFormat(known []Change, format byte) error {
	if format < formatV3 {
		return nil
	}
	for _, c := range known {
		if c.Seal != nil {
			return nil
		}
	}
	return fmt.Errorf("%w: snapshot format 3 without a sealed known version", ErrCorrupt)
}
