package record

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// SnapshotReader decodes a snapshot (any format MarshalSnapshot writes)
// from an io.Reader one record at a time, so a reader of a large snapshot
// holds only the records it keeps, never the encoding too. It is the one
// decoder of the snapshot format: UnmarshalSnapshot and ReadSnapshot are
// built on it.
//
// The checksum covers the whole snapshot and is checked only at its end:
// records returned by Next belong to a valid snapshot only once Next has
// returned io.EOF. A caller must discard everything it read when Next returns
// any other error.
type SnapshotReader struct {
	// r is the input; nil when decoding a byte slice (see newSliceReader).
	r *bufio.Reader
	// rest is what is still unread of the input, up to its checksum, when
	// r is nil.
	rest    []byte
	sum     uint32 // CRC-32C of everything read so far from r
	buf     []byte
	format  byte
	ns      string
	version Version
	left    uint64 // records not yet returned
	prev    string // key of the last record returned
	started bool   // a record was returned
	known   []Change
	err     error // sticky: io.EOF after a clean end
}

// NewSnapshotReader reads the snapshot's header from r and returns a reader
// positioned at its first record. A malformed header yields an error
// wrapping ErrCorrupt.
func NewSnapshotReader(r io.Reader) (*SnapshotReader, error) {
	return (&SnapshotReader{r: bufio.NewReaderSize(r, 64<<10)}).header()
}

// newSliceReader decodes b in place: no copy of the input, and one checksum
// pass over it, first, so that a damaged snapshot costs no decoding. The
// checksum is its last crcLen bytes; finish checks that the decoding ends
// right there.
func newSliceReader(b []byte) (*SnapshotReader, error) {
	if len(b) < crcLen {
		return nil, fmt.Errorf("%w: snapshot truncated at %d bytes", ErrCorrupt, len(b))
	}
	body := b[:len(b)-crcLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("%w: snapshot checksum mismatch", ErrCorrupt)
	}
	return (&SnapshotReader{rest: body}).header()
}

// header reads the snapshot's header.
func (sr *SnapshotReader) header() (*SnapshotReader, error) {
	head, err := sr.read(headerLen)
	if err != nil {
		return nil, err
	}
	if head[0] != snapshotMagic0 || head[1] != snapshotMagic1 || head[3] != 0 {
		return nil, fmt.Errorf("%w: not a snapshot (bad magic %x)", ErrCorrupt, head[:4])
	}
	sr.format = head[2]
	if sr.format != formatV1 && sr.format != formatV2 && sr.format != formatV3 {
		return nil, fmt.Errorf("%w: unknown snapshot format %d", ErrCorrupt, sr.format)
	}
	sr.version = Version(binary.BigEndian.Uint64(head[4:12]))
	ns, err := sr.bytes(MaxNamespaceLen, "namespace")
	if err != nil {
		return nil, err
	}
	sr.ns = string(ns)
	if err := ValidateNamespace(sr.ns); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if sr.left, err = sr.uvarint("record count"); err != nil {
		return nil, err
	}
	return sr, nil
}

// Namespace returns the snapshot's namespace.
func (sr *SnapshotReader) Namespace() string { return sr.ns }

// Version returns the highest version the snapshot covers.
func (sr *SnapshotReader) Version() Version { return sr.version }

// Remaining returns how many records the snapshot claims are still to come.
// It is a claim, not a promise: a corrupt input may end sooner.
func (sr *SnapshotReader) Remaining() uint64 { return sr.left }

// Known returns the snapshot's Known section (nil for format 1). It is
// complete only after Next has returned io.EOF.
func (sr *SnapshotReader) Known() []Change { return sr.known }

// Next returns the next record in key order. After the last one it reads the
// Known section and the checksum and returns io.EOF if the whole snapshot is
// valid, or an error wrapping ErrCorrupt (or ErrInvalid) if not. Errors are
// sticky.
func (sr *SnapshotReader) Next() (Record, error) {
	if sr.err != nil {
		return Record{}, sr.err
	}
	r, err := sr.next()
	if err != nil {
		sr.err = err
	}
	return r, err
}

func (sr *SnapshotReader) next() (Record, error) {
	if sr.left == 0 {
		if err := sr.finish(); err != nil {
			return Record{}, err
		}
		return Record{}, io.EOF
	}
	var r Record
	err := sr.record(&r)
	return r, err
}

