package origintest

import (
	"context"
	"sync/atomic"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// WriteCounter is an origin.Store that counts the calls that change the
// store (CompareAndSwap, AppendLog, TrimLog, PutSnapshot) before it passes
// them on, so that a test can assert that a refused request wrote nothing.
// Only the methods of origin.Store reach Store: optional capabilities
// (snapshot parts, pending notes) are hidden.
type WriteCounter struct {
	origin.Store
	// Writes counts the mutating calls made so far.
	Writes atomic.Int64
}

var _ origin.Store = (*WriteCounter)(nil)

// CompareAndSwap implements origin.Store.
func (w *WriteCounter) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	w.Writes.Add(1)
	return w.Store.CompareAndSwap(ctx, rec, prev)
}

// AppendLog implements origin.Store.
func (w *WriteCounter) AppendLog(ctx context.Context, c record.Change) error {
	w.Writes.Add(1)
	return w.Store.AppendLog(ctx, c)
}

// TrimLog implements origin.Store.
func (w *WriteCounter) TrimLog(ctx context.Context, before record.Version) error {
	w.Writes.Add(1)
	return w.Store.TrimLog(ctx, before)
}

// PutSnapshot implements origin.Store.
func (w *WriteCounter) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	w.Writes.Add(1)
	return w.Store.PutSnapshot(ctx, snap)
}
