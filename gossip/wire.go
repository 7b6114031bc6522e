package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dataplane/dataplane/record"
)

// The wire format. Every gossip payload starts with a kind byte; memberlist
// frames it (user message type, optional CRC, compression, encryption) around
// these bytes.
//
// A change message ("kindChange") announces one state of one key:
//
//	0xD1 | flags | [uvarint len + sender name, if flag bit 3] |
//	[share index, share count: one byte each, if flag bit 4] |
//	record encoding (record.AppendRecord: "DR" 0x01, record flags,
//	version, namespace, key, value, CRC-32C; or, for a record signed by
//	the publisher, "DR" 0x02 with the record.Seal, i.e. key id, SHA-256
//	of the value and ed25519 signature, after the value)
//
// The Seal signs the value's digest, not the value, so a change sent
// without its value (flag bit 0 clear) still carries a Seal the receiver
// verifies (Config.Verifier) before it raises any version floor. (Added in
// issue 12; a node from before it rejects a signed change as malformed.)
//
//	flags bit 0: the value travels inline (always set for tombstones); when
//	             clear the record's value is empty and the message is a
//	             version floor only ("invalidate, fetch on next use")
//	flags bits 1-2: path: 0 gossip (broadcast queue), 1 push (direct, do not
//	             forward), 2 relay (direct, forward once to the receiver's
//	             own region); 3 is invalid
//	flags bit 3: a sender name follows (push and relay messages): the
//	             receiver acknowledges to it, and the sender retries
//	             until it does
//	flags bit 4: a share follows (relay messages only): the relay forwards
//	             to share i of k of its region (the members, relays
//	             excluded, whose name hashes to i mod k: shareOf in
//	             push.go) and sends the relay message on to the region's
//	             other relays, each with its share (the k members with the
//	             highest rendezvous hash of key and name: pickRelays), so
//	             that k relays split the region instead of each pushing to
//	             all of it; k is 2 to 255 and i < k. Clear: the relay
//	             covers its whole region. (Added in issue 15, when shares
//	             were by rank in the relay's own view; a node from before
//	             it rejects such a message as malformed, and gossip and the
//	             log repair. Hash shares since issue 24: same bytes, nodes
//	             of both releases in one region may cover some members
//	             twice or not at all until all are upgraded.)
//	other bits must be zero
//
// An acknowledgement ("kindAck") of a push or relay (not signed: acks ride
// memberlist's encrypted, authenticated transport, so only a holder of the
// gossip key can forge one; a forged ack can stop the sender's push retries
// to one member for one version, which gossip repair, anti-entropy and the
// change log still deliver, and count that member as applied in a fleet
// receipt):
//
//	0xD3 | version (8 bytes) | uvarint len + namespace | uvarint len + key |
//	uvarint len + acknowledging node's name
//
// A digest ("kindDigest") is a node's compact summary for push/pull
// anti-entropy: its high-water mark and its most recent changes.
//
//	0xD2 | flags (bit 0: truncated, more recent changes than fit) |
//	high-water mark (8 bytes, big endian) | uvarint count |
//	count × (uvarint len + change message) | CRC-32C of all before (4 bytes)
//
// Decoding is length-checked everywhere, reuses record.Unmarshal's validation
// and checksum, and returns errors wrapping record.ErrCorrupt (or
// record.ErrInvalid) for any bad input; it never panics.
//
// A refusal ("kindRefusal", issue 23) tells the sender of a push or relay,
// or a node that queried, that this node refused one version of a key,
// and why (a reason code: refusalReasons); relays pass their share's
// refusals on as they pass acks. Not signed, like an ack: a forged one can
// only make a receipt show a refusal that did not happen.
//
//	0xD4 | version (8 bytes) | uvarint len + namespace | uvarint len + key |
//	uvarint len + refusing node's name | reason code (1 byte)
//
// A query ("kindQuery", issue 23) asks a member whether it holds a version
// of a key: it answers with an ack if it holds that version or a newer one,
// with a refusal if it refused that version, and not at all otherwise. A
// node waiting for a receipt queries the members it has no answer from.
//
//	0xD5 | version (8 bytes) | uvarint len + namespace | uvarint len + key |
//	uvarint len + asking node's name
//
// A checkpoint message ("kindCheckpoint", issue 23) carries one signed
// namespace checkpoint, as checkpoint.Marshal encodes it, pushed like a
// change (checkpoint.go). At about 2.2 KB it does not fit one packet, so it
// travels by memberlist's reliable stream (TCP), not by UDP.
//
//	0xD6 | flags (bits 1-2: path, 1 push or 2 relay; bit 4: a share
//	follows, relay only) | [share index, share count] | checkpoint bytes
//
// (Nodes from before issue 23 drop these three kinds as malformed.)
const (
	kindChange     byte = 0xD1
	kindDigest     byte = 0xD2
	kindAck        byte = 0xD3
	kindRefusal    byte = 0xD4
	kindQuery      byte = 0xD5
	kindCheckpoint byte = 0xD6

	flagInline   byte = 1 << 0
	pathShift         = 1
	pathMask     byte = 3 << pathShift
	flagSender   byte = 1 << 3
	flagShare    byte = 1 << 4
	changeFlags       = flagInline | pathMask | flagSender | flagShare
	digestTrunc  byte = 1 << 0
	digestFlags       = digestTrunc
	digestHeader      = 1 + 1 + 8
	crcLen            = 4
)

