package record

import (
	"errors"
	"reflect"
	"testing"
)

func TestSnapshotKnownRoundTrip(t *testing.T) {
	s := Snapshot{
		Namespace: "routes",
		Version:   42,
		Records:   []Record{{Namespace: "routes", Key: "a", Value: []byte("x"), Version: 7}},
		Known: []Change{
			{Namespace: "routes", Key: "b", Version: 9, Tombstone: true},
			{Namespace: "routes", Key: "a", Version: 8},
		},
	}
	b, err := MarshalSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	if b[2] != formatV2 {
		t.Fatalf("format %d, want %d", b[2], formatV2)
	}
	got, err := UnmarshalSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{s.Known[1], s.Known[0]} // sorted by key
	if !reflect.DeepEqual(got.Known, want) || len(got.Records) != 1 {
		t.Fatalf("got %+v, want known %+v", got, want)
	}
	// Without Known the encoding stays format 1.
	s.Known = nil
	if b, _ = MarshalSnapshot(s); b[2] != formatV1 {
		t.Fatalf("format %d without Known, want 1", b[2])
	}
}

func TestSnapshotKnownRejects(t *testing.T) {
	for name, known := range map[string][]Change{
		"zero version": {{Key: "a"}},
		"duplicate":    {{Key: "a", Version: 1}, {Key: "a", Version: 2}},
		"other ns":     {{Namespace: "keys", Key: "a", Version: 1}},
		"bad key":      {{Key: "", Version: 1}},
	} {
		_, err := MarshalSnapshot(Snapshot{Namespace: "routes", Known: known})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
}
