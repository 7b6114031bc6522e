package record

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClockMonotonicWhenWallClockStepsBack(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	walls := []time.Time{base, base, base.Add(-time.Hour), base.Add(time.Millisecond), base.Add(-time.Second), base.Add(2 * time.Millisecond)}
	i := 0
	c := NewClock(func() time.Time { w := walls[i%len(walls)]; i++; return w })
	var last Version
	for n := 0; n < 100; n++ {
		v := c.Now()
		if v <= last {
			t.Fatalf("call %d: version %s not above %s", n, v, last)
		}
		last = v
	}
	if got := last.Time(); got.Before(base) {
		t.Fatalf("physical part %v fell behind the highest wall time %v", got, base)
	}
}

func TestClockLogicalOverflowCarries(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	c := NewClock(func() time.Time { return base })
	var last Version
	for n := 0; n < 70_000; n++ { // more than 2^16 in one millisecond
		v := c.Now()
		if v <= last {
			t.Fatalf("call %d: version %s not above %s", n, v, last)
		}
		last = v
	}
}

func TestClockConcurrentUnique(t *testing.T) {
	c := NewClock(nil)
	const goroutines, each = 8, 2000
	var mu sync.Mutex
	seen := make(map[Version]bool, goroutines*each)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]Version, 0, each)
			var last Version
			for i := 0; i < each; i++ {
				v := c.Now()
				if v <= last {
					t.Errorf("not increasing within a goroutine: %s after %s", v, last)
					return
				}
				last = v
				local = append(local, v)
			}
			mu.Lock()
			for _, v := range local {
				if seen[v] {
					t.Errorf("version %s handed out twice", v)
				}
				seen[v] = true
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
}

func TestClockObserve(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	c := NewClock(func() time.Time { return base })
	remote := MakeVersion(base.Add(time.Minute), 7)
	c.Observe(remote)
	if v := c.Now(); v <= remote {
		t.Fatalf("Now after Observe(%s) = %s", remote, v)
	}
}

func TestVersionParts(t *testing.T) {
	tm := time.UnixMilli(1_700_000_123_456)
	v := MakeVersion(tm, 42)
	if !v.Time().Equal(tm) || v.Logical() != 42 {
		t.Fatalf("MakeVersion round trip: %v %d", v.Time(), v.Logical())
	}
	if len(v.String()) != 16 {
		t.Fatalf("String() = %q, want 16 hex digits", v.String())
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{Namespace: "routes", Key: "api.example.com", Value: []byte(`{"u":"x"}`), Version: 1},
		{Namespace: "keys", Key: "ks/" + strings.Repeat("a", 64), Version: 1 << 60, Tombstone: true},
		{Namespace: "n", Key: "ünï/🙂", Value: nil, Version: 5},
		{Namespace: "big", Key: "k", Value: bytes.Repeat([]byte{0xff}, MaxValueSize), Version: 9},
	} {
		b, err := Marshal(r)
		if err != nil {
			t.Fatalf("Marshal(%s/%s): %v", r.Namespace, r.Key, err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal(%s/%s): %v", r.Namespace, r.Key, err)
		}
		if got.Namespace != r.Namespace || got.Key != r.Key || got.Version != r.Version || got.Tombstone != r.Tombstone || !bytes.Equal(got.Value, r.Value) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		b[len(b)/2] ^= 0x40
		if _, err := Unmarshal(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped bit: %v, want ErrCorrupt", err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Record
		ok   bool
	}{
		{"ok", Record{Namespace: "a", Key: "b", Version: 1}, true},
		{"empty key", Record{Namespace: "a", Version: 1}, false},
		{"empty namespace", Record{Key: "b", Version: 1}, false},
		{"upper-case namespace", Record{Namespace: "Routes", Key: "b", Version: 1}, false},
		{"long namespace", Record{Namespace: strings.Repeat("a", MaxNamespaceLen+1), Key: "b", Version: 1}, false},
		{"long key", Record{Namespace: "a", Key: strings.Repeat("b", MaxKeyLen+1), Version: 1}, false},
		{"max key", Record{Namespace: "a", Key: strings.Repeat("b", MaxKeyLen), Version: 1}, true},
		{"control char", Record{Namespace: "a", Key: "b\x00", Version: 1}, false},
		{"bad utf8", Record{Namespace: "a", Key: "\xc3", Version: 1}, false},
		{"zero version", Record{Namespace: "a", Key: "b"}, false},
		{"oversized value", Record{Namespace: "a", Key: "b", Version: 1, Value: make([]byte, MaxValueSize+1)}, false},
		{"tombstone with value", Record{Namespace: "a", Key: "b", Version: 1, Tombstone: true, Value: []byte("x")}, false},
	} {
		err := tc.r.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", tc.name, err)
		}
		if _, merr := Marshal(tc.r); (merr == nil) != tc.ok {
			t.Errorf("%s: Marshal accepted what Validate rejected, or the reverse: %v", tc.name, merr)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := Snapshot{Namespace: "routes", Version: 77, Records: []Record{
		{Namespace: "routes", Key: "b", Value: []byte("B"), Version: 2},
		{Namespace: "routes", Key: "a", Value: []byte("A"), Version: 1},
		{Namespace: "routes", Key: "c", Version: 3, Tombstone: true},
	}}
	b, err := MarshalSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 77 || len(got.Records) != 3 || got.Records[0].Key != "a" || !got.Records[2].Tombstone {
		t.Fatalf("snapshot round trip: %+v", got)
	}
	dup := s
	dup.Records = append(dup.Records, s.Records[0])
	if _, err := MarshalSnapshot(dup); !errors.Is(err, ErrInvalid) {
		t.Fatalf("duplicate key: %v, want ErrInvalid", err)
	}
	for i := 0; i < len(b); i += 7 {
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		if _, err := UnmarshalSnapshot(c); err == nil {
			t.Fatalf("flipped byte %d decoded without error", i)
		}
	}
	if _, err := UnmarshalSnapshot(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated snapshot: %v", err)
	}
}