// MaxInlineValue is the largest inline value any node sends or accepts. A
// Config's InlineValueMax must also let a change message fit one packet
// (Memberlist.UDPBufferSize, with encryption and framing): with memberlist's
// default 1400-byte buffer that allows up to about 870 bytes (room is kept
// for the publisher's record.Seal).
const MaxInlineValue = 1024

// recordOverhead bounds the record encoding's bytes beyond namespace, key
// and value: header, three uvarint lengths, seal, checksum.
const recordOverhead = 4 + 8 + 3*binary.MaxVarintLen32 + record.SealLen + 4

// MaxNameLen is the longest node name that fits in a message; longer names
// are refused by Config validation.
const MaxNameLen = 128

// maxChangeSize bounds an encoded change message whose value is at most
// inline bytes, sent by a node whose name is nameLen bytes.
func maxChangeSize(inline, nameLen int) int {
	return 2 + 2 + nameLen + 2 + recordOverhead + record.MaxNamespaceLen + record.MaxKeyLen + inline
}

// MaxMessageSize is the largest change message any node accepts.
var MaxMessageSize = maxChangeSize(MaxInlineValue, MaxNameLen)

// MaxDigestSize is the largest digest any node accepts in a push/pull.
const MaxDigestSize = 1 << 20

// path says how a change message travelled; it drives relaying and metrics.
type path uint8

const (
	pathGossip path = iota // memberlist broadcast queue (repair)
	pathPush               // eager push, final hop
	pathRelay              // eager push to another region, to be forwarded there
	pathDigest             // push/pull anti-entropy digest (never on a change message)
	pathLog                // origin change log backstop (never on the wire)
	pathLocal              // Publish on this node (never on the wire)
	numPaths
)

var pathNames = [numPaths]string{"gossip", "push", "relay", "digest", "log", "local"}

func (p path) String() string {
	if int(p) < len(pathNames) {
		return pathNames[p]
	}
	return fmt.Sprintf("path(%d)", p)
}

// change is one decoded change message: a record, whether its value is
// carried, and the path it came by.
type change struct {
	rec    record.Record
	inline bool
	path   path
	from   string // sender awaiting an ack; push and relay only
	share  share  // relay only: the part of its region the relay covers
}

// share is part i of k of a region, for a relay; k < 2 means the whole
// region.
type share struct{ i, k uint8 }

func (s share) whole() bool { return s.k < 2 }

