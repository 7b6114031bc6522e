package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// Channel is the LISTEN/NOTIFY channel the outbox trigger notifies.
const Channel = "dataplane_outbox"

// DefaultLockID is the advisory lock key ("dpsync01") the active syncer
// holds.
const DefaultLockID int64 = 0x6470_7379_6e63_3031

// Publisher stores records under versions the caller chose. A
// *publisher.Publisher satisfies it.
type Publisher interface {
	// PutVersion makes rec the state of its key unless a newer version is
	// stored, in which case it fails with an error wrapping
	// origin.ErrStale. Storing the version already stored is a success
	// with written=false.
	PutVersion(ctx context.Context, rec record.Record) (written bool, err error)
	// Get returns the stored record of ns/key, or an error wrapping
	// origin.ErrNotFound.
	Get(ctx context.Context, ns, key string) (record.Record, error)
}

// Config configures a Syncer. Start from DefaultConfig; New rejects a bad
// value with an error naming the field.
type Config struct {
	// Pool provides the syncer's connection (taken out of the pool for as
	// long as it lasts). Give Pool or DSN.
	Pool *pgxpool.Pool
	// DSN is used to connect when Pool is nil. It is never logged.
	DSN string
	// Publisher receives the rows. Required.
	Publisher Publisher
	// Clock hands out versions; share the Publisher's. Nil means a new
	// clock on the wall time.
	Clock *record.Clock
	// BatchSize is how many rows one query reads. Must be positive.
	BatchSize int
	// PollInterval is how long the idle active syncer waits for a
	// notification before looking anyway: the fallback for a lost one.
	// Must be positive.
	PollInterval time.Duration
	// StandbyInterval is how often a standby retries the lock (it also
	// retries on every notification). Must be positive.
	StandbyInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying after a
	// database or origin failure; it doubles per consecutive failure.
	MinBackoff, MaxBackoff time.Duration
	// RowTimeout bounds the publication of one row. A row once started is
	// finished even if Run's context ends, within this time.
	RowTimeout time.Duration
	// LockID is the advisory lock key that elects the active syncer; give
	// syncers publishing one outbox into different dataplanes different
	// keys.
	LockID int64
	// Logger receives state changes and failures; nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives the syncer's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Schemas validates each row's value before it is published: a row
	// its namespace's Validator refuses is parked (marked done with the
	// reason in its error column, see the package documentation) and
	// nothing is written. Nil means schema.Builtin(): routes and keys are
	// checked. A row the Publisher refuses as invalid is parked the same
	// way.
	Schemas *schema.Registry
}

// DefaultConfig returns the usual settings: batches of 100 rows, a poll
// every 5 s should notifications be lost, standbys retrying every second,
// backoff from 100 ms to 10 s, 30 s per row.
func DefaultConfig() Config {
	return Config{
		BatchSize:       100,
		PollInterval:    5 * time.Second,
		StandbyInterval: time.Second,
		MinBackoff:      100 * time.Millisecond,
		MaxBackoff:      10 * time.Second,
		RowTimeout:      30 * time.Second,
		LockID:          DefaultLockID,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil && c.DSN == "":
		return errors.New("pgsync: give Pool or DSN")
	case c.Publisher == nil:
		return errors.New("pgsync: Publisher is required")
	case c.BatchSize <= 0:
		return fmt.Errorf("pgsync: BatchSize must be positive, got %d", c.BatchSize)
	case c.PollInterval <= 0:
		return fmt.Errorf("pgsync: PollInterval must be positive, got %v", c.PollInterval)
	case c.StandbyInterval <= 0:
		return fmt.Errorf("pgsync: StandbyInterval must be positive, got %v", c.StandbyInterval)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("pgsync: need 0 < MinBackoff <= MaxBackoff, got %v and %v", c.MinBackoff, c.MaxBackoff)
	case c.RowTimeout <= 0:
		return fmt.Errorf("pgsync: RowTimeout must be positive, got %v", c.RowTimeout)
	}
	return nil
}

