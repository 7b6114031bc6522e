package publisher_test

import (
	"context"
	"sync/atomic"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// countingStore is a mem store that counts the snapshot bytes written into
// it: every part, chunk, delta and manifest.
type countingStore struct {
	*mem.Store
	written atomic.Int64
}

func newCountingStore() *countingStore { return &countingStore{Store: mem.New()} }

func (s *countingStore) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	s.written.Add(int64(len(b)))
	return s.Store.PutSnapshotPart(ctx, ns, name, b)
}

func (s *countingStore) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	return origin.WriteSnapshot(ctx, s, snap, origin.DefaultLayout())
}

func (s *countingStore) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	return origin.ReadSnapshot(ctx, s, ns)
}