// record decodes into r the next of the sr.left > 0 records still to come.
func (sr *SnapshotReader) record(r *Record) error {
	raw, err := sr.bytes(MaxEncodedSize, "record")
	if err != nil {
		return err
	}
	rec, err := unmarshal(raw, sr.ns)
	if err != nil {
		return fmt.Errorf("snapshot record: %w", err)
	}
	if rec.Namespace != sr.ns {
		return fmt.Errorf("%w: snapshot of %q holds a record of %q", ErrCorrupt, sr.ns, rec.Namespace)
	}
	if sr.started && sr.prev >= rec.Key {
		return fmt.Errorf("%w: snapshot keys out of order at key %q", ErrCorrupt, rec.Key)
	}
	sr.started, sr.prev = true, rec.Key
	sr.left--
	*r = rec
	return nil
}

// finish reads what follows the records: the Known section, the checksum
// and the end of input.
func (sr *SnapshotReader) finish() error {
	if sr.format >= formatV2 {
		allowed := byte(flagTombstone)
		if sr.format >= formatV3 {
			allowed |= flagKnownSealed
		}
		n, err := sr.uvarint("known count")
		if err != nil {
			return err
		}
		for i := uint64(0); i < n; i++ {
			head, err := sr.read(9)
			if err != nil {
				return err
			}
			flags, v := head[0], Version(binary.BigEndian.Uint64(head[1:9]))
			key, err := sr.bytes(MaxKeyLen, "known key")
			if err != nil {
				return err
			}
			c := Change{Namespace: sr.ns, Key: string(key), Version: v, Tombstone: flags&flagTombstone != 0}
			if flags&allowed&flagKnownSealed != 0 {
				raw, err := sr.read(SealLen)
				if err != nil {
					return err
				}
				if c.Seal, err = ParseSeal(raw); err != nil {
					return err
				}
			}
			switch {
			case flags&^allowed != 0:
				return fmt.Errorf("%w: snapshot known version %d: unknown flags %#x", ErrCorrupt, i, flags)
			case v == 0:
				return fmt.Errorf("%w: snapshot known version %d is zero", ErrCorrupt, i)
			case i > 0 && sr.known[i-1].Key >= c.Key:
				return fmt.Errorf("%w: snapshot known keys out of order at %d", ErrCorrupt, i)
			}
			if err := ValidateKey(sr.ns, c.Key); err != nil {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			sr.known = append(sr.known, c)
		}
		if err := checkSealedFormat(sr.known, sr.format); err != nil {
			return err
		}
	}
	if sr.r == nil {
		return sr.finishSlice()
	}
	want := sr.sum
	var sum [crcLen]byte
	if _, err := io.ReadFull(sr.r, sum[:]); err != nil {
		return sr.readErr(err, "checksum")
	}
	if binary.BigEndian.Uint32(sum[:]) != want {
		return fmt.Errorf("%w: snapshot checksum mismatch", ErrCorrupt)
	}
	switch _, err := sr.r.ReadByte(); {
	case err == nil:
		return fmt.Errorf("%w: trailing bytes in snapshot", ErrCorrupt)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("snapshot: read: %w", err)
	}
	return nil
}

// finishSlice checks that a byte slice, whose checksum newSliceReader
// checked, has nothing between the decoding's end and the checksum.
func (sr *SnapshotReader) finishSlice() error {
	if len(sr.rest) > 0 {
		return fmt.Errorf("%w: %d trailing bytes in snapshot", ErrCorrupt, len(sr.rest))
	}
	return nil
}

// read returns the next n bytes, which stay valid until the next call.
func (sr *SnapshotReader) read(n int) ([]byte, error) {
	if sr.r == nil {
		if n > len(sr.rest) {
			return nil, fmt.Errorf("%w: snapshot truncated", ErrCorrupt)
		}
		b := sr.rest[:n]
		sr.rest = sr.rest[n:]
		return b, nil
	}
	if n <= sr.r.Size() {
		// In bufio's buffer, valid until its next read: no copy.
		b, err := sr.r.Peek(n)
		if err != nil {
			return nil, sr.readErr(err, "snapshot")
		}
		sr.sum = crc32.Update(sr.sum, castagnoli, b)
		_, _ = sr.r.Discard(n) // cannot fail: Peek has the n bytes
		return b, nil
	}
	if cap(sr.buf) < n {
		sr.buf = make([]byte, n)
	}
	b := sr.buf[:n]
	if _, err := io.ReadFull(sr.r, b); err != nil {
		return nil, sr.readErr(err, "snapshot")
	}
	sr.sum = crc32.Update(sr.sum, castagnoli, b)
	return b, nil
}

// readErr maps an early end of input to ErrCorrupt and keeps other read
// errors (the transport failing) as they are.
func (sr *SnapshotReader) readErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s truncated", ErrCorrupt, what)
	}
	return fmt.Errorf("snapshot: read %s: %w", what, err)
}

