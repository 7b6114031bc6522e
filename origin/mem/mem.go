// Package mem is an in-memory origin.Store for unit tests of the logic above
// the origin interface. It is not durable and never the only test of anything
// that talks to a real store.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Store is an in-memory origin.Store, safe for concurrent use.
type Store struct {
	partSnapshots
	mu        sync.Mutex // guards everything below
	records   map[string]record.Record
	log       map[record.ChangeID]record.Change // by value: a Seal pointer may differ per copy
	horizon   record.Version
	snapshots map[string][]byte // by partID
	corrupt   map[string]bool
	pending   map[record.ChangeID]record.Change
}

var (
	_ origin.Store          = (*Store)(nil)
	_ origin.SnapshotParts  = (*Store)(nil)
	_ origin.SnapshotOpener = (*Store)(nil)
	_ origin.Pending        = (*Store)(nil)
)

// New returns an empty Store.
func New() *Store {
	s := &Store{
		records:   make(map[string]record.Record),
		log:       make(map[record.ChangeID]record.Change),
		snapshots: make(map[string][]byte),
		corrupt:   make(map[string]bool),
		pending:   make(map[record.ChangeID]record.Change),
	}
	s.partSnapshots = partSnapshots{Parts: s}
	return s
}

func id(ns, key string) string { return ns + "\x00" + key }

// Get implements origin.Store.
func (s *Store) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := record.ValidateKey(ns, key); err != nil {
		return record.Record{}, err
	}
	if err := ctx.Err(); err != nil {
		return record.Record{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.corrupt[id(ns, key)] {
		return record.Record{}, fmt.Errorf("%s/%s: %w", ns, key, record.ErrCorrupt)
	}
	r, ok := s.records[id(ns, key)]
	if !ok {
		return record.Record{}, fmt.Errorf("%s/%s: %w", ns, key, origin.ErrNotFound)
	}
	if ifNewer != 0 && r.Version <= ifNewer {
		return record.Record{}, origin.ErrNotModified
	}
	r.Value = append([]byte(nil), r.Value...)
	return r, nil
}

// CompareAndSwap implements origin.Store.
func (s *Store) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if err := origin.CheckSwap(rec, prev); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.records[id(rec.Namespace, rec.Key)]
	if cur.Version != prev {
		return fmt.Errorf("%s/%s: stored %s, expected %s: %w", rec.Namespace, rec.Key, cur.Version, prev, origin.ErrConflict)
	}
	rec.Value = append([]byte(nil), rec.Value...)
	s.records[id(rec.Namespace, rec.Key)] = rec
	return nil
}

// AppendLog implements origin.Store.
func (s *Store) AppendLog(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Version >= s.horizon {
		if _, ok := s.log[c.ID()]; !ok {
			s.log[c.ID()] = c
		}
	}
	return nil
}

// ReadLog implements origin.Store.
func (s *Store) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if origin.Truncated(after, s.horizon) {
		return nil, fmt.Errorf("read log after %s, horizon %s: %w", after, s.horizon, origin.ErrLogTruncated)
	}
	var out []record.Change
	for _, c := range s.log {
		if c.Version > after {
			out = append(out, c)
		}
	}
	origin.SortChanges(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// TrimLog implements origin.Store.
func (s *Store) TrimLog(ctx context.Context, before record.Version) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.log {
		if id.Version < before {
			delete(s.log, id)
		}
	}
	if before > s.horizon {
		s.horizon = before
	}
	return nil
}

// partSnapshots gives Store its PutSnapshot, GetSnapshot and OpenSnapshot
// over its snapshot parts (origin.PartSnapshots).
type partSnapshots = origin.PartSnapshots

func partID(ns, name string) string { return ns + "/" + name }

// PutSnapshotPart implements origin.SnapshotParts.
func (s *Store) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots[partID(ns, name)] = append([]byte(nil), b...)
	return nil
}

// GetSnapshotPart implements origin.SnapshotParts.
func (s *Store) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	if err := origin.CheckPartName(ns, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	b, ok := s.snapshots[partID(ns, name)]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("snapshot %s part %q: %w", ns, name, origin.ErrNotFound)
	}
	// Parts are replaced, never changed in place: b can be shared.
	return io.NopCloser(bytes.NewReader(b)), nil
}

// DeleteSnapshotPart implements origin.SnapshotParts.
func (s *Store) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.snapshots, partID(ns, name))
	return nil
}

// CorruptForTest makes the next reads of ns/key fail as a corrupt object
// would, so tests can check that layers above survive corruption.
func (s *Store) CorruptForTest(ns, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[id(ns, key)] = true
}

// PutPending implements origin.Pending.
func (s *Store) PutPending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[c.ID()]; !ok {
		s.pending[c.ID()] = c
	}
	return nil
}

// DeletePending implements origin.Pending.
func (s *Store) DeletePending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, c.ID())
	return nil
}

// ListPending implements origin.Pending.
func (s *Store) ListPending(ctx context.Context, limit int) ([]record.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record.Change
	for _, c := range s.pending {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, c)
	}
	return out, nil
}