// Syncer publishes the outbox. See the package documentation.
type Syncer struct {
	cfg   Config
	pub   Publisher
	clock *record.Clock
	log   *slog.Logger
	m     *metrics

	active  atomic.Bool
	running atomic.Bool
}

// New returns a Syncer; Run starts it.
func New(cfg Config) (*Syncer, error) {
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
	s := &Syncer{
		cfg:   cfg,
		pub:   cfg.Publisher,
		clock: cfg.Clock,
		log:   cfg.Logger.With("component", "pgsync"),
		m:     newMetrics(),
	}
	if cfg.Registerer != nil {
		if err := s.m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Active reports whether the syncer holds the lock and publishes.
func (s *Syncer) Active() bool { return s.active.Load() }

// Run publishes the outbox until ctx ends, then finishes the row in hand
// and returns nil. Failures of the database or the origin never end it: it
// logs, counts, backs off and retries. Run may be called once at a time.
func (s *Syncer) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("pgsync: Run called twice")
	}
	defer s.running.Store(false)
	failures := 0
	for {
		err := s.session(ctx, func() { failures = 0 })
		if ctx.Err() != nil {
			return nil
		}
		failures++
		wait := s.backoff(failures)
		s.log.Warn("outbox sync failed; retrying", "err", err, "attempt", failures, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// backoff is the wait after n consecutive failures: MinBackoff doubling up
// to MaxBackoff, with the upper half jittered.
func (s *Syncer) backoff(n int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// errLostRow means a row changed under the syncer: another syncer is
// active, so this one must stop and stand by.
var errLostRow = errors.New("outbox row changed by someone else (another syncer active?)")

// dbError and originError tag a failure for the errors metric.
func (s *Syncer) dbError(what string, err error) error {
	s.m.errors.WithLabelValues("db").Inc()
	return fmt.Errorf("%s: %w", what, err)
}

func (s *Syncer) originError(what string, err error) error {
	s.m.errors.WithLabelValues("origin").Inc()
	return fmt.Errorf("%s: %w", what, err)
}

// session runs one connection: stand by until the lock is ours, then
// publish until ctx ends or something fails. healthy is called whenever a
// round went well, resetting the backoff.
func (s *Syncer) session(ctx context.Context, healthy func()) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return s.dbError("connect", err)
	}
	defer func() {
		if s.active.Swap(false) {
			s.log.Info("outbox sync: no longer active")
		}
		s.m.active.Set(0)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx) // ends the session, releasing the lock
	}()
	// A reservation must be durable before its publish: with asynchronous
	// commit a database crash could forget it, and the row would be
	// published a second time under another version.
	var syncCommit string
	if err := conn.QueryRow(ctx, "SELECT current_setting('synchronous_commit')").Scan(&syncCommit); err != nil {
		return s.dbError("read synchronous_commit", err)
	}
	if syncCommit == "off" {
		if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
			return s.dbError("set synchronous_commit", err)
		}
	}
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return s.dbError("listen", err)
	}
	for standby := false; ; standby = true {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", s.cfg.LockID).Scan(&got); err != nil {
			return s.dbError("take the outbox lock", err)
		}
		if got {
			break
		}
		if !standby {
			s.log.Info("outbox sync: another syncer is active; standing by")
		}
		healthy()
		if err := s.wait(ctx, conn, s.cfg.StandbyInterval); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	// Start the clock above every version any syncer handed out, whatever
	// the wall clock of the machine it ran on.
	var top *int64
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM dataplane_outbox").Scan(&top); err != nil {
		return s.dbError("read the highest version", err)
	}
	if top != nil && *top > 0 {
		s.clock.Observe(record.Version(*top))
	}
	s.active.Store(true)
	s.m.active.Set(1)
	s.log.Info("outbox sync: active")
	for {
		n, err := s.batch(ctx, conn)
		if err != nil {
			return err
		}
		healthy()
		if ctx.Err() != nil {
			return nil
		}
		if n == s.cfg.BatchSize {
			continue // more may be waiting
		}
		if err := s.wait(ctx, conn, s.cfg.PollInterval); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// connect returns a connection of the syncer's own: hijacked from the pool,
// or dialled.
func (s *Syncer) connect(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.cfg.Pool != nil {
		pc, err := s.cfg.Pool.Acquire(cctx)
		if err != nil {
			return nil, err
		}
		return pc.Hijack(), nil
	}
	return pgx.Connect(cctx, s.cfg.DSN)
}

// wait returns when a notification arrives, d passes or ctx ends; it fails
// only if the connection does. Notifications queued behind the one that
// woke it are dropped: the query that follows sees their rows.
func (s *Syncer) wait(ctx context.Context, conn *pgx.Conn, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil && wctx.Err() == nil {
		return s.dbError("wait for notifications", err)
	}
	if n != nil {
		s.m.wakeups.WithLabelValues("notify").Inc()
	} else if ctx.Err() == nil {
		s.m.wakeups.WithLabelValues("poll").Inc()
	}
	// With a finished context, WaitForNotification only hands out what
	// it already received.
	done, stop := context.WithCancel(context.Background())
	stop()
	for {
		if n, _ := conn.WaitForNotification(done); n == nil {
			return nil
		}
	}
}

// outboxRow is one unpublished row.
type outboxRow struct {
	id        int64
	namespace string
	key       string
	value     []byte
	deleted   bool
	version   *int64
	created   time.Time
}

func (r *outboxRow) reserved() record.Version {
	if r.version == nil || *r.version <= 0 {
		return 0
	}
	return record.Version(*r.version)
}

func (r *outboxRow) record(v record.Version) record.Record {
	rec := record.Record{Namespace: r.namespace, Key: r.key, Version: v, Tombstone: r.deleted}
	if !r.deleted {
		rec.Value = r.value
		if rec.Value == nil {
			rec.Value = []byte{}
		}
	}
	return rec
}

// batch publishes up to BatchSize unpublished rows in id order and returns
// how many it read. It stops early, without error, when ctx ends.
func (s *Syncer) batch(ctx context.Context, conn *pgx.Conn) (int, error) {
	rows, err := conn.Query(ctx, `
		SELECT id, namespace, key, value, deleted, version, created_at
		FROM dataplane_outbox WHERE published_at IS NULL ORDER BY id LIMIT $1`, s.cfg.BatchSize)
	if err != nil {
		return 0, s.dbError("read the outbox", err)
	}
	var batch []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.id, &r.namespace, &r.key, &r.value, &r.deleted, &r.version, &r.created); err != nil {
			rows.Close()
			return 0, s.dbError("read the outbox", err)
		}
		batch = append(batch, r)
	}
	if err := rows.Err(); err != nil {
		return 0, s.dbError("read the outbox", err)
	}
	for i := range batch {
		if ctx.Err() != nil {
			return i, nil
		}
		if err := s.publishRow(ctx, conn, &batch[i]); err != nil {
			return i, fmt.Errorf("outbox row %d (%s/%s): %w", batch[i].id, batch[i].namespace, batch[i].key, err)
		}
	}
	return len(batch), nil
}

