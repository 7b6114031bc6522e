package publisher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/metricset"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// maxCheckpointInterval is the longest checkpointInterval: a namespace
// that changes gets a checkpoint about every second.
const maxCheckpointInterval = time.Second

// checkpointInterval is how often the issuer reads the change log, and the
// least time between two checkpoints of a namespace while it changes:
// every Timing.LogInterval (as often as the nodes read the log), at most
// every second, and at least four times in a checkpoint's lifetime (a quiet
// namespace's is renewed before half of it has passed).
func checkpointInterval(t origin.Timing) time.Duration {
	d := maxCheckpointInterval
	if t.LogInterval > 0 {
		d = min(d, t.LogInterval)
	}
	if t.CheckpointLifetime > 0 {
		d = min(d, t.CheckpointLifetime/4)
	}
	return d
}

// validateCheckpoints checks Config.IssueCheckpoints against the rest.
func (c *Config) validateCheckpoints() error {
	switch {
	case c.IssueCheckpoints && c.Signer == nil:
		return errors.New("publisher: IssueCheckpoints needs a Signer: checkpoints are signed")
	case c.IssueCheckpoints && c.Timing.CheckpointLifetime <= 0:
		return fmt.Errorf("publisher: IssueCheckpoints needs a positive Timing.CheckpointLifetime, got %v", c.Timing.CheckpointLifetime)
	}
	return nil
}

// issuer keeps, per namespace, the state the origin holds (from the latest
// snapshot and the change log after it, O(1) per change) and issues and
// stores its checkpoints and the proofs of the snapshots the publisher
// writes.
type issuer struct {
	p     *Publisher
	every time.Duration        // checkpointInterval of the publisher's Timing
	parts origin.SnapshotParts // nil: the store keeps no checkpoints
	own   *sign.Verifier       // the signer's own key, to read back its proofs
	m     issuerMetrics

	// running guards against two loops over one issuer.
	running sync.Mutex

	// mu serializes ticks and snapshot hooks: each reads and moves the
	// namespaces' states. Held across origin I/O; nothing else waits on it.
	mu sync.Mutex
	ns map[string]*nsIssue
}

// nsIssue is one namespace's issuing state.
type nsIssue struct {
	st *checkpoint.State
	// cursor: st holds every change at or below it, none above.
	cursor record.Version
	// ready: st.At answers at or above it (a snapshot loaded without its
	// proof may hold records above its version, which nothing can undo).
	ready record.Version
	// snapVersion is the version of the latest snapshot, above maps the
	// keys whose record in it is newer than snapVersion to that version.
	snapVersion record.Version
	above       map[string]record.Version
	// proving: this process writes the namespace's snapshots, so the
	// journal is kept back to snapVersion for the next proof.
	proving bool
	// last is the latest checkpoint issued (or found in the origin).
	last *checkpoint.Checkpoint
	// lastProof, prevProof: versions of the two newest snapshot proofs
	// stored (older ones are deleted).
	lastProof, prevProof record.Version
}

type issuerMetrics struct {
	issued, proofs, errors, skipped prometheus.Counter
}

func newIssuer(p *Publisher) (*issuer, error) {
	own, err := sign.NewVerifier(p.cfg.Signer.Public())
	if err != nil {
		return nil, err
	}
	counter := metricset.Subsystem("publisher").Counter
	is := &issuer{p: p, every: checkpointInterval(p.cfg.Timing), own: own, ns: make(map[string]*nsIssue), m: issuerMetrics{
		issued:  counter("checkpoints_issued_total", "Signed namespace checkpoints issued."),
		proofs:  counter("snapshot_proofs_total", "Snapshot proofs (the checkpoint at a snapshot's version) written."),
		errors:  counter("checkpoint_errors_total", "Checkpoint passes or snapshot proofs that failed (origin errors); retried."),
		skipped: counter("snapshot_proofs_skipped_total", "Snapshots written without a proof, because the issuer's state could not reach the snapshot's version yet."),
	}}
	is.parts, _ = p.store.(origin.SnapshotParts)
	if err := metricset.Register(p.cfg.Registerer, "publisher checkpoint", "give each publisher its own Registerer",
		is.m.issued, is.m.proofs, is.m.errors, is.m.skipped); err != nil {
		return nil, err
	}
	return is, nil
}

