// Package publisher is the control plane's write path into the dataplane.
//
// A Publisher validates a write, gives it a fresh hybrid logical clock
// version, stores it in the origin with compare-and-swap and appends it to the
// origin's change log (origin.Publish), and then hands the record to a
// Notifier (a gossip node) so the fleet hears of it at once. The change log is
// the backstop: a failed notification is logged and counted but never fails a
// write that is already durable. A write is acknowledged only once it is in
// the change log within Config.Timing.PublishBudget of taking its version (the rule
// of origin.Timing that log readers rely on): an attempt that overruns it is
// published again under a fresh version, and Repair (RunRepair) finishes
// writes a crash left between the compare-and-swap and the log.
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
	"github.com/dataplane/dataplane/sign"
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
	// change log alone. Each call is bounded by twice
	// Timing.PublishBudget (2 s by default): the change log carries a
	// change whose notification is cut short.
	Notifier Notifier
	// Signer, when set, signs every record this Publisher writes (Put,
	// Delete, PutVersion, Import, Repair), after its version is fixed
	// and again under every fresh version, so the record in the origin,
	// its change log entry and what the Notifier spreads all carry the
	// same record.Seal. Nodes configured with the matching public key
	// (dataplane.Config.Verifier) refuse anything else. Nil: records are
	// written unsigned. The key is never logged.
	Signer *sign.Signer
	// Trusted, when set, is what a signing publisher believes of what it
	// reads back from the origin: the keys its nodes trust (the same as
	// their dataplane.Config.Verifier, every key of a rotation). A record
	// or change-log entry not signed by one of them (a bucket writer's
	// forgery) is left out of the snapshots it writes and of the state its
	// checkpoints sign, as the nodes leave it out. Nil with a Signer: the
	// Signer's own key alone.
	Trusted *sign.Verifier
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
	// TombstoneHorizon is how long a delete stays in the snapshots: a
	// tombstone whose version is older than this is left out of the next
	// snapshot that rewrites its namespace's base, so deleted keys do not
	// accumulate forever. It must cover Timing.LogRetention (a node that can still
	// follow the log reads the delete there) and the longest a node may be
	// absent and still resume from state it kept (a node absent longer
	// reloads the snapshot, where a key that is absent counts as deleted).
	// Zero keeps tombstones forever. Must be zero or at least
	// Timing.LogRetention.
	TombstoneHorizon time.Duration
	// Schemas validates every value before it is written (Put, PutVersion,
	// Import): a value its namespace's Validator refuses fails with an
	// error wrapping schema.ErrInvalid (and so record.ErrInvalid) and
	// nothing is written. Nil means schema.Builtin(): routes and keys are
	// checked. schema.NewRegistry() checks nothing.
	Schemas *schema.Registry
	// IssueCheckpoints turns on the signed namespace checkpoints this
	// publisher issues (package checkpoint, DESIGN decision 11;
	// RunCheckpoints, which Run runs) and the proofs of the snapshots it
	// writes; Signer must be set. Each checkpoint is valid for
	// Timing.CheckpointLifetime (its ExpiresAt is its IssuedAt plus that):
	// a namespace gets one every Timing.LogInterval while it changes (at
	// most every second, at least four times a lifetime), and a new one
	// before half of the lifetime has passed when it does not. False
	// issues none.
	IssueCheckpoints bool
	// Timing holds the timing constants this publisher shares with the
	// nodes that read its origin (give them the same value): its
	// PublishBudget (the longest a write may take from taking its version
	// to having its change-log entry appended; a write that overruns it is
	// retried under a fresh version, one that overruns it 5 times
	// (publishAttempts) is not acknowledged), ClockSkew (also the bound of
	// this host's clock against the origin's: before it takes versions,
	// and then at most every 30 s, a publisher reads the origin's time when
	// the origin can tell it, S3 and DynamoDB; when its own clock is
	// provably further off, every write fails with an error wrapping
	// ErrClockOffset and nothing is written; the origin's time has
	// one-second resolution and may be cached for a second more, counted in
	// the clock's favour), LogInterval (how often the checkpoint issuer
	// reads the change log, at most every second; RunRepair looks for
	// publishes that crashed between their record write and their log
	// append every 2 LogInterval, 10 s by default), LogSettle (the
	// smallest of any reader), SnapshotLag (how far behind the clock a
	// snapshot's version is kept), LogRetention (how much change log, in
	// version time, Run keeps below the oldest snapshot it maintains, so
	// that a node whose log cursor is a little behind a new snapshot can
	// still follow the log; zero never trims; trimming forgets the changes
	// of namespaces nobody snapshots: list every namespace written by
	// other publishers in Namespaces), ReplicaLag and CheckpointLifetime
	// (how long an issued checkpoint is valid). New refuses a set that
	// breaks a rule of origin.Timing.Validate. The zero value means
	// origin.DefaultTiming().
	Timing origin.Timing

	// layout is how a snapshot is cut into objects in a store that
	// supports origin.SnapshotParts (each pass then writes only the records
	// changed since the previous one); the zero value means
	// origin.DefaultLayout(). Tests set it (export_test.go).
	layout origin.Layout
	// noClockCheck turns the check of this host's clock against the
	// origin's off, for tests whose clock is off on purpose.
	noClockCheck bool
}

