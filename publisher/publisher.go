// Package publisher is the control plane's write path into the dataplane.
//
// A Publisher validates a write, gives it a fresh hybrid logical clock
// version, stores it in the origin with compare-and-swap and appends it to the
// origin's change log (origin.Publish), and then hands the record to a
// Notifier (a gossip node) so the fleet hears of it at once. The change log is
// the backstop: a failed notification is logged and counted but never fails a
// write that is already durable.
//
// Besides single writes the Publisher imports and exports JSON Lines, builds
// the per-namespace snapshots cold nodes load (Snapshot, Run), trims the change
// log behind them, and serves a small authenticated HTTP admin API (Handler).
package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// Notifier spreads a durably written change to the fleet (a gossip node
// satisfies it). Publish is called once per write, after the write is in the
// origin and its change log; it should hand the record off quickly and must
// not keep rec.Value after it returns unless it copies it.
type Notifier interface {
	Publish(ctx context.Context, rec record.Record) error
}

// NotifierFunc adapts a function to a Notifier.
type NotifierFunc func(ctx context.Context, rec record.Record) error

// Publish calls f.
func (f NotifierFunc) Publish(ctx context.Context, rec record.Record) error { return f(ctx, rec) }

// Config configures a Publisher. Start from DefaultConfig and change fields;
// New rejects a bad value with an error naming the field.
type Config struct {
	// Clock hands out versions. Share one Clock between everything in a
	// process that assigns versions (a Publisher and a pgsync.Syncer); nil
	// means a new clock on the wall time.
	Clock *record.Clock
	// Notifier receives every write after it is durable; nil means TTL-only
	// mode: sentinels learn of changes from their cache windows and the
	// change log alone.
	Notifier Notifier
	// NotifyTimeout bounds each Notifier call. Must be positive.
	NotifyTimeout time.Duration
	// Logger receives failures (never values or tokens); nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives the publisher's metrics; nil registers none.
	Registerer prometheus.Registerer
	// SnapshotInterval is how often Run snapshots. Must be positive.
	SnapshotInterval time.Duration
	// Namespaces are snapshotted by Run from the start. Run also snapshots
	// every namespace this Publisher writes and every namespace it finds in
	// the change log while snapshotting.
	Namespaces []string
	// LogRetention is how much change log, measured in version time, Run
	// keeps below the oldest snapshot it maintains, so that a node whose
	// log cursor is a little behind a new snapshot can still follow the log
	// instead of reloading. Zero never trims the log. Trimming forgets the
	// changes of namespaces nobody snapshots: list every namespace written
	// by other publishers in Namespaces.
	LogRetention time.Duration
	// TombstoneHorizon is how long a delete stays in the snapshots: a
	// tombstone whose version is older than this is left out of the next
	// snapshot that rewrites its namespace's base, so deleted keys do not
	// accumulate forever. It must cover LogRetention (a node that can still
	// follow the log reads the delete there) and the longest a node may be
	// absent and still resume from state it kept (a node absent longer
	// reloads the snapshot, where a key that is absent counts as deleted).
	// Zero keeps tombstones forever. Must be zero or at least LogRetention.
	TombstoneHorizon time.Duration
	// SnapshotLayout says how a snapshot is cut into objects in a store
	// that supports origin.SnapshotParts (each pass then writes only the
	// records changed since the previous one); the zero value means
	// origin.DefaultLayout().
	SnapshotLayout origin.Layout
	// Schemas validates every value before it is written (Put, PutVersion,
	// Import): a value its namespace's Validator refuses fails with an
	// error wrapping schema.ErrInvalid (and so record.ErrInvalid) and
	// nothing is written. Nil means schema.Builtin(): routes and keys are
	// checked. schema.NewRegistry() checks nothing.
	Schemas *schema.Registry
}

// DefaultConfig returns the configuration a control plane starts from:
// notifications bounded to 2 s, snapshots every minute, a day of change log
// kept behind the snapshots, deletes kept in the snapshots for a week.
func DefaultConfig() Config {
	return Config{
		NotifyTimeout:    2 * time.Second,
		SnapshotInterval: time.Minute,
		LogRetention:     24 * time.Hour,
		TombstoneHorizon: 7 * 24 * time.Hour,
	}
}

func (c *Config) validate() error {
	if c.NotifyTimeout <= 0 {
		return fmt.Errorf("publisher: NotifyTimeout must be positive, got %v", c.NotifyTimeout)
	}
	if c.SnapshotInterval <= 0 {
		return fmt.Errorf("publisher: SnapshotInterval must be positive, got %v", c.SnapshotInterval)
	}
	if c.LogRetention < 0 {
		return fmt.Errorf("publisher: LogRetention must not be negative, got %v", c.LogRetention)
	}
	if c.TombstoneHorizon < 0 || c.TombstoneHorizon > 0 && c.TombstoneHorizon < c.LogRetention {
		return fmt.Errorf("publisher: TombstoneHorizon must be zero or at least LogRetention (%v), got %v", c.LogRetention, c.TombstoneHorizon)
	}
	for _, ns := range c.Namespaces {
		if err := record.ValidateNamespace(ns); err != nil {
			return fmt.Errorf("publisher: Namespaces: %w", err)
		}
	}
	return nil
}

// Publisher writes records into an origin. It is safe for concurrent use.
type Publisher struct {
	store   origin.Store
	clock   *record.Clock
	notify  Notifier
	timeout time.Duration
	log     *slog.Logger
	m       *metrics
	cfg     Config

	// snapMu serializes snapshot passes, so two never race to write one
	// namespace's snapshot.
	snapMu sync.Mutex

	mu   sync.Mutex // guards seen
	seen map[string]bool
}

