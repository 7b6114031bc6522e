package follow

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// readTimeout bounds one read of the origin's change log (all its pages).
const readTimeout = 10 * time.Second

// Follower reads the origin's change log on an interval and on request,
// and hands every change it reads to its Target. It owns the log cursor:
// the version up to which every change is known to have been handed to
// the Target (by the log, or by another path such as gossip, before it).
//
// A Follower is safe for concurrent use. Close it when done.
type Follower struct {
	cfg    Config
	target Target
	log    Log
	logger *slog.Logger
	m      *metrics

	cursor atomic.Uint64 // every change at or below it is known
	high   atomic.Uint64 // the highest version read from the log
	// revalidatedAt is the cursor set by the last full revalidation; only
	// the loop goroutine touches it.
	revalidatedAt record.Version
	// window holds the changes read above the cursor (ns, key, version),
	// so that rereads of the settle window do not hand them on twice; only
	// the loop goroutine touches it.
	window map[windowKey]struct{}
	// rewound asks the loop to forget window (set by Rewind).
	rewound atomic.Bool
	// rewindMu orders Rewind against the cursor moves of a read in
	// flight; rewinds counts Rewinds (guarded by rewindMu). A read that
	// began before a Rewind handed its changes to a state the Target has
	// since replaced, so it must not move the cursor past the Rewind.
	rewindMu sync.Mutex
	rewinds  uint64

	trigger   chan string // catch-up requests, coalesced
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type windowKey struct {
	ns, key string
	v       record.Version
}

// New starts a follower of log for t: it reads the log from cfg.Resume at
// once if set (else from now less Settle), then every Interval and
// whenever CatchUp asks.
func New(cfg Config, t Target, log Log) (*Follower, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if t == nil || log == nil {
		return nil, errors.New("follow: nil Target or Log")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	f := &Follower{
		cfg:     cfg,
		target:  t,
		log:     log,
		logger:  cfg.Logger,
		m:       m,
		window:  make(map[windowKey]struct{}),
		trigger: make(chan string, 1),
		stop:    make(chan struct{}),
	}
	start := cfg.Resume
	if start == 0 {
		start = record.MakeVersion(cfg.Now().Add(-cfg.Settle), 0)
	}
	f.cursor.Store(uint64(start))
	if cfg.Resume != 0 {
		f.CatchUp("start")
	}
	f.wg.Add(1)
	go f.loop()
	return f, nil
}

// Close stops the follower, cancelling a read in flight. It is safe to
// call twice.
func (f *Follower) Close() error {
	f.closeOnce.Do(func() {
		close(f.stop)
		f.wg.Wait()
		f.m.unregister()
	})
	return nil
}

// Cursor returns the version up to which every change has been handed to
// the Target (as far as the follower's log reads can tell). A node
// restarted with the state it kept passes it as Config.Resume.
func (f *Follower) Cursor() record.Version { return record.Version(f.cursor.Load()) }

// HighWater returns the highest version the follower has read from the log.
func (f *Follower) HighWater() record.Version { return record.Version(f.high.Load()) }

// Settle returns Config.Settle: how far behind a complete read's time the
// cursor is moved.
func (f *Follower) Settle() time.Duration { return f.cfg.Settle }

// CatchUp asks the follower to read the log now, without waiting; requests
// made while one is pending coalesce. why labels the read in metrics
// (start, rejoin, digest, rewind...).
func (f *Follower) CatchUp(why string) {
	select {
	case f.trigger <- why:
	default:
	}
}

// Rewind moves the cursor back to v, if it is past it, and reads the log
// from there at once: for a Target that (re)loaded its state as of v after
// the follower started (a warm-up that succeeded late).
//
// A read in flight when Rewind is called ends without moving the cursor
// (what it handed on may have gone to the state the Target replaced), and
// the read Rewind asks for hands everything above v on again.
func (f *Follower) Rewind(v record.Version) {
	f.rewindMu.Lock()
	f.rewinds++
	for {
		cur := f.cursor.Load()
		if uint64(v) >= cur || f.cursor.CompareAndSwap(cur, uint64(v)) {
			break
		}
	}
	f.rewound.Store(true)
	f.rewindMu.Unlock()
	f.CatchUp("rewind")
}

// generation returns the number of Rewinds so far, for advanceIn.
func (f *Follower) generation() uint64 {
	f.rewindMu.Lock()
	defer f.rewindMu.Unlock()
	return f.rewinds
}

// advanceIn moves the cursor to v, as advance, unless a Rewind came after
// generation gen was read; it reports whether it did.
func (f *Follower) advanceIn(gen uint64, v record.Version) bool {
	f.rewindMu.Lock()
	defer f.rewindMu.Unlock()
	if f.rewinds != gen {
		return false
	}
	f.advance(v)
	return true
}

// loop reads the log every Interval and whenever CatchUp asks.
func (f *Follower) loop() {
	defer f.wg.Done()
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.catchUp("interval")
		case why := <-f.trigger:
			f.catchUp(why)
		}
	}
}

