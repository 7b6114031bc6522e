package netsim

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Filter decides the fate of one user message on the wire: a payload a
// memberlist.Delegate exchanges (what NotifyMsg receives, a gossip
// broadcast piggybacked on memberlist's own packets, the user state of a
// push/pull, a reliable send), sent by the member listening on address
// from to the member listening on address to (host:port). It returns the
// payload to deliver instead: msg itself to leave the message alone, other
// bytes to replace it, or nil to drop it. The rest of the packet or stream
// (probes, acks, membership, other messages of a compound packet) is
// delivered as it would be. It must not keep or modify msg.
//
// A Filter sees plaintext traffic only: an encrypted packet or stream
// (gossip.Config.SecretKeys) passes unread.
type Filter func(from, to string, msg []byte) []byte

// SetFilter makes f see every user message between members of the Network
// (nil: none), after the link's loss and cut decisions. Packets are
// filtered by their sender, streams on each side's writes.
func (n *Network) SetFilter(f Filter) {
	n.mu.Lock()
	n.filter = f
	n.mu.Unlock()
}

func (n *Network) getFilter() Filter {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.filter
}

func (n *Network) countFiltered() {
	n.mu.Lock()
	n.stats.Filtered++
	n.mu.Unlock()
}

// memberlist's message types (hashicorp/memberlist net.go), part of its
// wire protocol.
const (
	mlPushPull byte = 6
	mlCompound byte = 7
	mlUser     byte = 8
	mlCompress byte = 9
	mlHasCRC   byte = 12
	mlHasLabel byte = 244
)

// errUnread is returned for bytes the filter cannot take apart: they are
// delivered as they are.
var errUnread = errors.New("netsim: not a plaintext memberlist message")

// same reports whether out is msg itself (the filter left it alone).
func same(out, msg []byte) bool {
	return len(out) == len(msg) && (len(msg) == 0 || &out[0] == &msg[0])
}

// filterPacket applies f to every user message of packet b from address
// from to address to. It returns b itself when f left every message alone
// (or b cannot be read), the packet to send instead, or nil when nothing
// is left to send.
func (n *Network) filterPacket(f Filter, from, to string, b []byte) []byte {
	out, changed, err := rewritePacket(b, func(msg []byte) []byte { return f(from, to, msg) })
	if err != nil || !changed {
		return b
	}
	n.countFiltered()
	return out
}

// splitLabel splits memberlist's label header (the label byte, its
// length, the label) off the front of b; label is nil when b has none.
func splitLabel(b []byte) (label, rest []byte, err error) {
	if len(b) == 0 || b[0] != mlHasLabel {
		return nil, b, nil
	}
	if len(b) < 2 || len(b) < 2+int(b[1]) {
		return nil, nil, errUnread
	}
	return b[:2+int(b[1])], b[2+int(b[1]):], nil
}

// uncompressed returns b's message, decompressed when memberlist
// compressed it, and errUnread when nothing is left.
func uncompressed(b []byte) ([]byte, error) {
	if len(b) > 0 && b[0] == mlCompress {
		var err error
		if b, err = decompress(b[1:]); err != nil {
			return nil, err
		}
	}
	if len(b) == 0 {
		return nil, errUnread
	}
	return b, nil
}

// rewritePacket takes a memberlist packet apart (label header, CRC,
// compression, a compound of messages), passes each user message through
// f, and puts it together again, uncompressed.
func rewritePacket(b []byte, f func([]byte) []byte) (out []byte, changed bool, err error) {
	label, b, err := splitLabel(b)
	if err != nil {
		return nil, false, err
	}
	crc := len(b) >= 5 && b[0] == mlHasCRC
	if crc {
		b = b[5:]
	}
	if b, err = uncompressed(b); err != nil {
		return nil, false, err
	}
	var msg []byte
	switch b[0] {
	case mlUser:
		m := f(b[1:])
		if same(m, b[1:]) {
			return nil, false, nil
		}
		if m == nil {
			return nil, true, nil
		}
		msg = append([]byte{mlUser}, m...)
	case mlCompound:
		parts, err := splitCompound(b)
		if err != nil {
			return nil, false, err
		}
		var kept [][]byte
		for _, p := range parts {
			if len(p) == 0 || p[0] != mlUser {
				kept = append(kept, p)
				continue
			}
			m := f(p[1:])
			switch {
			case same(m, p[1:]):
				kept = append(kept, p)
			case m == nil:
				changed = true
			default:
				changed = true
				kept = append(kept, append([]byte{mlUser}, m...))
			}
		}
		if !changed {
			return nil, false, nil
		}
		if len(kept) == 0 {
			return nil, true, nil
		}
		msg = joinCompound(kept)
	default:
		return nil, false, nil // no user message
	}
	if crc {
		h := make([]byte, 5, 5+len(msg))
		h[0] = mlHasCRC
		binary.BigEndian.PutUint32(h[1:], crc32.ChecksumIEEE(msg))
		msg = append(h, msg...)
	}
	return append(append([]byte(nil), label...), msg...), true, nil
}

