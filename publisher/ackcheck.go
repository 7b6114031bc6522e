package publisher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// A write this publisher acknowledged is in the change log at that moment,
// but a bucket writer (write access to the origin, no signing key) can
// remove its entry and put the key's previous record back, before a
// checkpoint issuer reads the log: the issuer then signs a state without
// the write, nodes that never heard of it match that state and take the
// write's absence as proven (a hidden delete: a revoked API key keeps
// verifying). The issuer cannot tell, since the log is all it reads, unless
// it acknowledged the write itself. So every publisher with a Signer keeps
// the writes it acknowledges (acks), and while it runs (Run, RunCheckpoints
// or RunAckCheck) checks each: once the log must hold it
// (LogSettle after its version) reads the log on every pass until a
// checkpoint stored in the origin, by any issuer, covers its version; one
// the log no longer holds is published again under a fresh version (the
// next checkpoints then carry it, and every node learns it from the log).
// An issuer in the same process also checks before it signs past one
// (issuer.advance), so its own checkpoints never leave one out.
//
// What remains: a publisher that dies right after acknowledging (or a
// one-shot process, `publish put`, that exits) checks nothing; and a
// writer who removes an entry before the issuer reads it and puts it back
// once the checkpoint is stored is not seen by the check.

// maxAcked and maxAckedBytes bound the acknowledged changes kept (count,
// and bytes of values): past either the oldest are forgotten (and not
// checked), so a stalled check, or a publisher that runs none, costs
// bounded memory. A change is kept about LogSettle plus two check
// intervals: 8,192 covers 2,000 writes a second at the default timing.
const (
	maxAcked      = 1 << 13
	maxAckedBytes = 16 << 20
)

// acks are the changes a publisher with a Signer acknowledged that the
// change log is not yet known to hold past a checkpoint. They are kept
// whether or not a check runs yet, so that one started after a write
// (Run's goroutines) still checks it.
type acks struct {
	mu    sync.Mutex
	recs  []record.Record
	bytes int
}

// add keeps rec, just acknowledged, for the checks.
func (a *acks) add(rec record.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, rec)
	a.bytes += len(rec.Value)
	drop := 0
	for len(a.recs)-drop > maxAcked || a.bytes > maxAckedBytes {
		a.bytes -= len(a.recs[drop].Value)
		drop++
	}
	if drop > 0 {
		a.recs = slices.Delete(a.recs, 0, drop)
	}
}

// keep is add for changes taken out of recs.
func (a *acks) keep(recs []record.Record) {
	for _, r := range recs {
		a.add(r)
	}
}

// deleteFunc deletes the changes del reports, keeping bytes; a.mu held.
func (a *acks) deleteFunc(del func(record.Record) bool) {
	a.recs = slices.DeleteFunc(a.recs, func(r record.Record) bool {
		if del(r) {
			a.bytes -= len(r.Value)
			return true
		}
		return false
	})
}

// changeID names one change.
type changeID struct {
	ns, key string
	v       record.Version
}

func heldIn(changes []record.Change) map[changeID]bool {
	held := make(map[changeID]bool, len(changes))
	for _, c := range changes {
		held[changeID{c.Namespace, c.Key, c.Version}] = true
	}
	return held
}

// missing returns (and forgets) the acknowledged changes with versions in
// (from, to] that changes, the log read for that span, does not hold.
func (a *acks) missing(changes []record.Change, from, to record.Version) []record.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.recs) == 0 {
		return nil
	}
	var held map[changeID]bool
	var out []record.Record
	a.deleteFunc(func(r record.Record) bool {
		if r.Version <= from || r.Version > to {
			return false
		}
		if held == nil {
			held = heldIn(changes)
		}
		if held[changeID{r.Namespace, r.Key, r.Version}] {
			return false
		}
		out = append(out, r)
		return true
	})
	return out
}

// settledAcks returns the oldest version among the acknowledged changes at
// or below settled and the namespaces they are in (none: 0, nil).
func (a *acks) settledAcks(settled record.Version) (record.Version, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var oldest record.Version
	var names []string
	for _, r := range a.recs {
		if r.Version > settled {
			continue
		}
		if oldest == 0 || r.Version < oldest {
			oldest = r.Version
		}
		if !slices.Contains(names, r.Namespace) {
			names = append(names, r.Namespace)
		}
	}
	return oldest, names
}

// forget forgets the acknowledged changes at or below settled that
// changes holds and that covered reports a checkpoint has passed, or that
// are older than expired.
func (a *acks) forget(changes []record.Change, settled, expired record.Version, covered func(record.Record) bool) {
	held := heldIn(changes)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleteFunc(func(r record.Record) bool {
		if r.Version > settled {
			return false
		}
		return r.Version < expired || held[changeID{r.Namespace, r.Key, r.Version}] && covered(r)
	})
}

