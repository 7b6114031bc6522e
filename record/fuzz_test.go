package record

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"testing/iotest"
)

// FuzzUnmarshal: any input either fails cleanly or decodes to a valid record
// that encodes back to exactly the same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, r := range []Record{
		{Namespace: "routes", Key: "api.example.com", Value: []byte(`{"upstreams":["http://127.0.0.1:8080"]}`), Version: 1 << 40},
		{Namespace: "keys", Key: "ks/abc", Version: 7, Tombstone: true},
	} {
		b, _ := Marshal(r)
		f.Add(b)
	}
	signed, _ := Marshal(Record{Namespace: "routes", Key: "s", Value: []byte("v"), Version: 5, Seal: &Seal{KeyID: [8]byte{1}, Digest: [32]byte{2}, Sig: [64]byte{3}}})
	f.Add(signed)
	f.Add([]byte("DR\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Unmarshal(b)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded an invalid record: %v", err)
		}
		again, err := Marshal(r)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical encoding accepted")
		}
	})
}

// FuzzUnmarshalSnapshot: any input either fails cleanly or decodes to a
// snapshot that re-encodes to the same bytes.
func FuzzUnmarshalSnapshot(f *testing.F) {
	b, _ := MarshalSnapshot(Snapshot{Namespace: "routes", Version: 9, Records: []Record{
		{Namespace: "routes", Key: "a", Value: []byte("1"), Version: 3},
		{Namespace: "routes", Key: "b", Version: 4, Tombstone: true},
	}})
	f.Add(b)
	seal := &Seal{KeyID: [8]byte{1}, Digest: [32]byte{2}, Sig: [64]byte{3}}
	b3, _ := MarshalSnapshot(Snapshot{Namespace: "routes", Version: 9,
		Records: []Record{{Namespace: "routes", Key: "a", Value: []byte("1"), Version: 3, Seal: seal}},
		Known:   []Change{{Key: "b", Version: 8, Seal: seal}, {Key: "c", Version: 7}}})
	f.Add(b3)
	f.Add([]byte("DS\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalSnapshot(b)
		if err != nil {
			return
		}
		again, err := MarshalSnapshot(s)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical snapshot accepted")
		}
	})
}

// FuzzSnapshotReader: the snapshot decoder reading a stream accepts exactly
// what it accepts reading a byte slice (UnmarshalSnapshot), with the same
// result, whatever the read sizes.
func FuzzSnapshotReader(f *testing.F) {
	for _, b := range streamSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte("DS\x02\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := UnmarshalSnapshot(b)
		got, gerr := ReadSnapshot(iotest.HalfReader(bytes.NewReader(b)))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("UnmarshalSnapshot err %v, ReadSnapshot err %v", werr, gerr)
		}
		if werr != nil {
			if !errors.Is(gerr, ErrCorrupt) && !errors.Is(gerr, ErrInvalid) {
				t.Fatalf("ReadSnapshot error %v wraps neither ErrCorrupt nor ErrInvalid", gerr)
			}
			return
		}
		if len(want.Known) == 0 {
			want.Known = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ReadSnapshot = %+v, UnmarshalSnapshot = %+v", got, want)
		}
	})
}
