package record

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The binary encoding of a record, format 1:
//
//	"DR" 0x01 | flags (bit 0: tombstone) | version (8 bytes, big endian) |
//	uvarint len + namespace | uvarint len + key | uvarint len + value |
//	CRC-32C of everything before (4 bytes, big endian)
//
// Format 2 is format 1 with the publisher's Seal after the value:
//
//	"DR" 0x02 | flags | version | namespace | key | value |
//	seal key id (8) | value digest (32) | ed25519 signature (64) | CRC-32C
//
// A record with a Seal is written in format 2, one without in format 1, so
// unsigned deployments write exactly what earlier versions wrote, and a
// format-1 record (old data) decodes as unsigned.
//
// Hand-written rather than JSON or protobuf: it is a handful of fields, the
// checksum catches torn or corrupted objects in any origin, and decoding does
// no reflection on the hot path of gossip and cache refills.
const (
	recordMagic0, recordMagic1 = 'D', 'R'
	formatV1                   = 1
	formatSealed               = 2
	flagTombstone              = 1 << 0
	headerLen                  = 4 + 8 // magic, format, flags, version
	crcLen                     = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaxEncodedSize bounds the encoding of any valid record.
const MaxEncodedSize = headerLen + 3*binary.MaxVarintLen32 + MaxNamespaceLen + MaxKeyLen + MaxValueSize + SealLen + crcLen

// Marshal validates r and returns its binary encoding.
func Marshal(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return AppendRecord(make([]byte, 0, headerLen+len(r.Namespace)+len(r.Key)+len(r.Value)+3*2+SealLen+crcLen), r), nil
}

// AppendRecord appends the encoding of r to b without validating r.
func AppendRecord(b []byte, r Record) []byte {
	start := len(b)
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	format := byte(formatV1)
	if r.Seal != nil {
		format = formatSealed
	}
	b = append(b, recordMagic0, recordMagic1, format, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Version))
	b = appendBytes(b, []byte(r.Namespace))
	b = appendBytes(b, []byte(r.Key))
	b = appendBytes(b, r.Value)
	if r.Seal != nil {
		b = AppendSeal(b, r.Seal)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// Unmarshal decodes and validates a record. Any malformed, truncated,
// oversized or corrupted input yields an error wrapping ErrCorrupt (or
// ErrInvalid for a well-formed record that breaks a rule); it never panics.
// The returned record does not alias b.
func Unmarshal(b []byte) (Record, error) {
	return unmarshal(b, "")
}

// unmarshal is Unmarshal; a record of namespace ns (when not empty) shares
// that string instead of allocating its own, as every record of a snapshot
// does.
func unmarshal(b []byte, ns string) (Record, error) {
	if len(b) > MaxEncodedSize {
		return Record{}, fmt.Errorf("%w: record is %d bytes, limit is %d", ErrCorrupt, len(b), MaxEncodedSize)
	}
	if len(b) < headerLen+3+crcLen {
		return Record{}, fmt.Errorf("%w: record truncated at %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != recordMagic0 || b[1] != recordMagic1 {
		return Record{}, fmt.Errorf("%w: not a record (bad magic %x)", ErrCorrupt, b[:2])
	}
	if b[2] != formatV1 && b[2] != formatSealed {
		return Record{}, fmt.Errorf("%w: unknown record format %d", ErrCorrupt, b[2])
	}
	body, sum := b[:len(b)-crcLen], binary.BigEndian.Uint32(b[len(b)-crcLen:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Record{}, fmt.Errorf("%w: record checksum mismatch", ErrCorrupt)
	}
	flags := b[3]
	if flags&^flagTombstone != 0 {
		return Record{}, fmt.Errorf("%w: unknown record flags %#x", ErrCorrupt, flags)
	}
	r := Record{
		Version:   Version(binary.BigEndian.Uint64(b[4:12])),
		Tombstone: flags&flagTombstone != 0,
	}
	d := decoder{buf: body[headerLen:]}
	nsb := d.bytes(MaxNamespaceLen, "namespace")
	key := d.bytes(MaxKeyLen, "key")
	val := d.bytes(MaxValueSize, "value")
	if d.err != nil {
		return Record{}, d.err
	}
	if b[2] == formatSealed {
		seal, err := ParseSeal(d.buf)
		if err != nil {
			return Record{}, err
		}
		r.Seal, d.buf = seal, d.buf[SealLen:]
	}
	if len(d.buf) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes in record", ErrCorrupt, len(d.buf))
	}
	if r.Namespace = ns; string(nsb) != ns {
		r.Namespace = string(nsb)
	}
	r.Key = string(key)
	if len(val) > 0 {
		r.Value = append([]byte(nil), val...)
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// decoder reads length-prefixed fields, remembering the first error.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.buf)
	if k <= 0 {
		d.err = fmt.Errorf("%w: bad length of %s", ErrCorrupt, what)
		return 0
	}
	d.buf = d.buf[k:]
	return n
}

func (d *decoder) bytes(limit int, what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.err = fmt.Errorf("%w: %s is %d bytes, limit is %d", ErrCorrupt, what, n, limit)
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %s truncated", ErrCorrupt, what)
		return nil
	}
	p := d.buf[:n]
	d.buf = d.buf[n:]
	return p
}
