package netsim

import (
	"bytes"
	"compress/lzw"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// fuzzSeeds are memberlist frames of each kind the filter takes apart.
func fuzzSeeds(t testing.TB) [][]byte {
	h := &codec.MsgpackHandle{}
	enc := func(v any) []byte {
		b, err := encodeMsgpack(h, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	user := func(s string) []byte { return append([]byte{mlUser}, s...) }
	var lz bytes.Buffer
	w := lzw.NewWriter(&lz, lzw.LSB, 8)
	w.Write(joinCompound([][]byte{user("drop-1"), {0, 1, 2}, user("keep-1")}))
	w.Close()
	compressed := append([]byte{mlCompress}, enc(&mlCompressed{Buf: lz.Bytes()})...)
	pp := append(append([]byte{mlPushPull}, enc(&mlPushPullHeader{Nodes: 0, UserStateLen: 10})...), "drop-state"...)
	reliable := append(append([]byte{mlUser}, enc(&mlUserHeader{UserMsgLen: 6})...), "drop-r"...)
	return [][]byte{
		user("drop-x"),
		append([]byte{mlHasLabel, 2, 'l', 'b'}, user("keep")...),
		append([]byte{mlHasCRC, 0, 0, 0, 0}, joinCompound([][]byte{user("drop"), user("keep")})...),
		compressed, pp, reliable,
		{mlHasLabel, 1, 'x'},
	}
}

// FuzzRewrite: the filter's parsers never panic on any bytes, leave a
// frame alone when the filter does, and what they rewrite parses again
// without the dropped messages.
func FuzzRewrite(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	drop := func(m []byte) []byte {
		if bytes.HasPrefix(m, []byte("drop")) {
			return nil
		}
		return m
	}
	var seen [][]byte
	collect := func(m []byte) []byte { seen = append(seen, m); return m }
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, rw := range []func([]byte, func([]byte) []byte) ([]byte, bool, error){rewritePacket, rewriteStream} {
			if _, changed, _ := rw(b, func(m []byte) []byte { return m }); changed {
				t.Fatalf("changed %x with a filter that keeps everything", b)
			}
			out, changed, err := rw(b, drop)
			if err != nil || !changed || out == nil {
				continue
			}
			seen = seen[:0]
			if _, _, err := rw(out, collect); err != nil {
				t.Fatalf("rewrote %x to %x, which does not parse: %v", b, out, err)
			}
			for _, m := range seen {
				if bytes.HasPrefix(m, []byte("drop")) {
					t.Fatalf("rewrote %x to %x, which still carries %q", b, out, m)
				}
			}
		}
	})
}
