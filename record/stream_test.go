package record

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

func streamSeeds(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for name, s := range map[string]Snapshot{
		"empty": {Namespace: "routes", Version: 1},
		"format1": {Namespace: "routes", Version: 9, Records: []Record{
			{Namespace: "routes", Key: "a", Value: []byte("1"), Version: 3},
			{Namespace: "routes", Key: "b", Version: 4, Tombstone: true},
		}},
		"format2": {Namespace: "keys", Version: 42,
			Records: []Record{{Namespace: "keys", Key: "ks/a", Value: []byte("x"), Version: 7}},
			Known: []Change{
				{Namespace: "keys", Key: "ks/a", Version: 8},
				{Namespace: "keys", Key: "ks/b", Version: 9, Tombstone: true},
			}},
	} {
		b, err := MarshalSnapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

func TestReadSnapshotMatchesUnmarshal(t *testing.T) {
	for name, b := range streamSeeds(t) {
		t.Run(name, func(t *testing.T) {
			want, err := UnmarshalSnapshot(b)
			if err != nil {
				t.Fatal(err)
			}
			// One byte at a time: nothing relies on a read filling the buffer.
			got, err := ReadSnapshot(iotest.OneByteReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
			if len(want.Known) == 0 {
				want.Known = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ReadSnapshot = %+v, want %+v", got, want)
			}
		})
	}
}

func TestSnapshotReaderRejectsDamage(t *testing.T) {
	b := streamSeeds(t)["format2"]
	tests := []struct {
		name string
		in   []byte
	}{
		{"trailing byte", append(append([]byte(nil), b...), 0)},
		{"flipped checksum", append(append([]byte(nil), b[:len(b)-1]...), b[len(b)-1]^1)},
		{"bad magic", append([]byte("XS"), b[2:]...)},
	}
	for cut := 0; cut < len(b); cut++ {
		tests = append(tests, struct {
			name string
			in   []byte
		}{"truncated", b[:cut]})
	}
	for _, tt := range tests {
		_, err := ReadSnapshot(bytes.NewReader(tt.in))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s (%d bytes): err = %v, want ErrCorrupt", tt.name, len(tt.in), err)
		}
	}
}

// A failing transport is reported as itself, not as a corrupt snapshot, so a
// caller can tell a network failure from damage.
func TestSnapshotReaderKeepsReadErrors(t *testing.T) {
	b := streamSeeds(t)["format1"]
	boom := errors.New("connection reset")
	_, err := ReadSnapshot(io.MultiReader(bytes.NewReader(b[:20]), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the transport's error and not ErrCorrupt", err)
	}
}

// Records come one at a time, and the sticky error after the end is io.EOF.
func TestSnapshotReaderNext(t *testing.T) {
	sr, err := NewSnapshotReader(bytes.NewReader(streamSeeds(t)["format1"]))
	if err != nil {
		t.Fatal(err)
	}
	if sr.Namespace() != "routes" || sr.Version() != 9 || sr.Remaining() != 2 {
		t.Fatalf("header: %q %v %d", sr.Namespace(), sr.Version(), sr.Remaining())
	}
	var keys []string
	for {
		r, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, r.Key)
	}
	if !reflect.DeepEqual(keys, []string{"a", "b"}) {
		t.Fatalf("keys %v", keys)
	}
	if _, err := sr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the end = %v, want io.EOF", err)
	}
}

// BenchmarkSnapshotDecode compares decoding a snapshot of 100k records of
// about 200 bytes held in memory (UnmarshalSnapshot) with streaming it
// (ReadSnapshot).
func BenchmarkSnapshotDecode(b *testing.B) {
	s := Snapshot{Namespace: "routes", Version: 1 << 40}
	value := bytes.Repeat([]byte("v"), 170)
	for i := 0; i < 100_000; i++ {
		s.Records = append(s.Records, Record{Namespace: "routes", Key: fmt.Sprintf("host-%08d.example.com", i), Value: value, Version: 1 << 40})
	}
	enc, err := MarshalSnapshot(s)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("UnmarshalSnapshot", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := UnmarshalSnapshot(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadSnapshot", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := ReadSnapshot(bytes.NewReader(enc)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
