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

// UnmarshalSnapshot decodes a snapshot. Malformed input yields an error
// wrapping ErrCorrupt or ErrInvalid; it never panics.
func UnmarshalSnapshot(b []byte) (Snapshot, error) {
	if len(b) > MaxSnapshotSize {
		return Snapshot{}, fmt.Errorf("%w: snapshot is %d bytes, limit is %d", ErrCorrupt, len(b), MaxSnapshotSize)
	}
	if len(b) < headerLen+2+crcLen {
		return Snapshot{}, fmt.Errorf("%w: snapshot truncated at %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != snapshotMagic0 || b[1] != snapshotMagic1 || b[3] != 0 {
		return Snapshot{}, fmt.Errorf("%w: not a snapshot (bad magic %x)", ErrCorrupt, b[:4])
	}
	format := b[2]
	if format != formatV1 && format != formatV2 && format != formatV3 {
		return Snapshot{}, fmt.Errorf("%w: unknown snapshot format %d", ErrCorrupt, b[2])
	}
	body, sum := b[:len(b)-crcLen], binary.BigEndian.Uint32(b[len(b)-crcLen:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Snapshot{}, fmt.Errorf("%w: snapshot checksum mismatch", ErrCorrupt)
	}
	s := Snapshot{Version: Version(binary.BigEndian.Uint64(b[4:12]))}
	d := decoder{buf: body[headerLen:]}
	ns := d.bytes(MaxNamespaceLen, "namespace")
	n := d.uvarint("record count")
	if d.err != nil {
		return Snapshot{}, d.err
	}
	s.Namespace = string(ns)
	if err := ValidateNamespace(s.Namespace); err != nil {
		return Snapshot{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	// Each record takes at least headerLen+crcLen+4 bytes, which bounds a
	// plausible count by the input size before anything is allocated.
	if n > uint64(len(d.buf)/(headerLen+crcLen+4)) {
		return Snapshot{}, fmt.Errorf("%w: snapshot claims %d records in %d bytes", ErrCorrupt, n, len(d.buf))
	}
	s.Records = make([]Record, 0, n)
	for i := uint64(0); i < n; i++ {
		raw := d.bytes(MaxEncodedSize, "record")
		if d.err != nil {
			return Snapshot{}, d.err
		}
		r, err := Unmarshal(raw)
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot record %d: %w", i, err)
		}
		if r.Namespace != s.Namespace {
			return Snapshot{}, fmt.Errorf("%w: snapshot of %q holds a record of %q", ErrCorrupt, s.Namespace, r.Namespace)
		}
		r.Namespace = s.Namespace // one string for every record: 8 bytes each less
		if i > 0 && s.Records[i-1].Key >= r.Key {
			return Snapshot{}, fmt.Errorf("%w: snapshot keys out of order at record %d", ErrCorrupt, i)
		}
		s.Records = append(s.Records, r)
	}
	if format >= formatV2 {
		if err := d.known(&s, format); err != nil {
			return Snapshot{}, err
		}
	}
	if len(d.buf) != 0 {
		return Snapshot{}, fmt.Errorf("%w: %d trailing bytes in snapshot", ErrCorrupt, len(d.buf))
	}
	return s, nil
}

// formatV2 is the snapshot format with a Known section; formatV3 allows a
// Seal on Known entries (flagKnownSealed).
const (
	formatV2        = 2
	formatV3        = 3
	flagKnownSealed = 1 << 1
)

// known decodes the Known section of a format-2 or -3 snapshot into s.
func (d *decoder) known(s *Snapshot, format byte) error {
	allowed := byte(flagTombstone)
	if format >= formatV3 {
		allowed |= flagKnownSealed
	}
	n := d.uvarint("known count")
	if d.err != nil {
		return d.err
	}
	// Each entry takes at least 1+8+1+1 bytes.
	if n > uint64(len(d.buf)/11) {
		return fmt.Errorf("%w: snapshot claims %d known versions in %d bytes", ErrCorrupt, n, len(d.buf))
	}
	s.Known = make([]Change, 0, n)
	for i := uint64(0); i < n; i++ {
		if len(d.buf) < 9 {
			return fmt.Errorf("%w: snapshot known version %d truncated", ErrCorrupt, i)
		}
		flags, v := d.buf[0], Version(binary.BigEndian.Uint64(d.buf[1:9]))
		d.buf = d.buf[9:]
		key := d.bytes(MaxKeyLen, "known key")
		if d.err != nil {
			return d.err
		}
		c := Change{Namespace: s.Namespace, Key: string(key), Version: v, Tombstone: flags&flagTombstone != 0}
		if flags&allowed&flagKnownSealed != 0 {
			seal, err := ParseSeal(d.buf)
			if err != nil {
				return err
			}
			c.Seal, d.buf = seal, d.buf[SealLen:]
		}
		switch {
		case flags&^allowed != 0:
			return fmt.Errorf("%w: snapshot known version %d: unknown flags %#x", ErrCorrupt, i, flags)
		case v == 0:
			return fmt.Errorf("%w: snapshot known version %d is zero", ErrCorrupt, i)
		case i > 0 && s.Known[i-1].Key >= c.Key:
			return fmt.Errorf("%w: snapshot known keys out of order at %d", ErrCorrupt, i)
		}
		if err := ValidateKey(s.Namespace, c.Key); err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		s.Known = append(s.Known, c)
	}
	return checkSealedFormat(s.Known, format)
}

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