// maxRowAttempts bounds how often one row is reserved anew because a newer
// version turned up in the origin.
const maxRowAttempts = 5

// publishRow takes one row through reserve, publish, mark (see the package
// documentation). Once started it runs to the end even if ctx ends, within
// RowTimeout.
func (s *Syncer) publishRow(ctx context.Context, conn *pgx.Conn, r *outboxRow) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RowTimeout)
	defer cancel()
	if err := r.record(1).Validate(); err != nil {
		return s.reject(ctx, conn, r, err)
	}
	if err := s.cfg.Schemas.CheckRecord(r.record(1)); err != nil {
		return s.reject(ctx, conn, r, err)
	}
	for attempt := 1; attempt <= maxRowAttempts; attempt++ {
		if v := r.reserved(); v != 0 {
			// An earlier attempt reserved v; did it reach the origin?
			s.clock.Observe(v)
			stored, err := s.storedVersion(ctx, r)
			if err != nil {
				return err
			}
			if stored == v {
				// It did. Repeat the publish, which writes nothing but
				// re-appends the log entry and re-notifies (the crash may
				// have lost either), then finish the row.
				err := s.putVersion(ctx, r.record(v))
				if errors.Is(err, origin.ErrStale) {
					continue // overtaken since we looked: publish anew
				}
				if errors.Is(err, record.ErrInvalid) {
					return s.reject(ctx, conn, r, err)
				}
				if err != nil {
					return s.originError("republish", err)
				}
				s.m.republished.Inc()
				return s.mark(ctx, conn, r, v)
			}
			// It did not, or it was overtaken: v never became (or no
			// longer is) the key's state. Publish anew, above what is
			// stored.
			s.clock.Observe(stored)
			s.m.reassigned.Inc()
		}
		v := s.clock.Now()
		if err := s.reserve(ctx, conn, r, v); err != nil {
			return err
		}
		err := s.putVersion(ctx, r.record(v))
		if errors.Is(err, origin.ErrStale) {
			continue // a newer version is stored: learn it and go above it
		}
		if errors.Is(err, record.ErrInvalid) {
			return s.reject(ctx, conn, r, err) // the Publisher's schemas refuse it
		}
		if err != nil {
			return s.originError("publish", err)
		}
		s.m.published.Inc()
		s.m.lag.Observe(time.Since(r.created).Seconds())
		return s.mark(ctx, conn, r, v)
	}
	return s.originError("publish", fmt.Errorf("newer versions kept appearing in the origin after %d attempts: %w", maxRowAttempts, origin.ErrConflict))
}

