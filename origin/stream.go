package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/dataplane/dataplane/record"
)

// SnapshotOpener is an optional capability of a Store: it opens a
// namespace's snapshot as a stream of records, so a reader of a large
// namespace (a node warming up) holds only the records it keeps, never the
// encoding, and can measure its progress as records arrive.
type SnapshotOpener interface {
	// OpenSnapshot opens the snapshot of ns; a missing snapshot is
	// ErrNotFound. The stream yields what GetSnapshot would return.
	OpenSnapshot(ctx context.Context, ns string) (*SnapshotStream, error)
}

// SnapshotStream yields a snapshot's records one at a time in key order,
// merged across the objects that hold it (every key once, in its newest
// version). It is not safe for concurrent use. The records belong to a
// valid snapshot only once Next has returned io.EOF; a part replaced under
// a long read fails the stream with an error wrapping ErrNotFound, and the
// caller opens it again.
type SnapshotStream struct {
	ctx     context.Context
	p       SnapshotParts
	ns      string
	version record.Version

	cur    *record.SnapshotReader // the base object being read, nil between
	body   io.Closer              // cur's object
	chunks []string               // base chunks not opened yet
	peek   record.Record          // next base record, when havePeek
	have   bool
	done   bool // base exhausted
	last   string
	any    bool // a base record was read (last is set)

	deltas []record.Record // newest version per key of every delta, sorted
	di     int
	known  map[string]record.Change
	err    error
}

// OpenSnapshot opens the snapshot of ns stored in p by WriteSnapshot or
// AppendSnapshot as a stream. Deltas (small by construction) are read
// first; the base is decoded as it streams in.
func OpenSnapshot(ctx context.Context, p SnapshotParts, ns string) (*SnapshotStream, error) {
	if err := record.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	st := &SnapshotStream{ctx: ctx, p: p, ns: ns, known: map[string]record.Change{}}
	rc, err := p.GetSnapshotPart(ctx, ns, "")
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, fmt.Errorf("snapshot %s: read: %w", ns, err)
	}
	if len(magic) < 2 || magic[0] != manifestMagic0 || magic[1] != manifestMagic1 {
		// A whole snapshot in the main object.
		sr, err := record.NewSnapshotReader(br)
		if err == nil && sr.Namespace() != ns {
			err = fmt.Errorf("%w: object holds the snapshot of %q", record.ErrCorrupt, sr.Namespace())
		}
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("snapshot %s: %w", ns, err)
		}
		st.cur, st.body, st.version = sr, rc, sr.Version()
		return st, nil
	}
	m, err := decodeManifest(br, ns)
	rc.Close()
	if err != nil {
		return nil, err
	}
	return openManifest(ctx, p, m)
}

// openManifest opens the snapshot m describes as a stream: it reads the
// deltas, and the base chunks as the stream is read.
func openManifest(ctx context.Context, p SnapshotParts, m *manifest) (*SnapshotStream, error) {
	st := &SnapshotStream{ctx: ctx, p: p, ns: m.Namespace, version: m.Version, known: map[string]record.Change{}}
	var parts []record.Snapshot
	for _, dp := range m.Deltas {
		s, err := readPart(ctx, p, m.Namespace, dp.Name)
		if err != nil {
			return nil, err
		}
		parts = append(parts, s)
		st.addKnown(s.Known)
	}
	st.deltas = mergeRecords(nil, parts...)
	for _, bp := range m.Base {
		st.chunks = append(st.chunks, bp.Name)
	}
	return st, nil
}

// ReadAll reads the rest of the stream into one snapshot and closes it.
func (st *SnapshotStream) ReadAll() (record.Snapshot, error) {
	defer st.Close()
	out := record.Snapshot{Namespace: st.ns, Version: st.version}
	if st.cur != nil {
		out.Records = make([]record.Record, 0, min(st.cur.Remaining(), 1<<20))
	}
	for {
		r, err := st.Next()
		if errors.Is(err, io.EOF) {
			if out.Records == nil {
				out.Records = []record.Record{}
			}
			out.Known = st.Known()
			return out, nil
		}
		if err != nil {
			return record.Snapshot{}, err
		}
		out.Records = append(out.Records, r)
	}
}

// Namespace returns the snapshot's namespace.
func (st *SnapshotStream) Namespace() string { return st.ns }

// Version returns the version the snapshot covers.
func (st *SnapshotStream) Version() record.Version { return st.version }

// Known returns the snapshot's known versions, sorted by key; complete only
// after Next has returned io.EOF.
func (st *SnapshotStream) Known() []record.Change {
	if len(st.known) == 0 {
		return nil
	}
	out := make([]record.Change, 0, len(st.known))
	for _, c := range st.known {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (st *SnapshotStream) addKnown(cs []record.Change) {
	for _, c := range cs {
		if c.Version > st.known[c.Key].Version {
			st.known[c.Key] = c
		}
	}
}

// Close releases the object being read. It is safe to call more than once.
func (st *SnapshotStream) Close() error {
	if st.body != nil {
		err := st.body.Close()
		st.body, st.cur = nil, nil
		return err
	}
	return nil
}

// Next returns the next record, or io.EOF after the last one once the whole
// snapshot has been read and checked. Errors are sticky.
func (st *SnapshotStream) Next() (record.Record, error) {
	if st.err != nil {
		return record.Record{}, st.err
	}
	r, err := st.next()
	if err != nil {
		st.err = err
		st.Close()
	}
	return r, err
}

func (st *SnapshotStream) next() (record.Record, error) {
	if !st.have && !st.done {
		r, err := st.nextBase()
		if err != nil {
			return record.Record{}, err
		}
		st.peek, st.have = r, !st.done
	}
	if st.di < len(st.deltas) {
		d := st.deltas[st.di]
		switch {
		case !st.have || d.Key < st.peek.Key:
			st.di++
			return d, nil
		case d.Key == st.peek.Key:
			st.di++
			st.have = false
			if d.Version > st.peek.Version {
				return d, nil
			}
			return st.peek, nil
		}
	}
	if st.have {
		st.have = false
		return st.peek, nil
	}
	return record.Record{}, io.EOF
}

// nextBase returns the next record of the base, opening its chunks in turn;
// it sets done after the last.
func (st *SnapshotStream) nextBase() (record.Record, error) {
	for {
		if st.cur == nil {
			if len(st.chunks) == 0 {
				st.done = true
				return record.Record{}, nil
			}
			name := st.chunks[0]
			st.chunks = st.chunks[1:]
			rc, err := openPart(st.ctx, st.p, st.ns, name)
			if err != nil {
				return record.Record{}, err
			}
			sr, err := record.NewSnapshotReader(rc)
			if err == nil && sr.Namespace() != st.ns {
				err = fmt.Errorf("%w: holds the snapshot of %q", record.ErrCorrupt, sr.Namespace())
			}
			if err != nil {
				rc.Close()
				return record.Record{}, fmt.Errorf("snapshot %s part %s: %w", st.ns, name, err)
			}
			st.cur, st.body = sr, rc
		}
		r, err := st.cur.Next()
		if errors.Is(err, io.EOF) {
			st.addKnown(st.cur.Known())
			st.Close()
			continue
		}
		if err != nil {
			return record.Record{}, fmt.Errorf("snapshot %s: %w", st.ns, err)
		}
		if st.any && r.Key <= st.last {
			return record.Record{}, fmt.Errorf("snapshot %s: %w: base chunks out of key order at %q", st.ns, record.ErrCorrupt, r.Key)
		}
		st.any, st.last = true, r.Key
		return r, nil
	}
}