// catchUp reads every change appended to the log after the cursor and hands
// it to the Target (as an invalidation: the log carries no values;
// tombstones are complete and applied as such).
//
// The cursor means "every change at or below this version is known". A read
// at wall time T that returned everything after the cursor proves that for
// versions up to T-Settle: anything older was appended by then (Settle
// bounds how long a publisher takes from taking a version to appending it,
// clock skew included). So the cursor advances to T-Settle, never to the
// newest version read, and rereads of the settle window are not handed on
// twice.
//
// If the log was trimmed past the cursor, the follower cannot name what
// was missed: it asks the Target to recover from snapshots (Recoverer) and
// reads on from there, or to revalidate everything (Revalidator) and
// restarts from T.
//
// The three steps a later checkpoint check hooks into are applyPage (each
// page read), recover (each snapshot reload) and declare (caught up to V).
func (f *Follower) catchUp(trigger string) {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	go func() { // stop a read in flight on Close
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	gen := f.generation()
	if f.rewound.Swap(false) {
		clear(f.window) // what was handed on may have been reloaded over
	}
	ckpts := f.readCheckpoints(ctx)
	readAt := f.cfg.Now()
	after := f.Cursor()
	start := after
	recovered := false
	handed := 0
	for {
		cs, err := f.log.ReadLog(ctx, after, f.cfg.Batch)
		if errors.Is(err, origin.ErrLogTruncated) {
			f.m.reads.WithLabelValues(trigger, "truncated").Inc()
			if f.revalidatedAt != 0 && after == f.revalidatedAt {
				// Truncated again right after a revalidation: the log was
				// trimmed within Settle of now. Everything was just
				// revalidated, so jump to now rather than loop.
				f.logger.Warn("change log trimmed within LogSettle of now; trim less aggressively", "after", after, "settle", f.cfg.Settle)
				f.advanceIn(gen, record.MakeVersion(readAt, 0))
				return
			}
			if !recovered {
				if v, ok := f.recover(ctx, after, err); ok {
					// Reloaded from snapshots: read the log from there
					// (once: a log trimmed past the snapshots too is
					// revalidated below).
					recovered = true
					if !f.advanceIn(gen, v) {
						f.m.reads.WithLabelValues(trigger, "rewound").Inc()
						return
					}
					// The Target's state was reloaded as of v: what was
					// handed on above v went to the state it replaced.
					clear(f.window)
					start, after = v, v
					continue
				}
			}
			f.revalidateAll(after, err)
			f.revalidatedAt = record.MakeVersion(readAt.Add(-f.cfg.Settle), 0)
			f.advanceIn(gen, f.revalidatedAt)
			return
		}
		if err != nil {
			f.m.reads.WithLabelValues(trigger, "error").Inc()
			f.logger.Warn("change log read failed; will retry", "trigger", trigger, "after", after, "err", err)
			return
		}
		handed += f.applyPage(cs)
		if len(cs) < f.cfg.Batch {
			break
		}
		// Next page. Step back one version unless the whole page is one
		// version, so that other keys sharing the last version are not
		// skipped; the repeats are not handed on twice.
		last := cs[len(cs)-1].Version
		if cs[0].Version != last {
			last--
		}
		after = last
	}
	if !f.declare(gen, start, record.MakeVersion(readAt.Add(-f.cfg.Settle), 0)) {
		// A Rewind came during the read: the read it asked for starts
		// over from its version (and takes the checkpoints then).
		f.m.reads.WithLabelValues(trigger, "rewound").Inc()
		return
	}
	f.m.reads.WithLabelValues(trigger, "ok").Inc()
	if handed > 0 {
		f.m.changes.Add(float64(handed))
		f.logger.Debug("change log read handed on changes", "trigger", trigger, "changes", handed)
	}
	f.handCheckpoints(ckpts)
}

// checkpointParts returns where checkpoints are read, or nil.
func (f *Follower) checkpointParts() origin.SnapshotParts {
	if f.cfg.Checkpoints != nil {
		return f.cfg.Checkpoints
	}
	p, _ := f.log.(origin.SnapshotParts)
	return p
}

// readCheckpoints reads the latest checkpoint of each namespace a
// CheckpointTaker Target names (none found, or unreadable, is skipped:
// a node that cannot read them proves nothing by them, and fails closed
// where its policy says so).
func (f *Follower) readCheckpoints(ctx context.Context) []*checkpoint.Checkpoint {
	ct, ok := f.target.(CheckpointTaker)
	if !ok {
		return nil
	}
	parts := f.checkpointParts()
	if parts == nil {
		return nil
	}
	var out []*checkpoint.Checkpoint
	for _, ns := range ct.CheckpointSpaces() {
		c, err := checkpoint.GetLatest(ctx, parts, ns)
		if err != nil {
			if !errors.Is(err, origin.ErrNotFound) {
				f.logger.Debug("latest checkpoint unreadable", "namespace", ns, "err", err)
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// handCheckpoints hands the checkpoints read before a successful log read
// to the Target.
func (f *Follower) handCheckpoints(cs []*checkpoint.Checkpoint) {
	if len(cs) == 0 {
		return
	}
	ct := f.target.(CheckpointTaker)
	defer func() {
		if r := recover(); r != nil {
			f.m.panics.Inc()
			f.logger.Error("follow target panicked in TakeCheckpoint", "panic", r)
		}
	}()
	for _, c := range cs {
		ct.TakeCheckpoint(c)
	}
}

// applyPage hands one page of the log to the Target: each change it has not
// handed on already, signed by a trusted publisher key if Config.Verifier
// is set. It returns how many it handed on. The Target's version index is
// the one ordering gate: changes older than what it holds are ignored
// there, not here.
func (f *Follower) applyPage(cs []record.Change) int {
	handed := 0
	for _, ch := range cs {
		rec := record.Record{Namespace: ch.Namespace, Key: ch.Key, Version: ch.Version, Tombstone: ch.Tombstone, Seal: ch.Seal}
		if rec.Validate() != nil { // a store bug; never let it reach the Target
			f.m.refused.WithLabelValues("malformed").Inc()
			continue
		}
		wk := windowKey{ch.Namespace, ch.Key, ch.Version}
		if _, dup := f.window[wk]; dup {
			continue
		}
		if err := f.verify(rec); err != nil {
			// Remembered like a change handed on, so that rereads of the
			// settle window do not refuse (count, log) it again.
			f.window[wk] = struct{}{}
			f.m.refused.WithLabelValues(sign.Reason(err)).Inc()
			f.logger.Warn("change log entry refused: not signed by a trusted publisher key", "ns", ch.Namespace, "key", ch.Key, "version", ch.Version, "err", err)
			continue
		}
		f.window[wk] = struct{}{}
		f.raiseHigh(ch.Version)
		f.hand(rec)
		handed++
	}
	return handed
}

// verify checks rec with Config.Verifier, if any: a tombstone as a record,
// any other change by its Seal (the log carries no values).
func (f *Follower) verify(rec record.Record) error {
	if f.cfg.Verifier == nil {
		return nil
	}
	if rec.Tombstone {
		return f.cfg.Verifier.VerifyRecord(rec)
	}
	return f.cfg.Verifier.VerifyChange(rec.Change())
}

// hand gives one change to the Target, turning a panic into a metric and a
// log line.
func (f *Follower) hand(rec record.Record) {
	defer func() {
		if r := recover(); r != nil {
			f.m.panics.Inc()
			f.logger.Error("follow target panicked", "ns", rec.Namespace, "key", rec.Key, "version", rec.Version, "panic", r)
		}
	}()
	if rec.Tombstone {
		f.target.Apply(rec)
		return
	}
	if ci, ok := f.target.(ChangeInvalidator); ok {
		ci.InvalidateChange(rec.Change())
		return
	}
	f.target.Invalidate(rec.Namespace, rec.Key, rec.Version)
}

// declare moves the cursor to to and tells the Target (CaughtUpper) that
// every change in (from, to] has been handed to it: the one place where the
// follower claims to be caught up. It does neither, and returns false, if
// a Rewind came after generation gen was read.
func (f *Follower) declare(gen uint64, from, to record.Version) bool {
	if !f.advanceIn(gen, to) {
		return false
	}
	for wk := range f.window {
		if wk.v <= f.Cursor() {
			delete(f.window, wk)
		}
	}
	if c, ok := f.target.(CaughtUpper); ok {
		defer func() {
			if r := recover(); r != nil {
				f.m.panics.Inc()
				f.logger.Error("follow target panicked in CaughtUp", "panic", r)
			}
		}()
		c.CaughtUp(from, f.Cursor())
	}
	return true
}

// recover asks a Recoverer Target to reload from snapshots after the log
// was trimmed past after; ok reports that it did, and v is where to read
// the log from.
func (f *Follower) recover(ctx context.Context, after record.Version, cause error) (v record.Version, ok bool) {
	rc, isRC := f.target.(Recoverer)
	if !isRC {
		return 0, false
	}
	defer func() {
		if r := recover(); r != nil {
			f.m.panics.Inc()
			f.logger.Error("follow target panicked in Recover", "panic", r)
			ok = false
		}
	}()
	f.logger.Warn("missed more changes than the log holds; reloading from snapshots", "after", after, "err", cause)
	v, err := rc.Recover(ctx)
	if err != nil {
		f.logger.Warn("reload from snapshots failed; revalidating instead", "err", err)
		return 0, false
	}
	if v <= after {
		// A snapshot no newer than the cursor cannot cover the gap.
		f.logger.Warn("snapshots older than the log position; revalidating instead", "snapshot", v, "after", after)
		return 0, false
	}
	f.m.reads.WithLabelValues("recover", "ok").Inc()
	return v, true
}

// revalidateAll handles a log trimmed past the cursor.
func (f *Follower) revalidateAll(after record.Version, err error) {
	f.m.revalid.Inc()
	rv, ok := f.target.(Revalidator)
	if !ok {
		f.logger.Error("missed more changes than the log holds, and the target cannot revalidate", "after", after, "err", err)
		return
	}
	f.logger.Warn("missed more changes than the log holds; revalidating everything", "after", after, "err", err)
	defer func() {
		if r := recover(); r != nil {
			f.m.panics.Inc()
			f.logger.Error("follow target panicked in RevalidateAll", "panic", r)
		}
	}()
	rv.RevalidateAll()
}

func (f *Follower) advance(v record.Version) {
	for {
		cur := f.cursor.Load()
		if uint64(v) <= cur || f.cursor.CompareAndSwap(cur, uint64(v)) {
			return
		}
	}
}

func (f *Follower) raiseHigh(v record.Version) {
	for {
		cur := f.high.Load()
		if uint64(v) <= cur || f.high.CompareAndSwap(cur, uint64(v)) {
			return
		}
	}
}