// putVersion calls the Publisher, turning a panic into an error.
func (s *Syncer) putVersion(ctx context.Context, rec record.Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("publisher panicked: %v", p)
		}
	}()
	_, err = s.pub.PutVersion(ctx, rec)
	return err
}

// storedVersion returns the origin's version of the row's key, 0 if none.
func (s *Syncer) storedVersion(ctx context.Context, r *outboxRow) (v record.Version, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.originError("read the stored version", fmt.Errorf("publisher panicked: %v", p))
		}
	}()
	cur, err := s.pub.Get(ctx, r.namespace, r.key)
	switch {
	case err == nil:
		return cur.Version, nil
	case errors.Is(err, origin.ErrNotFound):
		return 0, nil
	default:
		return 0, s.originError("read the stored version", err)
	}
}

// reserve records v as the row's version, committed, if the row still has
// the version this syncer last saw.
func (s *Syncer) reserve(ctx context.Context, conn *pgx.Conn, r *outboxRow, v record.Version) error {
	tag, err := conn.Exec(ctx, `
		UPDATE dataplane_outbox SET version = $3
		WHERE id = $1 AND version IS NOT DISTINCT FROM $2 AND published_at IS NULL`,
		r.id, r.version, int64(v))
	if err != nil {
		return s.dbError("reserve a version", err)
	}
	if tag.RowsAffected() != 1 {
		return s.dbError("reserve a version", errLostRow)
	}
	nv := int64(v)
	r.version = &nv
	return nil
}

// mark finishes a published row.
func (s *Syncer) mark(ctx context.Context, conn *pgx.Conn, r *outboxRow, v record.Version) error {
	tag, err := conn.Exec(ctx, `
		UPDATE dataplane_outbox SET published_at = now()
		WHERE id = $1 AND version = $2 AND published_at IS NULL`, r.id, int64(v))
	if err != nil {
		return s.dbError("mark published", err)
	}
	if tag.RowsAffected() != 1 {
		return s.dbError("mark published", errLostRow)
	}
	return nil
}

// reject finishes a row that can never be published, with the reason.
func (s *Syncer) reject(ctx context.Context, conn *pgx.Conn, r *outboxRow, why error) error {
	tag, err := conn.Exec(ctx, `
		UPDATE dataplane_outbox SET published_at = now(), error = $2
		WHERE id = $1 AND published_at IS NULL`, r.id, "rejected: "+why.Error())
	if err != nil {
		return s.dbError("mark rejected", err)
	}
	if tag.RowsAffected() != 1 {
		return s.dbError("mark rejected", errLostRow)
	}
	s.m.rejected.Inc()
	s.log.Warn("outbox row rejected", "id", r.id, "namespace", r.namespace, "err", why)
	return nil
}