// appendChange appends the encoding of c to b. c.rec must be valid; a
// non-inline change must have an empty value.
func appendChange(b []byte, c change) []byte {
	flags := byte(c.path) << pathShift & pathMask
	if c.inline || c.rec.Tombstone {
		flags |= flagInline
	}
	rec := c.rec
	if flags&flagInline == 0 {
		rec.Value = nil
	}
	if c.from != "" && (c.path == pathPush || c.path == pathRelay) {
		flags |= flagSender
	}
	if c.path == pathRelay && !c.share.whole() {
		flags |= flagShare
	}
	b = append(b, kindChange, flags)
	if flags&flagSender != 0 {
		b = appendString(b, c.from)
	}
	if flags&flagShare != 0 {
		b = append(b, c.share.i, c.share.k)
	}
	return record.AppendRecord(b, rec)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readString reads a length-prefixed string of 1 to limit bytes.
func readString(b []byte, limit int, what string) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > uint64(limit) || n > uint64(len(b)-k) {
		return "", nil, fmt.Errorf("%w: bad %s", record.ErrCorrupt, what)
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// encodeChange returns the encoding of c.
func encodeChange(c change) []byte {
	return appendChange(make([]byte, 0, 2+recordOverhead+len(c.rec.Namespace)+len(c.rec.Key)+len(c.rec.Value)), c)
}

// errKind is wrapped when the first byte names no known message.
var errKind = errors.New("unknown message kind")

// decodeChange decodes a change message. The result does not alias b.
func decodeChange(b []byte) (change, error) {
	if len(b) > MaxMessageSize {
		return change{}, fmt.Errorf("%w: change message is %d bytes, limit is %d", record.ErrCorrupt, len(b), MaxMessageSize)
	}
	if len(b) < 2 {
		return change{}, fmt.Errorf("%w: change message truncated at %d bytes", record.ErrCorrupt, len(b))
	}
	if b[0] != kindChange {
		return change{}, fmt.Errorf("%w: %w %#x", record.ErrCorrupt, errKind, b[0])
	}
	flags := b[1]
	if flags&^changeFlags != 0 {
		return change{}, fmt.Errorf("%w: unknown change flags %#x", record.ErrCorrupt, flags)
	}
	p := path((flags & pathMask) >> pathShift)
	if p > pathRelay {
		return change{}, fmt.Errorf("%w: bad path %d", record.ErrCorrupt, p)
	}
	body := b[2:]
	var from string
	if flags&flagSender != 0 {
		var err error
		if from, body, err = readString(body, MaxNameLen, "sender name"); err != nil {
			return change{}, err
		}
		if p != pathPush && p != pathRelay {
			return change{}, fmt.Errorf("%w: sender on a %s message", record.ErrCorrupt, p)
		}
	}
	var sh share
	if flags&flagShare != 0 {
		if p != pathRelay {
			return change{}, fmt.Errorf("%w: share on a %s message", record.ErrCorrupt, p)
		}
		if len(body) < 2 || body[1] < 2 || body[0] >= body[1] {
			return change{}, fmt.Errorf("%w: bad share", record.ErrCorrupt)
		}
		sh, body = share{i: body[0], k: body[1]}, body[2:]
	}
	rec, err := record.Unmarshal(body)
	if err != nil {
		if !errors.Is(err, record.ErrCorrupt) {
			// A well-formed record breaking a rule is still garbage on the
			// wire: report both, so callers can branch on either.
			return change{}, fmt.Errorf("%w: change message: %w", record.ErrCorrupt, err)
		}
		return change{}, fmt.Errorf("change message: %w", err)
	}
	inline := flags&flagInline != 0
	if !inline && len(rec.Value) > 0 {
		return change{}, fmt.Errorf("%w: invalidation of %s/%s carries a value", record.ErrCorrupt, rec.Namespace, rec.Key)
	}
	if rec.Tombstone && !inline {
		return change{}, fmt.Errorf("%w: tombstone of %s/%s not marked inline", record.ErrCorrupt, rec.Namespace, rec.Key)
	}
	if len(rec.Value) > MaxInlineValue {
		return change{}, fmt.Errorf("%w: inline value of %s/%s is %d bytes, limit is %d", record.ErrCorrupt, rec.Namespace, rec.Key, len(rec.Value), MaxInlineValue)
	}
	return change{rec: rec, inline: inline, path: p, from: from, share: sh}, nil
}

// ack acknowledges a push or relay of ns/key at version.
type ack struct {
	ns, key string
	version record.Version
	from    string
}

func encodeAck(a ack) []byte { return appendAckLike(nil, kindAck, a) }

// appendAckLike appends the encoding shared by acks, refusals (before
// their reason code) and queries.
func appendAckLike(b []byte, kind byte, a ack) []byte {
	if b == nil {
		b = make([]byte, 0, 10+3+len(a.ns)+len(a.key)+len(a.from))
	}
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(a.version))
	b = appendString(b, a.ns)
	b = appendString(b, a.key)
	return appendString(b, a.from)
}

const maxAckSize = 9 + 3*binary.MaxVarintLen16 + record.MaxNamespaceLen + record.MaxKeyLen + MaxNameLen

func decodeAck(b []byte) (ack, error) {
	a, rest, err := decodeAckLike(b, kindAck, maxAckSize)
	if err != nil {
		return ack{}, err
	}
	if len(rest) != 0 {
		return ack{}, fmt.Errorf("%w: %d trailing bytes in ack", record.ErrCorrupt, len(rest))
	}
	return a, nil
}

// decodeAckLike decodes the part shared by acks, refusals and queries, and
// returns the bytes after it.
func decodeAckLike(b []byte, kind byte, limit int) (ack, []byte, error) {
	if len(b) > limit || len(b) < 9 || b[0] != kind {
		return ack{}, nil, fmt.Errorf("%w: bad message of kind %#x, %d bytes", record.ErrCorrupt, kind, len(b))
	}
	a := ack{version: record.Version(binary.BigEndian.Uint64(b[1:9]))}
	rest := b[9:]
	var err error
	if a.ns, rest, err = readString(rest, record.MaxNamespaceLen, "ack namespace"); err != nil {
		return ack{}, nil, err
	}
	if a.key, rest, err = readString(rest, record.MaxKeyLen, "ack key"); err != nil {
		return ack{}, nil, err
	}
	if a.from, rest, err = readString(rest, MaxNameLen, "ack sender"); err != nil {
		return ack{}, nil, err
	}
	if err := record.ValidateKey(a.ns, a.key); err != nil {
		return ack{}, nil, fmt.Errorf("%w: ack: %w", record.ErrCorrupt, err)
	}
	if a.version == 0 {
		return ack{}, nil, fmt.Errorf("%w: ack of version 0", record.ErrCorrupt)
	}
	return a, rest, nil
}

// digest is a node's push/pull summary.
type digest struct {
	highWater record.Version
	truncated bool
	changes   []change // newest first; path is always pathDigest once decoded
}

// encodeDigest encodes d, adding changes in order until the next would pass
// maxBytes, and marks the result truncated if any were left out.
func encodeDigest(d digest, maxBytes int) []byte {
	b := make([]byte, digestHeader, min(maxBytes, 4096))
	b[0] = kindDigest
	binary.BigEndian.PutUint64(b[2:], uint64(d.highWater))
	var body []byte
	n := 0
	trunc := d.truncated
	var one []byte
	for _, c := range d.changes {
		c.path, c.from = pathGossip, ""
		one = appendChange(one[:0], c)
		need := binary.MaxVarintLen32 + len(one)
		if digestHeader+binary.MaxVarintLen32+len(body)+need+crcLen > maxBytes {
			trunc = true
			break
		}
		body = binary.AppendUvarint(body, uint64(len(one)))
		body = append(body, one...)
		n++
	}
	if trunc {
		b[1] = digestTrunc
	}
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crcOf(b))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// decodeDigest decodes a digest. The result does not alias b.
func decodeDigest(b []byte) (digest, error) {
	if len(b) > MaxDigestSize {
		return digest{}, fmt.Errorf("%w: digest is %d bytes, limit is %d", record.ErrCorrupt, len(b), MaxDigestSize)
	}
	if len(b) < digestHeader+1+crcLen {
		return digest{}, fmt.Errorf("%w: digest truncated at %d bytes", record.ErrCorrupt, len(b))
	}
	if b[0] != kindDigest {
		return digest{}, fmt.Errorf("%w: %w %#x", record.ErrCorrupt, errKind, b[0])
	}
	body, sum := b[:len(b)-crcLen], binary.BigEndian.Uint32(b[len(b)-crcLen:])
	if crcOf(body) != sum {
		return digest{}, fmt.Errorf("%w: digest checksum mismatch", record.ErrCorrupt)
	}
	if b[1]&^digestFlags != 0 {
		return digest{}, fmt.Errorf("%w: unknown digest flags %#x", record.ErrCorrupt, b[1])
	}
	d := digest{
		truncated: b[1]&digestTrunc != 0,
		highWater: record.Version(binary.BigEndian.Uint64(b[2:10])),
	}
	rest := body[digestHeader:]
	count, k := binary.Uvarint(rest)
	if k <= 0 {
		return digest{}, fmt.Errorf("%w: bad digest count", record.ErrCorrupt)
	}
	rest = rest[k:]
	// Every entry takes at least a length byte and a minimal change message,
	// so a count larger than the bytes left is a lie; check before allocating.
	if count > uint64(len(rest)/minChangeSize) {
		return digest{}, fmt.Errorf("%w: digest claims %d changes in %d bytes", record.ErrCorrupt, count, len(rest))
	}
	d.changes = make([]change, 0, count)
	for i := uint64(0); i < count; i++ {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return digest{}, fmt.Errorf("%w: bad length of digest entry %d", record.ErrCorrupt, i)
		}
		rest = rest[k:]
		if n > uint64(len(rest)) {
			return digest{}, fmt.Errorf("%w: digest entry %d truncated", record.ErrCorrupt, i)
		}
		c, err := decodeChange(rest[:n])
		if err != nil {
			return digest{}, fmt.Errorf("digest entry %d: %w", i, err)
		}
		if c.path != pathGossip {
			return digest{}, fmt.Errorf("%w: digest entry %d has path %s", record.ErrCorrupt, i, c.path)
		}
		if c.rec.Version > d.highWater {
			return digest{}, fmt.Errorf("%w: digest entry %d version %s above high-water mark %s", record.ErrCorrupt, i, c.rec.Version, d.highWater)
		}
		c.path = pathDigest
		d.changes = append(d.changes, c)
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return digest{}, fmt.Errorf("%w: %d trailing bytes in digest", record.ErrCorrupt, len(rest))
	}
	return d, nil
}