// republishMissing writes each of missing, acknowledged but gone from the
// change log, again under a fresh version, as Repair does a publish that
// crashed before its log append: over the stored version if it is the
// change's own or older (a bucket writer may have put an older record
// back), never over a newer write (superseded, nothing to do). A change
// that fails is kept for the next pass. It returns an error naming them.
func (p *Publisher) republishMissing(ctx context.Context, missing []record.Record) error {
	for _, r := range missing {
		p.m.ackMissing.Inc()
		p.log.Error("an acknowledged change is missing from the change log; publishing it again under a fresh version",
			"namespace", r.Namespace, "key", r.Key, "version", r.Version.String(), "tombstone", r.Tombstone)
		if err := p.republish(ctx, r); err != nil {
			p.log.Error("publishing a missing change again failed; retried on the next pass", "namespace", r.Namespace, "key", r.Key, "err", err)
			p.acks.keep([]record.Record{r})
		}
	}
	return fmt.Errorf("%d acknowledged changes missing from the change log (first %s/%s@%s): published again", len(missing), missing[0].Namespace, missing[0].Key, missing[0].Version)
}

// republish writes r again under a fresh version (see republishMissing).
func (p *Publisher) republish(ctx context.Context, r record.Record) error {
	rec := r
	rec.Version = p.clock.Now()
	stored, written, err := p.commit(ctx, rec, r.Version, true)
	if errors.Is(err, origin.ErrStale) {
		return nil
	}
	if err != nil {
		return err
	}
	p.acks.add(stored)
	if written {
		p.notifyFleet(ctx, stored)
	}
	return nil
}

// checkAcks is one pass of the acknowledged-change check at time now: it
// reads the change log from the oldest acknowledged change the log must
// hold by now, publishes again those it does not hold, and forgets those
// it holds once the latest checkpoint of their namespace stored in the
// origin (whoever issued it) has a version at or above theirs, or once
// they are older than a checkpoint lifetime (no issuer covers them).
func (p *Publisher) checkAcks(ctx context.Context, now time.Time) error {
	settled := record.MakeVersion(now.Add(-p.cfg.Timing.LogSettle), 0)
	expired := record.MakeVersion(now.Add(-p.cfg.Timing.LogSettle-max(p.cfg.Timing.CheckpointLifetime, time.Minute)), 0)
	p.acks.forget(nil, settled, expired, func(record.Record) bool { return false })
	oldest, names := p.acks.settledAcks(settled)
	if oldest == 0 {
		return nil
	}
	changes, err := p.changesSince(ctx, oldest-1)
	if err != nil {
		return fmt.Errorf("check acknowledged changes: read change log after %s: %w", oldest-1, err)
	}
	if missing := p.acks.missing(changes, oldest-1, settled); len(missing) > 0 {
		return p.republishMissing(ctx, missing)
	}
	// A namespace no issuer has signed (or a store that keeps no
	// checkpoints) needs the check only until an issuer could have read
	// the log past the change: one more settle window.
	unsigned := record.MakeVersion(now.Add(-2*p.cfg.Timing.LogSettle), 0)
	covers := make(map[string]record.Version, len(names))
	parts, ok := p.store.(origin.SnapshotParts)
	trusted := &checkpoint.Verifier{Keys: p.trusted, MaxSkew: p.cfg.Timing.MaxFutureSkew()}
	for _, ns := range names {
		if !ok {
			covers[ns] = unsigned
			continue
		}
		c, err := checkpoint.GetLatest(ctx, parts, ns)
		if err == nil {
			// Signed by a trusted key: a bucket writer's checkpoint
			// claiming a later version must not end the check.
			if verr := trusted.Verify(c, nil); verr != nil {
				p.log.Warn("latest checkpoint refused; acknowledged changes stay checked", "namespace", ns, "reason", checkpoint.Reason(verr))
				continue
			}
		}
		switch {
		case err == nil:
			covers[ns] = c.Version
		case errors.Is(err, origin.ErrNotFound):
			covers[ns] = unsigned
		case errors.Is(err, record.ErrCorrupt):
		default:
			return fmt.Errorf("check acknowledged changes: read latest checkpoint of %s: %w", ns, err)
		}
	}
	p.acks.forget(changes, settled, expired, func(r record.Record) bool { return covers[r.Namespace] >= r.Version })
	return nil
}

// RunAckCheck checks, until ctx is done (when it returns nil), that the
// change log still holds every write this publisher acknowledges while it
// runs: as often as an issuer reads it (Timing.LogInterval, at most every
// second), each write whose version the
// log must hold by then (Config.Timing.LogSettle old) is looked up in the
// log until a checkpoint stored in the origin covers its version, and one
// the log no longer holds (a bucket writer removed its entry) is published
// again under a fresh version, so that no checkpoint issuer, in this
// process or another, keeps signing a state without it. Run runs it for a
// publisher with a Signer (RunCheckpoints does the same check); a process
// that signs writes and calls neither should run it. Failures are logged
// and retried on the next pass.
func (p *Publisher) RunAckCheck(ctx context.Context) error {
	tick.Every(ctx.Done(), checkpointInterval(p.cfg.Timing), func() {
		if err := p.checkAcks(ctx, time.Now()); err != nil && ctx.Err() == nil {
			p.log.Error("acknowledged-change check failed", "err", err)
		}
	})
	return nil
}