// publishAttempts is how many versions a write may try before it fails
// for overrunning Timing.PublishBudget.
const publishAttempts = 5

// notifyTimeout bounds each Notifier call: twice the time a write may take
// to reach the change log.
func (c *Config) notifyTimeout() time.Duration { return 2 * c.Timing.PublishBudget }

// repairInterval is how often RunRepair runs the repair pass: every two
// change-log reads of the nodes.
func (c *Config) repairInterval() time.Duration {
	if c.Timing.LogInterval <= 0 {
		return 2 * origin.DefaultTiming().LogInterval
	}
	return 2 * c.Timing.LogInterval
}

// DefaultConfig returns the configuration a control plane starts from:
// snapshots every minute, deletes kept in the snapshots for a week, and
// origin.DefaultTiming (a write in the log within 1 s of taking its
// version for readers that settle 2 s behind with clocks within 250 ms, a
// day of change log kept behind the snapshots; so notifications bounded to
// 2 s and a crash repair pass every 10 s).
func DefaultConfig() Config {
	return Config{
		SnapshotInterval: time.Minute,
		TombstoneHorizon: 7 * 24 * time.Hour,
		Timing:           origin.DefaultTiming(),
	}
}

func (c *Config) validate() error {
	if c.SnapshotInterval <= 0 {
		return fmt.Errorf("publisher: SnapshotInterval must be positive, got %v", c.SnapshotInterval)
	}
	if c.Timing == (origin.Timing{}) {
		c.Timing = origin.DefaultTiming()
	}
	if err := c.Timing.Validate(); err != nil {
		return fmt.Errorf("publisher: Config.Timing: %w", err)
	}
	if c.TombstoneHorizon < 0 || c.TombstoneHorizon > 0 && c.TombstoneHorizon < c.Timing.LogRetention {
		return fmt.Errorf("publisher: TombstoneHorizon must be zero or at least Timing.LogRetention (%v), got %v", c.Timing.LogRetention, c.TombstoneHorizon)
	}
	if err := c.validateCheckpoints(); err != nil {
		return err
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

	clockCheck clockCheck

	ckpt *issuer // nil: no checkpoints (Config.IssueCheckpoints)

	// trusted checks what the publisher reads back (Config.Trusted, or
	// the Signer's key); nil: it trusts the origin.
	trusted *sign.Verifier

	// acks are the writes acknowledged (with a Signer), for the checks
	// that the change log keeps them (RunAckCheck, RunCheckpoints).
	acks acks
}

// distrusts checks a change-log entry read back from the origin against
// the trusted keys, as a verifying node's log follower does (a tombstone
// as a record, any other change by its seal): nil when it passes or the
// publisher checks nothing, else why it fails, logged.
func (p *Publisher) distrusts(c record.Change) error {
	if p.trusted == nil {
		return nil
	}
	var err error
	if c.Tombstone {
		err = p.trusted.VerifyRecord(record.Record{Namespace: c.Namespace, Key: c.Key, Version: c.Version, Tombstone: true, Seal: c.Seal})
	} else {
		err = p.trusted.VerifyChange(c)
	}
	if err != nil {
		p.log.Warn("origin holds a change not signed by a trusted key; left out", "namespace", c.Namespace, "key", c.Key, "version", c.Version.String(), "reason", sign.Reason(err))
	}
	return err
}

// distrustsRecord is distrusts for a record read back from the origin.
func (p *Publisher) distrustsRecord(r record.Record) error {
	if p.trusted == nil {
		return nil
	}
	err := p.trusted.VerifyRecord(r)
	if err != nil {
		p.log.Warn("origin holds a record not signed by a trusted key; left out of the snapshot", "namespace", r.Namespace, "key", r.Key, "version", r.Version.String(), "reason", sign.Reason(err))
	}
	return err
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
		timeout: cfg.notifyTimeout(),
		log:     cfg.Logger.With("component", "publisher"),
		m:       newMetrics(),
		cfg:     cfg,
		seen:    make(map[string]bool),
	}
	for _, ns := range cfg.Namespaces {
		p.seen[ns] = true
	}
	if p.trusted = cfg.Trusted; p.trusted == nil && cfg.Signer != nil {
		var err error
		if p.trusted, err = sign.NewVerifier(cfg.Signer.Public()); err != nil {
			return nil, err
		}
	}
	if cfg.Registerer != nil {
		if err := p.m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	if cfg.IssueCheckpoints {
		var err error
		if p.ckpt, err = newIssuer(p); err != nil {
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
	if err := p.checkClock(ctx); err != nil {
		p.m.errors.Inc()
		return record.Record{}, err
	}
	for attempt := 1; ; attempt++ {
		rec.Version = p.clock.Now()
		if err := rec.Validate(); err != nil {
			p.m.rejected.Inc()
			return record.Record{}, err
		}
		stored, _, err := p.commit(ctx, rec, 0, true)
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
		p.wrote(ctx, stored, op)
		return stored, nil
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
//
// A version whose time is more than Config.Timing.PublishBudget ago (a republish
// after a crash, an import of old versions) can no longer be appended to
// the log where readers look: the value is then published again under a
// fresh version above it (see commit), so the origin holds a version newer
// than rec.Version with rec's value, and written reports that write.
func (p *Publisher) PutVersion(ctx context.Context, rec record.Record) (written bool, err error) {
	if err := rec.Validate(); err != nil {
		p.m.rejected.Inc()
		return false, err
	}
	if err := p.checkSchema(rec); err != nil {
		return false, err
	}
	if err := p.checkClock(ctx); err != nil {
		p.m.errors.Inc()
		return false, err
	}
	p.clock.Observe(rec.Version)
	stored, written, err := p.commit(ctx, rec, 0, false)
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
		p.wrote(ctx, stored, op)
	} else {
		p.m.unchanged.Inc()
		p.notifyFleet(ctx, stored)
	}
	return written, nil
}

// ErrBudget means a write could not reach the change log within
// Config.Timing.PublishBudget under any of publishAttempts versions, so it is
// not acknowledged. The origin may hold it (or hold it later): the repair
// pass (Repair) then publishes it again under a fresh version.
var ErrBudget = errors.New("publish overran its settle budget")

// commit stores rec and appends it to the change log within the publish
// budget, or does not acknowledge it. This enforces the rule documented on
// origin.Timing:
//
//   - before the compare-and-swap a Pending note of the change is written
//     (when the store keeps notes), and it is removed only once the write is
//     acknowledged, so a crash at any later step leaves a note for Repair;
//   - each attempt runs under a deadline of its version's time plus
//     PublishBudget; an attempt that fails that deadline, or returns after
//     it, may have left a log entry readers skipped, so the value is
//     published again under a fresh version (a "restamp") whose log entry
//     is in time; readers apply by version, so the late entry is harmless;
//   - a restamp writes only over rec.Version itself, an older version or
//     one of its own earlier attempts: finding a version newer than all of
//     them means another write superseded this one, reported as
//     origin.ErrStale as if it had been found at once.
//
// over is 0 for a new write; Repair passes the stored version it publishes
// again, and then every attempt is a restamp over it.
//
// It returns the record as finally stored (its version may be newer than
// rec.Version) and whether a compare-and-swap of this call wrote it.
//
// fresh says rec.Version was just taken from p.clock.
func (p *Publisher) commit(ctx context.Context, rec record.Record, over record.Version, fresh bool) (record.Record, bool, error) {
	pend, _ := p.store.(origin.Pending)
	var notes []record.Change // noted by this call; removed once acknowledged
	ours := make(map[record.Version]bool, publishAttempts)
	first := over
	if first == 0 {
		first = rec.Version
	}
	written := false
	var last error
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		if attempt > 1 {
			rec.Version = p.clock.Now()
			p.m.restamps.Inc()
		}
		if p.cfg.Signer != nil {
			rec = p.cfg.Signer.Sign(rec)
		}
		ours[rec.Version] = true
		// The budget runs from when the version was taken: now for a
		// version of ours, the version's own time for one brought by the
		// caller (PutVersion), if that is earlier, since only the caller
		// knows when it took it.
		taken := time.Now()
		if attempt == 1 && over == 0 && !fresh {
			taken = earliest(taken, rec.Version.Time())
		}
		deadline := taken.Add(p.cfg.Timing.PublishBudget)
		actx, cancel := context.WithDeadline(ctx, deadline)
		var (
			w   bool
			err error
		)
		if pend != nil {
			if err = pend.PutPending(actx, rec.Change()); err != nil {
				err = fmt.Errorf("publish %s/%s: note pending: %w", rec.Namespace, rec.Key, err)
			} else {
				notes = append(notes, rec.Change())
			}
		}
		if err == nil {
			if attempt == 1 && over == 0 {
				w, err = origin.Publish(actx, p.store, rec)
			} else {
				w, err = p.restamp(actx, rec, first, ours)
			}
		}
		cancel()
		late := time.Now().After(deadline)
		if err == nil && !late {
			p.clearNotes(ctx, pend, notes)
			return rec, written || w, nil
		}
		if errors.Is(err, origin.ErrStale) {
			// A newer write of another publisher is stored: this one is
			// superseded, and its notes with it.
			p.clearNotes(ctx, pend, notes)
			return record.Record{}, false, err
		}
		written = written || (err == nil && w)
		if ctx.Err() != nil || (err != nil && !late && !errors.Is(err, context.DeadlineExceeded)) {
			// The caller gave up, or the origin refused (stale, unavailable,
			// invalid): not acknowledged. Notes stay for Repair, since the
			// compare-and-swap may have landed.
			return record.Record{}, false, err
		}
		p.m.late.Inc()
		p.log.Warn("publish overran its settle budget; publishing again under a fresh version",
			"namespace", rec.Namespace, "key", rec.Key, "version", rec.Version.String(),
			"budget", p.cfg.Timing.PublishBudget, "attempt", attempt, "err", err)
		last = err
	}
	if last == nil {
		last = errors.New("every attempt finished after its deadline")
	}
	return record.Record{}, false, fmt.Errorf("publish %s/%s: %w after %d attempts: %w", rec.Namespace, rec.Key, ErrBudget, publishAttempts, last)
}

// restamp writes rec (already carrying a fresh version) over the key's
// current version if that is at most first or one of ours, then appends it
// to the log. Finding a newer version of another writer instead fails with
// an error wrapping origin.ErrStale, and nothing is written.
func (p *Publisher) restamp(ctx context.Context, rec record.Record, first record.Version, ours map[record.Version]bool) (written bool, err error) {
	for i := 0; i < maxRestampCAS; i++ {
		var prev record.Version
		cur, err := p.store.Get(ctx, rec.Namespace, rec.Key, 0)
		switch {
		case err == nil:
			prev = cur.Version
		case errors.Is(err, origin.ErrNotFound):
		default:
			return false, fmt.Errorf("restamp %s/%s: read current: %w", rec.Namespace, rec.Key, err)
		}
		if (prev > first && !ours[prev]) || prev >= rec.Version {
			return false, fmt.Errorf("restamp %s/%s@%s over %s: %w %s", rec.Namespace, rec.Key, rec.Version, first, origin.ErrStale, prev)
		}
		err = p.store.CompareAndSwap(ctx, rec, prev)
		if errors.Is(err, origin.ErrConflict) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("restamp %s/%s: %w", rec.Namespace, rec.Key, err)
		}
		if err := p.store.AppendLog(ctx, rec.Change()); err != nil {
			return true, fmt.Errorf("restamp %s/%s: append change log: %w", rec.Namespace, rec.Key, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("restamp %s/%s: %w after %d attempts", rec.Namespace, rec.Key, origin.ErrConflict, maxRestampCAS)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// maxRestampCAS bounds a restamp's retries when other writers keep winning.
const maxRestampCAS = 8

// clearNotes removes the Pending notes of an acknowledged write. A failure
// only leaves a note Repair will find and resolve (by a harmless restamp),
// so it is logged, never returned.
func (p *Publisher) clearNotes(ctx context.Context, pend origin.Pending, notes []record.Change) {
	if pend == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timing.PublishBudget)
	defer cancel()
	for _, c := range notes {
		if err := pend.DeletePending(cctx, c); err != nil {
			p.log.Warn("clear pending note failed; the repair pass will resolve it",
				"namespace", c.Namespace, "key", c.Key, "version", c.Version.String(), "err", err)
		}
	}
}

// pendingExpiry is how long Repair keeps a note whose compare-and-swap has
// not (yet) landed: a request sent just before a crash or a long pause can
// still reach the origin a little later, and once it lands the note is what
// lets Repair publish it into the log. After this, the note is dropped.
const pendingExpiry = time.Minute

// Repair finishes publishes that crashed or overran between their record
// write and their change-log append, found through the store's Pending
// notes (a store without them has nothing to repair). For each note older
// than PublishBudget + ClockSkew (a publish younger than that may still be
// running):
//   - the key holds the noted version: the write landed but its log entry
//     may be missing or too late for readers, so the stored value is
//     published again under a fresh version (commit's restamp), and the
//     note removed;
//   - the key holds a newer version: the noted write was superseded; the
//     note is removed;
//   - the key holds an older version or none: the write has not landed; the
//     note is kept for pendingExpiry in case a delayed request still lands,
//     then removed.
//
// It returns how many writes it published again. Errors of single notes are
// joined; the others are still handled.
func (p *Publisher) Repair(ctx context.Context) (int, error) {
	pend, ok := p.store.(origin.Pending)
	if !ok {
		return 0, nil
	}
	notes, err := pend.ListPending(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("repair: list pending: %w", err)
	}
	if len(notes) > 0 {
		if err := p.checkClock(ctx); err != nil {
			return 0, fmt.Errorf("repair: %w", err)
		}
	}
	now := time.Now()
	repaired := 0
	var errs []error
	for _, n := range notes {
		age := now.Sub(n.Version.Time())
		if age <= p.cfg.Timing.PublishBudget+p.cfg.Timing.ClockSkew {
			continue
		}
		cur, err := p.store.Get(ctx, n.Namespace, n.Key, 0)
		if err != nil && !errors.Is(err, origin.ErrNotFound) {
			errs = append(errs, fmt.Errorf("repair %s/%s: %w", n.Namespace, n.Key, err))
			continue
		}
		switch {
		case err == nil && cur.Version == n.Version:
			rec := cur
			rec.Version = p.clock.Now()
			stored, written, err := p.commit(ctx, rec, n.Version, true)
			if errors.Is(err, origin.ErrStale) {
				break // superseded meanwhile
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("repair %s/%s: %w", n.Namespace, n.Key, err))
				continue
			}
			if p.cfg.Signer != nil {
				p.acks.add(stored)
			}
			if written {
				p.notifyFleet(ctx, stored)
			}
			rec = stored
			repaired++
			p.m.repaired.Inc()
			p.log.Info("repaired a publish that did not reach the change log in time",
				"namespace", n.Namespace, "key", n.Key, "version", n.Version.String(), "restamped", rec.Version.String())
		case err == nil && cur.Version > n.Version:
		default:
			if age < pendingExpiry {
				continue
			}
		}
		if err := pend.DeletePending(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("repair %s/%s: clear note: %w", n.Namespace, n.Key, err))
		}
	}
	return repaired, errors.Join(errs...)
}

// RunRepair calls Repair at once and then every 2 Config.Timing.LogInterval until
// ctx is done, when it returns nil. Run it beside Run in every publisher
// process (a restarted publisher repairs what its predecessor left).
// Failures are logged and retried on the next tick.
func (p *Publisher) RunRepair(ctx context.Context) error {
	t := time.NewTicker(p.cfg.repairInterval())
	defer t.Stop()
	for {
		if _, err := p.Repair(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("repair pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
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
	if p.cfg.Signer != nil {
		p.acks.add(rec)
	}
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