// minChangeSize is the smallest valid change message: kind, flags, and a
// record with one-byte namespace and key and no value.
const minChangeSize = 2 + 4 + 8 + 2 + 2 + 1 + 4

// message is anything decode may return: a change, a digest, an ack, a
// refusal, a query or a checkpoint.
type message struct {
	change     *change
	digest     *digest
	ack        *ack
	refusal    *refusal
	query      *ack // from: the asking node
	checkpoint *cpMsg
}

// decode decodes any gossip payload by its kind byte. It is the single entry
// point for bytes from the network, and the fuzz target.
func decode(b []byte) (message, error) {
	if len(b) == 0 {
		return message{}, fmt.Errorf("%w: empty message", record.ErrCorrupt)
	}
	switch b[0] {
	case kindChange:
		c, err := decodeChange(b)
		if err != nil {
			return message{}, err
		}
		return message{change: &c}, nil
	case kindDigest:
		d, err := decodeDigest(b)
		if err != nil {
			return message{}, err
		}
		return message{digest: &d}, nil
	case kindAck:
		a, err := decodeAck(b)
		if err != nil {
			return message{}, err
		}
		return message{ack: &a}, nil
	case kindRefusal:
		r, err := decodeRefusal(b)
		if err != nil {
			return message{}, err
		}
		return message{refusal: &r}, nil
	case kindQuery:
		q, err := decodeQuery(b)
		if err != nil {
			return message{}, err
		}
		return message{query: &q}, nil
	case kindCheckpoint:
		c, err := decodeCheckpointMsg(b)
		if err != nil {
			return message{}, err
		}
		return message{checkpoint: &c}, nil
	default:
		return message{}, fmt.Errorf("%w: %w %#x", record.ErrCorrupt, errKind, b[0])
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
