package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"sync"
	"testing"

	"github.com/dataplane/dataplane/record"
)

// memParts is a minimal SnapshotParts for the tests of this package (the
// stores' own parts are tested by origintest against real servers).
type memParts struct {
	mu     sync.Mutex // guards objs, onRead
	objs   map[string][]byte
	onRead func(name string) // called before each part read, once
}

func newMemParts() *memParts { return &memParts{objs: map[string][]byte{}} }

func (m *memParts) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	if err := CheckPartName(ns, name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[ns+"/"+name] = append([]byte(nil), b...)
	return nil
}

func (m *memParts) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	m.mu.Lock()
	hook := m.onRead
	if name != "" {
		m.onRead = nil
	}
	m.mu.Unlock()
	if hook != nil && name != "" {
		hook(name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("%s/%s: %w", ns, name, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memParts) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, ns+"/"+name)
	return nil
}

func (m *memParts) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.objs)
}

func snapOf(n int, v record.Version) record.Snapshot {
	s := record.Snapshot{Namespace: "routes", Version: v}
	for i := 0; i < n; i++ {
		s.Records = append(s.Records, record.Record{Namespace: "routes", Key: fmt.Sprintf("k%04d", i), Value: []byte(fmt.Sprintf("value %d at %d", i, v)), Version: v})
	}
	return s
}

var tiny = Layout{InlineSize: 256, ChunkSize: 512, DeltaRatio: 0.5, MaxDeltas: 2}

// Known versions survive being cut into chunks.
func TestWriteSnapshotChunksKeepKnown(t *testing.T) {
	p := newMemParts()
	s := snapOf(50, 7)
	s.Known = []record.Change{{Namespace: "routes", Key: "gone", Version: 9, Tombstone: true}, {Namespace: "routes", Key: "k0001", Version: 8}}
	if err := WriteSnapshot(context.Background(), p, s, tiny); err != nil {
		t.Fatal(err)
	}
	if p.count() < 4 {
		t.Fatalf("%d objects: a %d-record snapshot was not cut into chunks", p.count(), len(s.Records))
	}
	got, err := ReadSnapshot(context.Background(), p, "routes")
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(s.Known, func(i, j int) bool { return s.Known[i].Key < s.Known[j].Key })
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("read back %d records, known %+v; want %d, %+v", len(got.Records), got.Known, len(s.Records), s.Known)
	}
}

// Replaced parts are deleted a generation later: the objects a namespace
// uses stay bounded however many passes run.
func TestReplacedPartsAreDeleted(t *testing.T) {
	p := newMemParts()
	ctx := context.Background()
	if err := WriteSnapshot(ctx, p, snapOf(50, 1), tiny); err != nil {
		t.Fatal(err)
	}
	most := 0
	for pass := 2; pass < 60; pass++ {
		delta := record.Snapshot{Namespace: "routes", Version: record.Version(pass), Records: []record.Record{
			{Namespace: "routes", Key: fmt.Sprintf("k%04d", pass%50), Value: []byte("changed"), Version: record.Version(pass)},
		}}
		if err := AppendSnapshot(ctx, p, delta, 0, tiny); err != nil {
			t.Fatal(err)
		}
		most = max(most, p.count())
	}
	// A base of ~8 chunks, at most MaxDeltas deltas, and one retired
	// generation of each.
	if most > 2*(10+tiny.MaxDeltas)+1 {
		t.Fatalf("the namespace grew to %d objects", most)
	}
	got, err := ReadSnapshot(ctx, p, "routes")
	if err != nil || got.Version != 59 || len(got.Records) != 50 {
		t.Fatalf("after 58 passes: version %v, %d records, %v", got.Version, len(got.Records), err)
	}
}

