package chaos

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Mode is how a FaultyStore answers reads.
type Mode int32

// The modes a FaultyStore can be in.
const (
	// Healthy passes every call through.
	Healthy Mode = iota
	// Down fails every read with an error wrapping origin.ErrUnavailable,
	// as an unreachable origin does.
	Down
	// Slow delays every read by the store's SlowDelay (or until the
	// caller's context ends), then answers.
	Slow
	// Corrupt answers reads of records, snapshots and the change log with
	// an error wrapping record.ErrCorrupt, as the stores do for an object
	// that fails its checksum, or (every other read of a record) with a
	// record of another key, which the cache must reject.
	Corrupt
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Healthy:
		return "healthy"
	case Down:
		return "down"
	case Slow:
		return "slow"
	case Corrupt:
		return "corrupt"
	}
	return fmt.Sprintf("mode(%d)", int32(m))
}

// FaultyStore wraps a real origin.Store and injects faults into the reads
// the nodes make (Get, ReadLog, GetSnapshot). Writes pass through untouched:
// faults on the publishers' writes are WriteFaults' job.
//
// A FaultyStore is safe for concurrent use; SetMode takes effect for calls
// that start afterwards (a Slow read in progress keeps waiting).
type FaultyStore struct {
	origin.Store
	// SlowDelay is how long a read waits in Slow mode. Set it before use.
	SlowDelay time.Duration

	mode    atomic.Int32
	faulted atomic.Int64 // reads answered with a fault
	reads   atomic.Int64 // reads seen
}

var _ origin.Store = (*FaultyStore)(nil)

// NewFaultyStore wraps s, healthy, with a 5 s SlowDelay.
func NewFaultyStore(s origin.Store) *FaultyStore {
	return &FaultyStore{Store: s, SlowDelay: 5 * time.Second}
}

// SetMode switches the store to m.
func (f *FaultyStore) SetMode(m Mode) { f.mode.Store(int32(m)) }

// Mode returns the current mode.
func (f *FaultyStore) Mode() Mode { return Mode(f.mode.Load()) }

// Counts returns how many reads the store saw and how many it faulted.
func (f *FaultyStore) Counts() (reads, faulted int64) { return f.reads.Load(), f.faulted.Load() }

// fault applies the current mode to one read of what; a nil error means
// pass the call through.
func (f *FaultyStore) fault(ctx context.Context, what string) error {
	f.reads.Add(1)
	switch f.Mode() {
	case Down:
		f.faulted.Add(1)
		return fmt.Errorf("chaos: %s: %w", what, origin.ErrUnavailable)
	case Slow:
		f.faulted.Add(1)
		t := time.NewTimer(f.SlowDelay)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("chaos: slow %s: %w", what, ctx.Err())
		}
	case Corrupt:
		f.faulted.Add(1)
		return fmt.Errorf("chaos: %s: %w: checksum mismatch", what, record.ErrCorrupt)
	}
	return nil
}

// Get implements origin.Store.
func (f *FaultyStore) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := f.fault(ctx, "get "+ns+"/"+key); err != nil {
		if f.Mode() == Corrupt && f.faulted.Load()%2 == 0 {
			// A well-formed record of the wrong key: what a confused
			// backend or a tampering proxy could send.
			return record.Record{Namespace: ns, Key: key + "-wrong", Value: []byte("garbage"), Version: ^record.Version(0) >> 1}, nil
		}
		return record.Record{}, err
	}
	return f.Store.Get(ctx, ns, key, ifNewer)
}

// ReadLog implements origin.Store.
func (f *FaultyStore) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if err := f.fault(ctx, "read log"); err != nil {
		return nil, err
	}
	return f.Store.ReadLog(ctx, after, limit)
}

// GetSnapshot implements origin.Store.
func (f *FaultyStore) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	if err := f.fault(ctx, "get snapshot "+ns); err != nil {
		return record.Snapshot{}, err
	}
	return f.Store.GetSnapshot(ctx, ns)
}
