package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// OriginCounts are the origin requests of one kind of client (sentinels,
// cache nodes or the publisher), by operation. Failed calls are counted in
// Errors only.
type OriginCounts struct {
	// Gets are reads answered with a record (a full GET).
	Gets int64 `json:"gets"`
	// NotModified are conditional reads answered "not modified" (S3: a
	// 304; DynamoDB has no conditional read, so it is a full GetItem).
	NotModified int64 `json:"not_modified"`
	// NotFound are reads of a key the origin does not hold.
	NotFound int64 `json:"not_found"`
	// LogReads are reads of the change log (S3: a LIST plus a GET of the
	// horizon; DynamoDB: Query calls).
	LogReads int64 `json:"log_reads"`
	// SnapshotReads are snapshot loads.
	SnapshotReads int64 `json:"snapshot_reads"`
	// Writes are compare-and-swap writes of a record.
	Writes int64 `json:"writes"`
	// LogAppends are change log appends.
	LogAppends int64 `json:"log_appends"`
	// SnapshotWrites are snapshot writes (and log trims).
	SnapshotWrites int64 `json:"snapshot_writes"`
	// Errors are calls that failed (outage, partition, conflict).
	Errors int64 `json:"errors"`
	// ReadBytes is the size of the values read by Gets (for DynamoDB's read
	// units, which are charged by item size).
	ReadBytes int64 `json:"read_bytes"`
	// SnapshotBytes is the size of the snapshots read.
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// WriteBytes is the size of the values written.
	WriteBytes int64 `json:"write_bytes"`
	// ReadUnits4K counts DynamoDB-style read units: each record read costs
	// one per started 4 KiB of item (value plus about 100 bytes of key and
	// attributes), each not-modified or not-found answer and each log read
	// one, each snapshot read one per started 4 KiB.
	ReadUnits4K int64 `json:"read_units_4k"`
	// WriteUnits1K counts DynamoDB-style write units: one per started KiB
	// of each record written, one per log append and per KiB of snapshot.
	WriteUnits1K int64 `json:"write_units_1k"`
}

// Reads is every read request: gets, not-modified and not-found answers,
// log reads and snapshot reads.
func (c OriginCounts) Reads() int64 {
	return c.Gets + c.NotModified + c.NotFound + c.LogReads + c.SnapshotReads
}

func (c *OriginCounts) add(o OriginCounts) {
	c.Gets += o.Gets
	c.NotModified += o.NotModified
	c.NotFound += o.NotFound
	c.LogReads += o.LogReads
	c.SnapshotReads += o.SnapshotReads
	c.Writes += o.Writes
	c.LogAppends += o.LogAppends
	c.SnapshotWrites += o.SnapshotWrites
	c.Errors += o.Errors
	c.ReadBytes += o.ReadBytes
	c.SnapshotBytes += o.SnapshotBytes
	c.WriteBytes += o.WriteBytes
	c.ReadUnits4K += o.ReadUnits4K
	c.WriteUnits1K += o.WriteUnits1K
}

// itemOverhead approximates the bytes of a stored item besides its value.
const itemOverhead = 100

func units(bytes, per int) int64 { return int64((bytes + itemOverhead + per - 1) / per) }

// counter is shared by every countingStore of one role.
type counter struct {
	gets, notMod, notFound, logReads, snapReads atomic.Int64
	writes, appends, snapWrites, errs           atomic.Int64
	readBytes, snapBytes, writeBytes            atomic.Int64
	readUnits, writeUnits                       atomic.Int64 // DynamoDB-style units, see units
	timeline                                    *timeline    // nil: not charted
}

func (c *counter) snapshot() OriginCounts {
	return OriginCounts{
		Gets: c.gets.Load(), NotModified: c.notMod.Load(), NotFound: c.notFound.Load(),
		LogReads: c.logReads.Load(), SnapshotReads: c.snapReads.Load(),
		Writes: c.writes.Load(), LogAppends: c.appends.Load(), SnapshotWrites: c.snapWrites.Load(),
		Errors: c.errs.Load(), ReadBytes: c.readBytes.Load(), SnapshotBytes: c.snapBytes.Load(),
		WriteBytes:  c.writeBytes.Load(),
		ReadUnits4K: c.readUnits.Load(), WriteUnits1K: c.writeUnits.Load(),
	}
}