// A reader whose parts are replaced and deleted under it reads the new
// manifest and returns the new snapshot.
func TestReadSnapshotFollowsReplacement(t *testing.T) {
	p := newMemParts()
	ctx := context.Background()
	if err := WriteSnapshot(ctx, p, snapOf(50, 1), tiny); err != nil {
		t.Fatal(err)
	}
	p.onRead = func(string) {
		// Another writer replaces the snapshot twice (so the first
		// generation's parts are deleted) while we read.
		for v := record.Version(2); v <= 3; v++ {
			if err := WriteSnapshot(ctx, p, snapOf(50, v), tiny); err != nil {
				t.Error(err)
			}
		}
	}
	got, err := ReadSnapshot(ctx, p, "routes")
	if err != nil || got.Version != 3 {
		t.Fatalf("ReadSnapshot = version %v, %v; want the replacement, version 3", got.Version, err)
	}
}

// A manifest naming a part that is gone for good is reported as corrupt,
// not retried forever.
func TestReadSnapshotMissingPart(t *testing.T) {
	p := newMemParts()
	ctx := context.Background()
	if err := WriteSnapshot(ctx, p, snapOf(50, 1), tiny); err != nil {
		t.Fatal(err)
	}
	for k := range p.objs {
		if k != "routes/" {
			delete(p.objs, k)
			break
		}
	}
	if _, err := ReadSnapshot(ctx, p, "routes"); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("ReadSnapshot with a part missing: %v, want ErrCorrupt", err)
	}
}

// FuzzReadSnapshot: whatever the main object and parts hold, ReadSnapshot
// and the stream agree with a naive reader (whole objects, a map merge):
// both fail, or both return the same valid snapshot.
func FuzzReadSnapshot(f *testing.F) {
	b0, _ := record.MarshalSnapshot(snapOf(3, 5))
	d0, _ := record.MarshalSnapshot(record.Snapshot{Namespace: "routes", Version: 6, Records: []record.Record{
		{Namespace: "routes", Key: "k0001", Version: 6, Tombstone: true},
		{Namespace: "routes", Key: "k9999", Value: []byte("new"), Version: 6},
	}})
	m := marshalManifest(manifest{Namespace: "routes", Version: 6,
		Base: []part{{Name: "b-0", Size: int64(len(b0))}}, Deltas: []part{{Name: "d-0", Size: int64(len(d0))}}, Retired: []string{"old-0"}})
	f.Add(m, b0, d0)
	f.Add(b0, []byte(nil), []byte(nil))
	f.Add([]byte("DM\x01\x00"), b0, d0)
	f.Fuzz(func(t *testing.T, main, base, delta []byte) {
		p := newMemParts()
		p.objs["routes/"] = main
		p.objs["routes/b-0"] = base
		p.objs["routes/d-0"] = delta
		want, werr := naiveRead(p.objs)
		s, err := ReadSnapshot(context.Background(), p, "routes")
		streamed, serr := drainStream(p)
		if (werr == nil) != (err == nil) || (werr == nil) != (serr == nil) {
			t.Fatalf("naive reader: %v; ReadSnapshot: %v; stream: %v", werr, err, serr)
		}
		if werr != nil {
			return
		}
		for _, got := range []record.Snapshot{s, streamed} {
			if len(got.Records) == 0 {
				got.Records = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("read %+v\nnaive reader %+v", got, want)
			}
		}
		if _, err := record.MarshalSnapshot(s); err != nil {
			t.Fatalf("returned an invalid snapshot: %v", err)
		}
	})
}