// uvarint reads a uvarint length.
func (sr *SnapshotReader) uvarint(what string) (uint64, error) {
	if sr.r == nil {
		x, k := binary.Uvarint(sr.rest)
		switch {
		case k == 0:
			return 0, fmt.Errorf("%w: %s truncated", ErrCorrupt, what)
		case k < 0:
			return 0, fmt.Errorf("%w: bad length of %s", ErrCorrupt, what)
		}
		sr.rest = sr.rest[k:]
		return x, nil
	}
	// Fewer bytes than asked for come with the error that ended the input;
	// they may still hold the whole varint.
	b, err := sr.r.Peek(binary.MaxVarintLen64)
	x, k := binary.Uvarint(b)
	switch {
	case k == 0 && err != nil:
		return 0, sr.readErr(err, what)
	case k <= 0:
		return 0, fmt.Errorf("%w: bad length of %s", ErrCorrupt, what)
	}
	sr.sum = crc32.Update(sr.sum, castagnoli, b[:k])
	_, _ = sr.r.Discard(k) // cannot fail: Peek has the k bytes
	return x, nil
}

// bytes reads a length-prefixed field of at most limit bytes, which stays
// valid until the next read.
func (sr *SnapshotReader) bytes(limit int, what string) ([]byte, error) {
	if sr.r == nil { // the common case of a byte slice, in one step
		n, k := binary.Uvarint(sr.rest)
		if k > 0 && n <= uint64(limit) && n <= uint64(len(sr.rest)-k) {
			b := sr.rest[k : k+int(n)]
			sr.rest = sr.rest[k+int(n):]
			return b, nil
		}
	}
	n, err := sr.uvarint(what)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit is %d", ErrCorrupt, what, n, limit)
	}
	return sr.read(int(n))
}

// ReadSnapshot decodes a whole snapshot from r with a SnapshotReader: the
// result equals UnmarshalSnapshot's on the same bytes, without holding the
// encoding in memory.
func ReadSnapshot(r io.Reader) (Snapshot, error) {
	sr, err := NewSnapshotReader(r)
	if err != nil {
		return Snapshot{}, err
	}
	return sr.readAll()
}

// UnmarshalSnapshot decodes a snapshot held in memory. Malformed input
// yields an error wrapping ErrCorrupt or ErrInvalid; it never panics.
func UnmarshalSnapshot(b []byte) (Snapshot, error) {
	if len(b) > MaxSnapshotSize {
		return Snapshot{}, fmt.Errorf("%w: snapshot is %d bytes, limit is %d", ErrCorrupt, len(b), MaxSnapshotSize)
	}
	sr, err := newSliceReader(b)
	if err != nil {
		return Snapshot{}, err
	}
	return sr.readAll()
}

// readAll decodes the rest of the snapshot, which it must have to itself
// (it bypasses Next's sticky error).
func (sr *SnapshotReader) readAll() (Snapshot, error) {
	s := Snapshot{Namespace: sr.Namespace(), Version: sr.Version()}
	s.Records = make([]Record, 0, sr.sizeHint())
	for sr.left > 0 {
		s.Records = append(s.Records, Record{})
		if err := sr.record(&s.Records[len(s.Records)-1]); err != nil {
			return Snapshot{}, err
		}
	}
	if err := sr.finish(); err != nil {
		return Snapshot{}, err
	}
	s.Known = sr.known
	return s, nil
}

// sizeHint bounds the records to allocate room for before reading them: the
// count the header claims, cut to what the input can hold (each record takes
// at least headerLen+crcLen+4 bytes), or for a stream to 1<<16.
func (sr *SnapshotReader) sizeHint() uint64 {
	if sr.r == nil {
		return min(sr.left, uint64(len(sr.rest)/(headerLen+crcLen+4)))
	}
	return min(sr.left, 1<<16)
}
