// Package replica models a regional replica of an origin for tests and the
// benchmark: a second real store (a directory, an S3 bucket, a DynamoDB
// table) fed from the primary by a Replicator with a configurable lag and
// loss, as DynamoDB Global Tables or S3 cross-region replication feed a
// region's copy. Sentinels of a region read their replica; publishers write
// to the primary only.
//
// A replica's change log receives each entry up to Lag (plus the pass
// interval, plus retries after a loss) after the primary's, so readers of a
// replica must settle that much further behind the log: origin.Timing's
// ReplicaLag.
package replica

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Config shapes the replication.
type Config struct {
	// Lag is how long after the replicator first sees a change in the
	// primary's log it copies it (the replication delay). Not negative.
	Lag time.Duration
	// Loss is the probability, in [0, 1), that copying one change fails
	// on a pass; it is tried again on the next (replication retries, it
	// does not forget).
	Loss float64
	// Interval is how often Run makes a pass; must be positive.
	Interval time.Duration
	// Seed seeds the loss draws.
	Seed uint64
	// After is where the replicator starts reading the primary's log: 0
	// copies every change the log holds; a replica loaded up to version V
	// by other means starts after V.
	After record.Version
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig replicates with a 1 s lag, no loss, passes every 50 ms.
func DefaultConfig() Config {
	return Config{Lag: time.Second, Interval: 50 * time.Millisecond}
}

func (c *Config) validate() error {
	if c.Lag < 0 {
		return fmt.Errorf("replica: Lag %s must not be negative", c.Lag)
	}
	if c.Loss < 0 || c.Loss >= 1 {
		return fmt.Errorf("replica: Loss %v not in [0, 1)", c.Loss)
	}
	if c.Interval <= 0 {
		return fmt.Errorf("replica: Interval %s must be positive", c.Interval)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Replicator copies the primary's changes (record, then log entry) into
// the replica. Safe for concurrent use; one Run at a time.
type Replicator struct {
	primary, replica origin.Store
	cfg              Config

	mu     sync.Mutex // guards rng, seen, cursor
	rng    *rand.Rand
	seen   map[record.ChangeID]time.Time // changes read, not yet copied: when first seen (by value: a Seal pointer differs per read)
	cursor record.Version                // the primary's log is read after this

	copied atomic.Int64
	lost   atomic.Int64
}

// New returns a Replicator from primary to replica.
func New(primary, replica origin.Store, cfg Config) (*Replicator, error) {
	if primary == nil || replica == nil {
		return nil, errors.New("replica: nil store")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Replicator{
		primary: primary, replica: replica, cfg: cfg,
		rng:    rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		seen:   make(map[record.ChangeID]time.Time),
		cursor: cfg.After,
	}, nil
}

// Counts returns how many changes were copied and how many copy attempts
// were lost (and retried).
func (r *Replicator) Counts() (copied, lost int64) { return r.copied.Load(), r.lost.Load() }

// Run makes a pass every Interval until ctx ends, then returns nil.
func (r *Replicator) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		_, _ = r.Pass(ctx) // a failed pass is retried on the next
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass reads the primary's new log entries and copies every change seen at
// least Lag ago that is not lost this time: the primary's current record of
// the key (if the replica holds an older one), then the log entry. It
// returns how many changes it copied.
func (r *Replicator) Pass(ctx context.Context) (int, error) {
	r.mu.Lock()
	after := r.cursor
	r.mu.Unlock()
	cs, err := r.primary.ReadLog(ctx, after, 0)
	if errors.Is(err, origin.ErrLogTruncated) {
		// Trimmed past us: what was trimmed is in the records; keep going
		// from now (a real replica copies every item write anyway).
		cs, err = r.primary.ReadLog(ctx, 0, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("replica: read primary log: %w", err)
	}
	now := r.cfg.Now()
	r.mu.Lock()
	for _, c := range cs {
		if _, ok := r.seen[c.ID()]; !ok {
			r.seen[c.ID()] = now
		}
		if c.Version > r.cursor {
			r.cursor = c.Version
		}
	}
	var due []record.Change
	for id, at := range r.seen {
		if now.Sub(at) < r.cfg.Lag {
			continue
		}
		if r.cfg.Loss > 0 && r.rng.Float64() < r.cfg.Loss {
			r.lost.Add(1)
			continue
		}
		due = append(due, id.Change())
	}
	r.mu.Unlock()
	origin.SortChanges(due)
	n := 0
	var errs []error
	for _, c := range due {
		if err := r.copy(ctx, c); err != nil {
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		delete(r.seen, c.ID())
		r.mu.Unlock()
		r.copied.Add(1)
		n++
	}
	return n, errors.Join(errs...)
}

// copy brings c's key in the replica up to the primary's current record
// (never down), then appends c to the replica's log.
func (r *Replicator) copy(ctx context.Context, c record.Change) error {
	cur, err := r.primary.Get(ctx, c.Namespace, c.Key, 0)
	if err != nil {
		return fmt.Errorf("replica: read primary %s/%s: %w", c.Namespace, c.Key, err)
	}
	for attempt := 0; attempt < 8; attempt++ {
		var prev record.Version
		have, err := r.replica.Get(ctx, c.Namespace, c.Key, 0)
		switch {
		case err == nil:
			prev = have.Version
		case errors.Is(err, origin.ErrNotFound):
		default:
			return fmt.Errorf("replica: read replica %s/%s: %w", c.Namespace, c.Key, err)
		}
		if prev >= cur.Version {
			break
		}
		err = r.replica.CompareAndSwap(ctx, cur, prev)
		if errors.Is(err, origin.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("replica: write %s/%s: %w", c.Namespace, c.Key, err)
		}
		break
	}
	if err := r.replica.AppendLog(ctx, c); err != nil {
		return fmt.Errorf("replica: append log %s/%s: %w", c.Namespace, c.Key, err)
	}
	return nil
}