func (c *counter) read() {
	if c.timeline != nil {
		c.timeline.add(time.Now())
	}
}

// timeline counts events per second since start, for the origin-reads chart.
type timeline struct {
	start  time.Time
	mu     sync.Mutex // guards perSec
	perSec []int64
}

func (t *timeline) add(at time.Time) {
	s := int(at.Sub(t.start) / time.Second)
	if s < 0 {
		return
	}
	t.mu.Lock()
	for len(t.perSec) <= s {
		t.perSec = append(t.perSec, 0)
	}
	t.perSec[s]++
	t.mu.Unlock()
}

func (t *timeline) values() []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int64(nil), t.perSec...)
}

// countingStore is an origin.Store that counts the calls it passes to the
// real store.
type countingStore struct {
	origin.Store
	c *counter
}

var _ origin.Store = countingStore{}

// Get implements origin.Store.
func (s countingStore) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	rec, err := s.Store.Get(ctx, ns, key, ifNewer)
	switch {
	case err == nil:
		s.c.gets.Add(1)
		s.c.readBytes.Add(int64(len(rec.Value)))
		s.c.readUnits.Add(units(len(rec.Value), 4096))
		s.c.read()
	case errors.Is(err, origin.ErrNotModified):
		s.c.notMod.Add(1)
		s.c.readUnits.Add(1)
		s.c.read()
	case errors.Is(err, origin.ErrNotFound):
		s.c.notFound.Add(1)
		s.c.readUnits.Add(1)
		s.c.read()
	default:
		s.c.errs.Add(1)
	}
	return rec, err
}

// CompareAndSwap implements origin.Store.
func (s countingStore) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	err := s.Store.CompareAndSwap(ctx, rec, prev)
	if err != nil {
		s.c.errs.Add(1)
	} else {
		s.c.writes.Add(1)
		s.c.writeBytes.Add(int64(len(rec.Value)))
		s.c.writeUnits.Add(units(len(rec.Value), 1024))
	}
	return err
}

// AppendLog implements origin.Store.
func (s countingStore) AppendLog(ctx context.Context, c record.Change) error {
	err := s.Store.AppendLog(ctx, c)
	s.count(err, &s.c.appends)
	if err == nil {
		s.c.writeUnits.Add(1)
	}
	return err
}

// ReadLog implements origin.Store.
func (s countingStore) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	cs, err := s.Store.ReadLog(ctx, after, limit)
	if err == nil || errors.Is(err, origin.ErrLogTruncated) {
		s.c.logReads.Add(1)
		s.c.readUnits.Add(1)
		s.c.read()
	} else {
		s.c.errs.Add(1)
	}
	return cs, err
}

// TrimLog implements origin.Store.
func (s countingStore) TrimLog(ctx context.Context, before record.Version) error {
	err := s.Store.TrimLog(ctx, before)
	s.count(err, &s.c.snapWrites)
	return err
}

// PutSnapshot implements origin.Store.
func (s countingStore) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	err := s.Store.PutSnapshot(ctx, snap)
	s.count(err, &s.c.snapWrites)
	if err == nil {
		size := 0
		for _, r := range snap.Records {
			size += len(r.Value) + len(r.Key) + 24
		}
		s.c.writeUnits.Add(units(size, 1024))
	}
	return err
}

// GetSnapshot implements origin.Store.
func (s countingStore) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	snap, err := s.Store.GetSnapshot(ctx, ns)
	if err == nil || errors.Is(err, origin.ErrNotFound) {
		s.c.snapReads.Add(1)
		s.c.read()
		size := 0
		for _, r := range snap.Records {
			size += len(r.Value) + len(r.Key) + 24
		}
		s.c.snapBytes.Add(int64(size))
		s.c.readUnits.Add(units(size, 4096))
	} else {
		s.c.errs.Add(1)
	}
	return snap, err
}

func (s countingStore) count(err error, ok *atomic.Int64) {
	if err != nil {
		s.c.errs.Add(1)
	} else {
		ok.Add(1)
	}
}