// splitCompound splits a compound message (type, count, count uint16
// lengths, the parts).
func splitCompound(b []byte) ([][]byte, error) {
	if len(b) < 2 {
		return nil, errUnread
	}
	k := int(b[1])
	b = b[2:]
	if len(b) < 2*k {
		return nil, errUnread
	}
	lens, b := b[:2*k], b[2*k:]
	parts := make([][]byte, 0, k)
	for i := range k {
		l := int(binary.BigEndian.Uint16(lens[2*i:]))
		if len(b) < l {
			return nil, errUnread
		}
		parts, b = append(parts, b[:l]), b[l:]
	}
	return parts, nil
}

// joinCompound is memberlist's makeCompoundMessage.
func joinCompound(parts [][]byte) []byte {
	b := []byte{mlCompound, byte(len(parts))}
	for _, p := range parts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// mlCompressed is memberlist's compress message.
type mlCompressed struct {
	Algo int
	Buf  []byte
}

// decompress decodes a compress message's body (after its type byte).
func decompress(b []byte) ([]byte, error) {
	var c mlCompressed
	if err := codec.NewDecoderBytes(b, &codec.MsgpackHandle{}).Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnread, err)
	}
	if c.Algo != 0 { // lzw, the only one
		return nil, errUnread
	}
	r := lzw.NewReader(bytes.NewReader(c.Buf), lzw.LSB, 8)
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnread, err)
	}
	return out, nil
}

// mlPushPullHeader and mlUserHeader are memberlist's stream headers; the
// field names are its msgpack keys.
type mlPushPullHeader struct {
	Nodes        int
	UserStateLen int
	Join         bool
}

type mlUserHeader struct {
	UserMsgLen int
}

// rewriteStream passes the user message of one stream write (memberlist
// writes each stream message whole: a push/pull's state, a reliable user
// message) through f. It returns b itself when f left it alone (or b is a
// label header, encrypted, or anything else), the bytes to write instead,
// or nil to write nothing.
func rewriteStream(b []byte, f func([]byte) []byte) (out []byte, changed bool, err error) {
	label, b, err := splitLabel(b)
	if err != nil {
		return nil, false, err
	}
	if label != nil && len(b) == 0 {
		return nil, false, nil // the label header, written on its own
	}
	if b, err = uncompressed(b); err != nil {
		return nil, false, err
	}
	h := &codec.MsgpackHandle{}
	var msg []byte
	switch b[0] {
	case mlPushPull:
		var hd mlPushPullHeader
		if err := codec.NewDecoderBytes(b[1:], h).Decode(&hd); err != nil {
			return nil, false, fmt.Errorf("%w: %w", errUnread, err)
		}
		enc, err := encodeMsgpack(h, &hd)
		if err != nil || !bytes.HasPrefix(b[1:], enc) || hd.UserStateLen < 0 || hd.UserStateLen > len(b)-1-len(enc) {
			return nil, false, errUnread
		}
		if hd.UserStateLen == 0 {
			return nil, false, nil // no user state
		}
		user := b[len(b)-hd.UserStateLen:]
		m := f(user)
		if same(m, user) {
			return nil, false, nil
		}
		middle := b[1+len(enc) : len(b)-hd.UserStateLen]
		hd.UserStateLen = len(m)
		if enc, err = encodeMsgpack(h, &hd); err != nil {
			return nil, false, err
		}
		msg = append(append(append([]byte{mlPushPull}, enc...), middle...), m...)
	case mlUser:
		var hd mlUserHeader
		if err := codec.NewDecoderBytes(b[1:], h).Decode(&hd); err != nil {
			return nil, false, fmt.Errorf("%w: %w", errUnread, err)
		}
		enc, err := encodeMsgpack(h, &hd)
		if err != nil || !bytes.HasPrefix(b[1:], enc) || hd.UserMsgLen != len(b)-1-len(enc) {
			return nil, false, errUnread
		}
		user := b[1+len(enc):]
		m := f(user)
		switch {
		case same(m, user):
			return nil, false, nil
		case m == nil:
			return nil, true, nil
		}
		hd.UserMsgLen = len(m)
		if enc, err = encodeMsgpack(h, &hd); err != nil {
			return nil, false, err
		}
		msg = append(append([]byte{mlUser}, enc...), m...)
	default:
		return nil, false, nil // encrypted, or no user message
	}
	return append(append([]byte(nil), label...), msg...), true, nil
}

func encodeMsgpack(h *codec.MsgpackHandle, v any) ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, h).Encode(v)
	return b, err
}

// filterStream is rewriteStream with the Network's counting: the bytes to
// write for one stream write p from address from to address to, and
// whether to write anything.
func (n *Network) filterStream(f Filter, from, to string, p []byte) ([]byte, bool) {
	out, changed, err := rewriteStream(p, func(msg []byte) []byte { return f(from, to, msg) })
	if err != nil || !changed {
		return p, true
	}
	n.countFiltered()
	return out, out != nil
}