// naiveRead reads the snapshot of "routes" from objs the simplest way.
func naiveRead(objs map[string][]byte) (record.Snapshot, error) {
	main := objs["routes/"]
	if !bytes.HasPrefix(main, []byte("DM")) {
		s, err := record.UnmarshalSnapshot(main)
		if err == nil && s.Namespace != "routes" {
			err = record.ErrCorrupt
		}
		if len(s.Records) == 0 {
			s.Records = nil
		}
		if len(s.Known) == 0 {
			s.Known = nil
		}
		return s, err
	}
	m, err := unmarshalManifest(main)
	if err != nil {
		return record.Snapshot{}, err
	}
	if m.Namespace != "routes" {
		return record.Snapshot{}, record.ErrCorrupt
	}
	recs := map[string]record.Record{}
	known := map[string]record.Change{}
	last := ""
	for i, list := range [][]part{m.Base, m.Deltas} {
		for _, pt := range list {
			b, ok := objs["routes/"+pt.Name]
			if !ok {
				return record.Snapshot{}, ErrNotFound
			}
			s, err := record.UnmarshalSnapshot(b)
			if err != nil {
				return record.Snapshot{}, err
			}
			if s.Namespace != "routes" {
				return record.Snapshot{}, record.ErrCorrupt
			}
			for j, r := range s.Records {
				if i == 0 && j == 0 && last != "" && r.Key <= last {
					return record.Snapshot{}, record.ErrCorrupt
				}
				if cur, ok := recs[r.Key]; !ok || r.Version > cur.Version {
					recs[r.Key] = r
				}
			}
			if i == 0 && len(s.Records) > 0 {
				last = s.Records[len(s.Records)-1].Key
			}
			for _, c := range s.Known {
				if c.Version > known[c.Key].Version {
					known[c.Key] = c
				}
			}
		}
	}
	out := record.Snapshot{Namespace: "routes", Version: m.Version}
	for _, r := range recs {
		out.Records = append(out.Records, r)
	}
	sort.Slice(out.Records, func(i, j int) bool { return out.Records[i].Key < out.Records[j].Key })
	for _, c := range known {
		out.Known = append(out.Known, c)
	}
	sort.Slice(out.Known, func(i, j int) bool { return out.Known[i].Key < out.Known[j].Key })
	return out, nil
}

// drainStream reads the snapshot of "routes" through OpenSnapshot.
func drainStream(p SnapshotParts) (record.Snapshot, error) {
	st, err := OpenSnapshot(context.Background(), p, "routes")
	if err != nil {
		return record.Snapshot{}, err
	}
	defer st.Close()
	out := record.Snapshot{Namespace: st.Namespace(), Version: st.Version()}
	for {
		r, err := st.Next()
		if errors.Is(err, io.EOF) {
			out.Known = st.Known()
			return out, nil
		}
		if err != nil {
			return record.Snapshot{}, err
		}
		out.Records = append(out.Records, r)
	}
}

// The stream of a base with deltas yields what ReadSnapshot returns.
func TestOpenSnapshotMatchesReadSnapshot(t *testing.T) {
	p := newMemParts()
	ctx := context.Background()
	s := snapOf(40, 1)
	s.Known = []record.Change{{Namespace: "routes", Key: "k0003", Version: 2}}
	if err := WriteSnapshot(ctx, p, s, tiny); err != nil {
		t.Fatal(err)
	}
	huge := Layout{InlineSize: 256, ChunkSize: 512, DeltaRatio: 100, MaxDeltas: 100}
	for pass := 2; pass < 8; pass++ {
		v := record.Version(pass)
		delta := record.Snapshot{Namespace: "routes", Version: v, Records: []record.Record{
			{Namespace: "routes", Key: "a-first", Value: []byte("before every base key"), Version: v},
			{Namespace: "routes", Key: fmt.Sprintf("k%04d", pass*3), Version: v, Tombstone: true},
			{Namespace: "routes", Key: fmt.Sprintf("k%04d-new", pass), Value: []byte("between"), Version: v},
			{Namespace: "routes", Key: "z-last", Value: []byte("after every base key"), Version: v},
		}}
		if err := AppendSnapshot(ctx, p, delta, 0, huge); err != nil {
			t.Fatal(err)
		}
		want, err := ReadSnapshot(ctx, p, "routes")
		if err != nil {
			t.Fatal(err)
		}
		got, err := drainStream(p)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("pass %d: stream %d records, ReadSnapshot %d", pass, len(got.Records), len(want.Records))
		}
		if len(want.Records) != 40+2+(pass-1) {
			t.Fatalf("pass %d: %d records", pass, len(want.Records))
		}
	}
}