// New returns a Publisher writing into store.
func New(store origin.Store, cfg Config) (*Publisher, error) {
	if store == nil {
		return nil, errors.New("publisher: nil origin store")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = record.NewClock(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Schemas == nil {
		cfg.Schemas = schema.Builtin()
	}
	p := &Publisher{
		store:   store,
		clock:   cfg.Clock,
		notify:  cfg.Notifier,
		timeout: cfg.NotifyTimeout,
		log:     cfg.Logger.With("component", "publisher"),
		m:       newMetrics(),
		cfg:     cfg,
		seen:    make(map[string]bool),
	}
	for _, ns := range cfg.Namespaces {
		p.seen[ns] = true
	}
	if cfg.Registerer != nil {
		if err := p.m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Store returns the origin the publisher writes to.
func (p *Publisher) Store() origin.Store { return p.store }

// freshAttempts bounds how often Put and Delete retry with a newer version
// when the origin holds a version from a clock that runs ahead of ours.
const freshAttempts = 3

// Put makes value the state of ns/key under a fresh version and returns the
// stored record. It fails only if the record is invalid (wrapping
// record.ErrInvalid; schema.ErrInvalid when Config.Schemas refuses the
// value) or the origin write fails; a failed notification does
// not fail it.
func (p *Publisher) Put(ctx context.Context, ns, key string, value []byte) (record.Record, error) {
	if err := p.checkSchema(record.Record{Namespace: ns, Key: key, Value: value}); err != nil {
		return record.Record{}, err
	}
	return p.writeFresh(ctx, record.Record{Namespace: ns, Key: key, Value: value}, "put")
}

// Delete writes a tombstone for ns/key under a fresh version, whether or not
// the key exists, and returns it. A tombstone carries a version like any
// write, so a late message can never bring the record back.
func (p *Publisher) Delete(ctx context.Context, ns, key string) (record.Record, error) {
	return p.writeFresh(ctx, record.Record{Namespace: ns, Key: key, Tombstone: true}, "delete")
}

func (p *Publisher) writeFresh(ctx context.Context, rec record.Record, op string) (record.Record, error) {
	if err := record.ValidateKey(rec.Namespace, rec.Key); err != nil {
		p.m.rejected.Inc()
		return record.Record{}, err
	}
	for attempt := 1; ; attempt++ {
		rec.Version = p.clock.Now()
		if err := rec.Validate(); err != nil {
			p.m.rejected.Inc()
			return record.Record{}, err
		}
		_, err := origin.Publish(ctx, p.store, rec)
		if errors.Is(err, origin.ErrStale) && attempt < freshAttempts {
			// Another publisher's clock is ahead of ours: learn its
			// version and write above it, as a hybrid logical clock does.
			if cur, gerr := p.store.Get(ctx, rec.Namespace, rec.Key, 0); gerr == nil {
				p.clock.Observe(cur.Version)
			}
			continue
		}
		if err != nil {
			p.m.errors.Inc()
			return record.Record{}, err
		}
		p.wrote(ctx, rec, op)
		return rec, nil
	}
}

// PutVersion stores rec with the version the caller chose: the outbox sync
// derives versions from its rows so that republishing a row after a crash
// changes nothing. Storing a version that is already stored is a success
// with written=false: the change log entry and the notification are repeated
// (either may have been lost by the crash), the record is not. A version
// older than the stored one fails with an error wrapping origin.ErrStale; a
// value Config.Schemas refuses, with one wrapping schema.ErrInvalid, and
// nothing is written.
func (p *Publisher) PutVersion(ctx context.Context, rec record.Record) (written bool, err error) {
	if err := rec.Validate(); err != nil {
		p.m.rejected.Inc()
		return false, err
	}
	if err := p.checkSchema(rec); err != nil {
		return false, err
	}
	p.clock.Observe(rec.Version)
	written, err = origin.Publish(ctx, p.store, rec)
	if errors.Is(err, origin.ErrStale) {
		p.m.stale.Inc()
		return false, err
	}
	if err != nil {
		p.m.errors.Inc()
		return false, err
	}
	op := "put"
	if rec.Tombstone {
		op = "delete"
	}
	if written {
		p.wrote(ctx, rec, op)
	} else {
		p.m.unchanged.Inc()
		p.notifyFleet(ctx, rec)
	}
	return written, nil
}

// Get returns the stored record of ns/key, which may be a tombstone. A key
// never written yields an error wrapping origin.ErrNotFound.
func (p *Publisher) Get(ctx context.Context, ns, key string) (record.Record, error) {
	return p.store.Get(ctx, ns, key, 0)
}

// wrote counts a write, remembers its namespace for snapshots and notifies.
func (p *Publisher) wrote(ctx context.Context, rec record.Record, op string) {
	p.m.writes.WithLabelValues(op).Inc()
	p.mu.Lock()
	p.seen[rec.Namespace] = true
	p.mu.Unlock()
	p.notifyFleet(ctx, rec)
}

// notifyFleet hands rec to the Notifier. The write is already durable, so
// the call gets its own deadline even if the caller's context ends, and a
// failure (or a panic in the Notifier) is logged and counted, never returned.
func (p *Publisher) notifyFleet(ctx context.Context, rec record.Record) {
	if p.notify == nil {
		return
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("notifier panicked: %v", r)
			}
		}()
		return p.notify.Publish(nctx, rec)
	}()
	if err != nil {
		p.m.notifyErrors.Inc()
		p.log.Warn("notify failed; the change log will carry the change",
			"namespace", rec.Namespace, "key", rec.Key, "version", rec.Version.String(), "err", err)
	}
}