// ErrNoCheckpoints means RunCheckpoints was called on a publisher that
// issues none (Config.IssueCheckpoints false).
var ErrNoCheckpoints = errors.New("publisher: checkpoints not configured")

// RunCheckpoints issues checkpoints until ctx is done, when it returns nil:
// every Timing.LogInterval, at most every second (and at least four times
// per Timing.CheckpointLifetime), it reads the change log, brings each
// namespace's state up to now minus Timing.LogSettle (what the log can be
// trusted to hold), and issues a checkpoint of a namespace whose state
// changed (at most one per that interval) or whose last checkpoint is half
// its lifetime old. The namespaces are those the publisher snapshots
// (Config.Namespaces, those it wrote) and those the change log names; the
// state of each starts from its snapshot (exactly at the snapshot's
// version when the snapshot has a proof, else from the newest record in
// it on) and follows the log, O(1) per change. Each checkpoint is stored
// in the origin beside the namespace's snapshot (checkpoint.PutLatest). Run calls it; a process that holds the signing key but
// does not Run (the outbox sync) calls it itself. Failures are logged,
// counted and retried on the next tick.
func (p *Publisher) RunCheckpoints(ctx context.Context) error {
	is := p.ckpt
	if is == nil {
		return ErrNoCheckpoints
	}
	if !is.running.TryLock() {
		return errors.New("publisher: RunCheckpoints already running")
	}
	defer is.running.Unlock()
	t := time.NewTicker(is.every)
	defer t.Stop()
	for {
		now := time.Now()
		if _, err := is.tick(ctx, now); err != nil && ctx.Err() == nil {
			is.m.errors.Inc()
			p.log.Error("checkpoint pass failed", "err", err)
		}
		// The writes this process acknowledged, against the log again
		// until a checkpoint covers them: another issuer may have read
		// the log after a bucket writer removed one (see acks).
		if err := p.checkAcks(ctx, now); err != nil && ctx.Err() == nil {
			p.log.Error("acknowledged-change check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// IssueCheckpoints runs one pass of RunCheckpoints at time now and returns
// the checkpoints it issued.
func (p *Publisher) IssueCheckpoints(ctx context.Context, now time.Time) ([]*checkpoint.Checkpoint, error) {
	if p.ckpt == nil {
		return nil, ErrNoCheckpoints
	}
	return p.ckpt.tick(ctx, now)
}

// settled is the newest version the change log can be trusted to hold
// whole when read after now.
func (is *issuer) settled(now time.Time) record.Version {
	return record.MakeVersion(now.Add(-is.p.cfg.Timing.LogSettle), 0)
}

func (is *issuer) tick(ctx context.Context, now time.Time) ([]*checkpoint.Checkpoint, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	target := is.settled(now)
	var errs []error
	for _, ns := range is.p.namespaces() {
		if _, err := is.load(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	found, err := is.advance(ctx, target, nil)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	// Namespaces first seen in the log (written by another publisher):
	// loaded from their snapshot and brought to the same cursor.
	for _, ns := range found {
		n, err := is.load(ctx, ns)
		if err == nil {
			_, err = is.advance(ctx, target, n)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	var out []*checkpoint.Checkpoint
	names := make([]string, 0, len(is.ns))
	for ns := range is.ns {
		names = append(names, ns)
	}
	sort.Strings(names)
	for _, ns := range names {
		c, err := is.maybeIssue(ctx, ns, is.ns[ns], now)
		if err != nil {
			errs = append(errs, err)
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}

// load returns the issuing state of ns, building it on first use from the
// namespace's snapshot (and, when there is one, its proof) and reading
// the latest checkpoint stored.
func (is *issuer) load(ctx context.Context, ns string) (*nsIssue, error) {
	if n := is.ns[ns]; n != nil {
		return n, nil
	}
	var snap record.Snapshot
	var err error
	if is.parts != nil {
		snap, err = origin.ReadSnapshot(ctx, is.parts, ns)
	} else {
		snap, err = is.p.store.GetSnapshot(ctx, ns)
	}
	switch {
	case errors.Is(err, origin.ErrNotFound):
		snap = record.Snapshot{Namespace: ns}
	case err != nil:
		return nil, fmt.Errorf("checkpoint %s: read snapshot: %w", ns, err)
	}
	n := &nsIssue{st: checkpoint.NewState(ns), cursor: snap.Version, ready: snap.Version, snapVersion: snap.Version, above: map[string]record.Version{}}
	var proof *checkpoint.SnapshotProof
	if is.parts != nil && snap.Version > 0 {
		proof, err = checkpoint.GetProof(ctx, is.parts, ns, snap.Version)
		if err == nil {
			// Our own proof, read back: check it as a node would (its
			// expiry aside), so a damaged one is never built upon.
			v := &checkpoint.Verifier{Keys: is.own, Now: func() time.Time { return proof.Checkpoint.IssuedAt }}
			if verr := v.VerifySnapshot(snap, proof, nil); verr != nil {
				is.p.log.Warn("snapshot proof does not verify; rebuilding the state from the snapshot alone", "namespace", ns, "err", verr)
				proof = nil
			}
		} else if !errors.Is(err, origin.ErrNotFound) && !errors.Is(err, record.ErrCorrupt) {
			return nil, fmt.Errorf("checkpoint %s: read snapshot proof: %w", ns, err)
		} else {
			proof = nil
		}
	}
	atV := map[string]*statehash.Element{}
	if proof != nil {
		for _, a := range proof.Above {
			atV[a.Key] = a.Element
		}
		n.lastProof = snap.Version
	}
	for _, r := range snap.Records {
		e := statehash.ElementOf(r)
		if r.Version > snap.Version {
			n.above[r.Key] = r.Version
			if proof != nil {
				// The state exactly at the snapshot's version.
				if at := atV[r.Key]; at != nil {
					if _, err := n.st.Apply(*at); err != nil {
						return nil, err
					}
				}
				continue
			}
			n.ready = max(n.ready, r.Version)
		}
		if _, err := n.st.Apply(e); err != nil {
			return nil, err
		}
	}
	if proof != nil {
		n.st.SetFloor(proof.Checkpoint.TombstoneFloor)
	}
	n.st.Forget(n.ready)
	if is.parts != nil {
		last, err := checkpoint.GetLatest(ctx, is.parts, ns)
		switch {
		case err == nil:
			n.last = last
		case errors.Is(err, origin.ErrNotFound), errors.Is(err, record.ErrCorrupt):
		default:
			return nil, fmt.Errorf("checkpoint %s: read latest checkpoint: %w", ns, err)
		}
	}
	is.ns[ns] = n
	return n, nil
}

// advance applies the change log after the namespaces' cursors up to
// target to each namespace of only (nil: all loaded), and moves their
// cursors to target. It returns the namespaces the log named that are
// not loaded.
func (is *issuer) advance(ctx context.Context, target record.Version, only *nsIssue) ([]string, error) {
	from := target
	for _, n := range is.ns {
		if (only == nil || n == only) && n.cursor < from {
			from = n.cursor
		}
	}
	if from >= target && only != nil {
		return nil, nil
	}
	changes, err := is.p.changesSince(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read change log after %s: %w", from, err)
	}
	if only == nil {
		if missing := is.p.acks.missing(changes, from, target); len(missing) > 0 {
			// Signing past them would sign a state without them (a
			// hidden delete keeps verifying on every node that matches):
			// publish them again under fresh versions, which the log then
			// holds, and move no cursor this pass.
			return nil, fmt.Errorf("checkpoint: %w", is.p.republishMissing(ctx, missing))
		}
	}
	var found []string
	for _, c := range changes {
		n := is.ns[c.Namespace]
		if n == nil && only == nil && !slices.Contains(found, c.Namespace) && record.ValidateNamespace(c.Namespace) == nil {
			found = append(found, c.Namespace)
		}
		if c.Version > target {
			continue // not settled yet: the next pass takes it
		}
		if n == nil || (only != nil && n != only) || c.Version <= n.cursor {
			continue
		}
		if is.p.distrusts(c) != nil {
			// Verifying nodes refuse it: a state counting it would
			// match none of theirs (one forged entry would fail keys
			// closed fleetwide).
			continue
		}
		// Trusted, so sealed (distrusts refuses a change without a seal).
		e := statehash.Element{Namespace: c.Namespace, Key: c.Key, Version: c.Version, Tombstone: c.Tombstone, Digest: c.Seal.Digest}
		if _, err := n.st.Apply(e); err != nil {
			return nil, err
		}
	}
	for _, n := range is.ns {
		if (only == nil || n == only) && n.cursor < target {
			n.cursor = target
		}
	}
	return found, nil
}

// floor is the tombstone floor as of now: the snapshots forget tombstones
// older than the horizon.
func (is *issuer) floor(now time.Time) record.Version {
	if is.p.cfg.TombstoneHorizon <= 0 {
		return 0
	}
	return record.MakeVersion(now.Add(-is.p.cfg.TombstoneHorizon), 0)
}

// usable reports whether n's state at v is known.
func (n *nsIssue) usable(v record.Version) bool {
	return v >= n.ready && v <= n.cursor
}

// maybeIssue issues a checkpoint of ns at its cursor when one is due.
func (is *issuer) maybeIssue(ctx context.Context, ns string, n *nsIssue, now time.Time) (*checkpoint.Checkpoint, error) {
	n.st.SetFloor(is.floor(now))
	defer is.forget(n, now)
	if !n.usable(n.cursor) {
		return nil, nil
	}
	h := n.st.Hash()
	if l := n.last; l != nil {
		if n.cursor < l.Version || now.Before(l.IssuedAt) {
			return nil, nil // never issue one older than the last (a clock that went back)
		}
		age := now.Sub(l.IssuedAt)
		changed := !l.Hash.Equal(&h) || l.Count != n.st.Count()
		if !(changed && age >= is.every) && age < is.p.cfg.Timing.CheckpointLifetime/2 {
			return nil, nil
		}
	}
	c := &checkpoint.Checkpoint{Namespace: ns, Version: n.cursor, TombstoneFloor: n.st.Floor(), Count: n.st.Count(), Hash: h, IssuedAt: now, ExpiresAt: now.Add(is.p.cfg.Timing.CheckpointLifetime)}
	if n.last != nil {
		c.Prev = n.last.Version
	}
	if err := c.Sign(is.p.cfg.Signer); err != nil {
		return nil, err
	}
	if is.parts != nil {
		if err := checkpoint.PutLatest(ctx, is.parts, c); err != nil {
			return nil, err
		}
	}
	n.last = c
	is.m.issued.Inc()
	is.p.pushCheckpoint(c)
	return c, nil
}

// journalKeep is how far behind the settled version an issuer that writes
// no snapshots keeps its journal.
const journalKeep = 2 * origin.DefaultSnapshotLag

// forget trims n's journal to what the next snapshot proof can need: the
// state at the latest snapshot's version (the journal then holds the
// changes since, few, since snapshot versions follow the log), or, when
// this process writes no snapshots, a little behind the cursor.
func (is *issuer) forget(n *nsIssue, now time.Time) {
	keep := n.snapVersion
	if !n.proving {
		keep = max(keep, record.MakeVersion(now.Add(-is.p.cfg.Timing.LogSettle-journalKeep), 0))
	}
	n.st.Forget(min(keep, n.cursor))
}

// beforeSnapshot is called by each snapshot pass, under snapMu, before it
// reads the change log: the first one loads the namespace's state from the
// snapshot about to be replaced (and its proof), which the pass's delta
// then extends, so the new snapshot can be proved at once.
func (is *issuer) beforeSnapshot(ctx context.Context, ns string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if _, err := is.load(ctx, ns); err != nil {
		is.m.errors.Inc()
		is.p.log.Error("checkpoint: load namespace state failed", "namespace", ns, "err", err)
	}
}

// aboveKeys returns the keys whose record in the latest snapshot of ns is
// newer than the snapshot's version: the next pass reads them again, since
// the log may not name them (checked in changed).
func (is *issuer) aboveKeys(ns string) []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	n := is.ns[ns]
	if n == nil {
		return nil
	}
	keys := make([]string, 0, len(n.above))
	for k := range n.above {
		keys = append(keys, k)
	}
	return keys
}

// proveSnapshot is called by each snapshot pass, under snapMu, before it
// writes the snapshot of ns at version v: recs are the records the pass
// writes (all of them when whole). It stores the snapshot's proof first,
// so that no reader finds the snapshot without it (a crash in between
// leaves a proof of a snapshot never written, which is harmless): the
// checkpoint at v, and the states at v of the keys whose record in the
// snapshot is newer. Failures are logged and counted; the snapshot is
// written without a proof and the next pass proves its successor.
func (is *issuer) proveSnapshot(ctx context.Context, ns string, v record.Version, recs []record.Record, whole bool) {
	if is.parts == nil {
		return
	}
	if err := is.prove(ctx, ns, v, recs, whole, time.Now()); err != nil {
		is.m.errors.Inc()
		is.p.log.Error("snapshot proof failed", "namespace", ns, "version", v.String(), "err", err)
	}
}

func (is *issuer) prove(ctx context.Context, ns string, v record.Version, recs []record.Record, whole bool, now time.Time) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	n, err := is.load(ctx, ns)
	if err != nil {
		return err
	}
	if whole {
		clear(n.above)
	}
	for _, r := range recs {
		if r.Version > v {
			n.above[r.Key] = r.Version
		} else {
			delete(n.above, r.Key)
		}
	}
	for k, rv := range n.above {
		if rv <= v {
			delete(n.above, k)
		}
	}
	n.snapVersion = max(n.snapVersion, v)
	n.proving = true
	if n.cursor < v {
		if _, err := is.advance(ctx, min(v, is.settled(now)), n); err != nil {
			return err
		}
	}
	n.st.SetFloor(is.floor(now))
	if !n.usable(v) {
		is.m.skipped.Inc()
		is.p.log.Debug("snapshot written without a proof: the issuer's state does not reach its version yet",
			"namespace", ns, "version", v.String(), "cursor", n.cursor.String(), "ready", n.ready.String())
		return nil
	}
	h, cnt, err := n.st.At(v)
	if err != nil {
		is.m.skipped.Inc()
		return nil //nolint:nilerr // the journal no longer reaches v: a later pass proves a later snapshot
	}
	keys := make([]string, 0, len(n.above))
	for k := range n.above {
		keys = append(keys, k)
	}
	els, err := n.st.ElementsAt(v, keys)
	if err != nil {
		return err
	}
	proof := &checkpoint.SnapshotProof{Checkpoint: &checkpoint.Checkpoint{
		Namespace: ns, Version: v, Prev: min(n.lastProof, v), TombstoneFloor: n.st.Floor(), Count: cnt, Hash: h,
		IssuedAt: now, ExpiresAt: now.Add(is.p.cfg.Timing.CheckpointLifetime),
	}}
	for _, k := range keys {
		proof.Above = append(proof.Above, checkpoint.AtVersion{Key: k, Element: els[k]})
	}
	if err := proof.Checkpoint.Sign(is.p.cfg.Signer); err != nil {
		return err
	}
	if err := checkpoint.PutProof(ctx, is.parts, proof); err != nil {
		return err
	}
	is.m.proofs.Inc()
	if v != n.lastProof {
		if n.prevProof != 0 && n.prevProof != v {
			// Two snapshots old: readers that still follow it retry.
			_ = checkpoint.DeleteProof(ctx, is.parts, ns, n.prevProof)
		}
		n.prevProof, n.lastProof = n.lastProof, v
	}
	is.forget(n, now)
	return nil
}
