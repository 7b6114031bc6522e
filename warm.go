package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/atomicfile"
	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// warm loads every configured namespace: from the origin's snapshot, or,
// when the origin cannot answer, from the local snapshot file. It returns
// the log position from which gossip must catch up (the oldest loaded
// snapshot's version; 0 when nothing was loaded) and whether every
// namespace could be accounted for.
func (n *Node) warm(ctx context.Context) (record.Version, bool) {
	resume, ok, _ := n.warmWith(ctx, false)
	return resume, ok
}

// warmAtOpen is Open's warm-up. Until Open returns nothing reads the
// cache, so a verifying node may apply a streamed origin snapshot's
// records as they are decoded while they are hashed on the other cores
// (provenOriginStream with applyEach), the match coming at the end:
// hashing then runs beside decoding and loading instead of before
// loading. If a snapshot applied that way is refused (its hash does not
// match, a seal does not verify, the stream fails), what it left is
// dropped with the whole cache, which is made anew, and the warm-up is
// done again verifying each snapshot before applying anything (warm): a
// snapshot that does not match its proof is refused whole either way.
func (n *Node) warmAtOpen(ctx context.Context) (record.Version, bool, error) {
	resume, ok, err := n.warmWith(ctx, true)
	if err == nil {
		return resume, ok, nil
	}
	n.log.Error("origin snapshot refused after its records were applied while it was hashed; dropping the cache and warming up again", "err", err)
	n.cache.Close()
	c, cerr := n.newCache()
	if cerr != nil {
		return 0, false, fmt.Errorf("dataplane: cache made anew after a refused snapshot: %w", cerr)
	}
	n.cache = c
	resume, ok = n.warm(ctx)
	return resume, ok, nil
}

// errAppliedUnproven: a snapshot whose records were applied while they
// were hashed was refused (warmAtOpen).
var errAppliedUnproven = errors.New("snapshot records applied before a match that failed")

// warmWith is warm; with applyEach (at Open only: see warmAtOpen) a
// verifying node applies a streamed proven snapshot's records while they
// are hashed, and the warm-up stops with an error wrapping
// errAppliedUnproven when such a snapshot is refused. Metrics count the
// warm-up only when it returns no error.
func (n *Node) warmWith(ctx context.Context, applyEach bool) (record.Version, bool, error) {
	resume := record.Version(math.MaxUint64)
	ok := true
	var sources []string
	defer func() {
		for _, s := range sources {
			n.m.warmSource.WithLabelValues(s).Inc()
		}
	}()
	for _, ns := range n.cfg.Namespaces {
		ts := n.trust.space(ns)
		var snap warmSnapshot
		var proof *checkpoint.SnapshotProof
		var err error
		var pw *provenWarm
		if ts != nil {
			// A verifying node verifies the snapshot whole before it
			// applies anything: streamed and hashed as it is decoded
			// when the origin streams and the snapshot has a proof
			// (provenOriginStream), else read whole
			// (trustedOriginSnapshot).
			var streamed bool
			pw, streamed, err = n.provenOriginStream(ctx, ns, ts, applyEach)
			if errors.Is(err, errAppliedUnproven) {
				sources = nil
				return 0, false, err
			}
			if pw != nil {
				snap.Snapshot, proof = pw.snap, pw.proof
			} else if !streamed {
				snap.Snapshot, proof, err = n.trustedOriginSnapshot(ctx, ns, ts, 0)
			}
		} else {
			snap, err = n.originSnapshot(ctx, ns)
		}
		source := "origin"
		switch {
		case err == nil:
		case errors.Is(err, origin.ErrNotFound):
			// Never snapshotted: nothing to load. The change log, read
			// from its start, makes the namespace complete (if it was
			// trimmed, the node recovers from snapshots once they exist).
			sources = append(sources, "none")
			if ts != nil {
				n.installState(ts, record.Snapshot{Namespace: ns}, nil)
			}
			n.setWarmed(ns)
			resume = min(resume, 1)
			continue
		default:
			n.log.Warn("origin snapshot unavailable, trying local file and peers", "namespace", ns, "err", err)
			var ferr error
			fctx, cancel := context.WithTimeout(ctx, n.cfg.WarmTimeout)
			snap.streamed = false
			snap.Snapshot, source, proof, ferr = n.loadFallback(fctx, ns)
			cancel()
			if ferr != nil {
				n.log.Error("namespace not warmed", "namespace", ns, "origin_err", err, "fallback_err", ferr)
				sources = append(sources, "failed")
				ok = false
				continue
			}
		}
		switch {
		case pw != nil:
			n.loadProvenStream(ts, pw)
		case proof != nil:
			n.loadProven(snap.Snapshot)
		case !snap.streamed:
			n.load(snap.Snapshot)
		}
		snapResume := snap.Version
		if ts != nil {
			if pw == nil {
				n.installState(ts, snap.Snapshot, proof)
			}
			snapResume = n.trustedResume(ts, snap.Snapshot, source, proof != nil)
		}
		if source == "origin" {
			n.overlayLocal(ns)
		}
		n.setWarmed(ns)
		sources = append(sources, source)
		if source != "peer" && proof == nil {
			// A peer's Version is its own unsigned claim: it may have
			// left a revocation out, so it proves nothing for a
			// fail-closed namespace (the origin's snapshot and this
			// node's own file do).
			n.fresh.heardSnapshot(ns, snap.Version)
		}
		n.log.Info("namespace warmed", "namespace", ns, "source", source, "records", max(len(snap.Records), int(n.progress[ns].Load())), "version", snap.Version)
		resume = min(resume, snapResume)
	}
	if resume == math.MaxUint64 {
		resume = 0
	}
	return resume, ok, nil
}

// overlayLocal applies the records of ns's local snapshot file, if any,
// over what the origin's snapshot installed. The origin's snapshot may be
// older than what this node had learned (and served) before it stopped;
// the file's newer versions keep a restarted node from serving older ones
// (invariant 1 across a restart). Apply keeps the newer of the two per
// key, and the log position stays the origin snapshot's: every change
// after it, including those the file holds, is replayed from the log.
func (n *Node) overlayLocal(ns string) {
	if n.cfg.DataDir == "" {
		return
	}
	snap, err := n.loadLocal(ns)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			n.log.Warn("local snapshot file unreadable; warmed from the origin alone", "namespace", ns, "err", err)
		}
		return
	}
	// Only records newer than the version the node knows can change
	// anything (Apply keeps the newer): the others are left out before
	// load, which would otherwise check each one's signature (one
	// ed25519 verification per record of the file, with Config.Verifier,
	// for records the origin's snapshot just installed).
	kept := snap.Records[:0]
	for _, r := range snap.Records {
		if k, ok := n.cache.Known(ns, r.Key); ok && k.Version >= r.Version {
			continue
		}
		kept = append(kept, r)
	}
	clear(snap.Records[len(kept):])
	snap.Records = kept
	if newer := n.load(snap); newer > 0 {
		n.log.Info("local snapshot file newer than the origin's for some records", "namespace", ns, "records", newer)
	}
}

// rewarm retries the warm-up until it succeeds, then marks the node ready.
func (n *Node) rewarm() {
	defer n.wg.Done()
	tick.Until(n.stop, 2*time.Second, func() bool {
		resume, ok := n.warm(context.Background())
		if ok {
			// The log cursor was set at start; the state just loaded is
			// as of resume: read the log again from there.
			n.completeMu.Lock()
			n.needFrom = min(n.needFrom, resume)
			n.completeMu.Unlock()
			n.follower.Rewind(resume)
			n.ready.Store(true)
			n.log.Info("node warmed after retry")
		}
		return ok
	})
}

func (n *Node) localPath(ns string) string {
	return filepath.Join(n.cfg.DataDir, ns+".snapshot")
}

// loadFallback loads ns from the local snapshot file, or else from the
// first peer that has it whole; source names where it came from.
func (n *Node) loadFallback(ctx context.Context, ns string) (snap record.Snapshot, source string, proof *checkpoint.SnapshotProof, err error) {
	ts := n.trust.space(ns)
	snap, err = n.loadLocal(ns)
	if err == nil && ts != nil {
		err = n.checkFallback(ts, snap, "local")
	}
	if err == nil {
		return snap, "local", nil, nil
	}
	errs := []error{fmt.Errorf("local file: %w", err)}
	for i, p := range n.cfg.Peers {
		if pp, ok := p.(ProvenSnapshotSource); ok && ts != nil {
			var proof *checkpoint.SnapshotProof
			snap, proof, err = n.provenPeerSnapshot(ctx, pp, ns, ts)
			if err == nil {
				return snap, "peer", proof, nil
			}
			errs = append(errs, fmt.Errorf("peer %d, proven: %w", i+1, err))
		}
		snap, err = p.GetSnapshot(ctx, ns)
		if err == nil && snap.Namespace != ns {
			err = fmt.Errorf("answered with the snapshot of %q", snap.Namespace)
		}
		if err == nil && ts != nil {
			err = n.checkFallback(ts, snap, "peer")
		}
		if err == nil {
			return snap, "peer", nil, nil
		}
		errs = append(errs, fmt.Errorf("peer %d: %w", i+1, err))
	}
	return record.Snapshot{}, "", nil, errors.Join(errs...)
}

func (n *Node) loadLocal(ns string) (record.Snapshot, error) {
	if n.cfg.DataDir == "" {
		return record.Snapshot{}, errors.New("no DataDir configured")
	}
	b, err := os.ReadFile(n.localPath(ns))
	if err != nil {
		return record.Snapshot{}, err
	}
	snap, err := record.UnmarshalSnapshot(b)
	if err != nil {
		return record.Snapshot{}, fmt.Errorf("local snapshot %s: %w", n.localPath(ns), err)
	}
	if snap.Namespace != ns {
		return record.Snapshot{}, fmt.Errorf("local snapshot %s holds namespace %q", n.localPath(ns), snap.Namespace)
	}
	return snap, nil
}

func (n *Node) snapshotLoop() {
	defer n.wg.Done()
	tick.Every(n.stop, n.cfg.LocalSnapshotInterval, n.writeLocalSnapshots)
}

// writeLocalSnapshots writes one file per configured namespace with what
// the node knows of it (see Snapshot): its version is the log cursor, so a
// restart resumes the log where this node was, however old its entries.
func (n *Node) writeLocalSnapshots() {
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		n.m.localSnapErrs.Inc()
		n.log.Error("local snapshot dir", "err", err)
		return
	}
	kept := make(map[string]*checkpoint.Checkpoint)
	for ns, ts := range n.trust.spaces {
		kept[ns] = ts.matchedNow() // before the files: they are at least as new
	}
	byNS := n.snapshots(n.cfg.Namespaces)
	for _, s := range byNS {
		b, err := record.MarshalSnapshot(*s)
		if err == nil {
			err = atomicfile.Write(n.localPath(s.Namespace), b)
		}
		if err != nil {
			n.m.localSnapErrs.Inc()
			n.log.Error("local snapshot write failed", "namespace", s.Namespace, "err", err)
			continue
		}
		// After the file: a crash between the two leaves a file newer
		// than the kept checkpoint, never older (see checkFallback).
		if ts := n.trust.space(s.Namespace); ts != nil {
			n.trust.persist(ts, kept[s.Namespace])
		}
	}
}

// warmBatch is how many streamed records are applied (and verified) at once.
const warmBatch = 512

// load applies a snapshot the node reads at start (from the origin, a local
// file or a peer): its records, then the versions it knows without a value.
// It returns how many were news.
func (n *Node) load(snap record.Snapshot) int {
	newer := n.cache.ApplyBatch(snap.Records) // signatures checked on every core
	for _, c := range snap.Known {
		if n.cfg.Verifier != nil {
			if c.Seal == nil {
				continue // a node's own version index keeps no signatures; the log restores these
			}
			if n.cfg.Verifier.VerifyChange(c) != nil {
				n.m.knownRefused.Inc()
				continue
			}
		}
		if c.Tombstone {
			if n.cache.Apply(record.Record{Namespace: snap.Namespace, Key: c.Key, Version: c.Version, Tombstone: true, Seal: c.Seal}) {
				newer++
			}
		} else if n.cache.Invalidate(snap.Namespace, c.Key, c.Version) {
			newer++
		}
	}
	return newer
}

// setWarmed records that namespace ns was loaded whole.
func (n *Node) setWarmed(ns string) {
	n.completeMu.Lock()
	n.warmed[ns] = true
	n.completeMu.Unlock()
}

// warmSnapshot is a snapshot read at warm-up; streamed means its records
// were applied as they arrived (Records is empty).
type warmSnapshot struct {
	record.Snapshot
	streamed bool
}

// originSnapshot loads ns's snapshot from the origin. A store that can
// stream it (origin.SnapshotOpener) has its records applied as they arrive,
// and the read is abandoned only when no record has arrived for
// WarmTimeout: a namespace of millions of records takes as long as it
// takes, a stalled read does not. Other stores are read whole within
// WarmTimeout.
func (n *Node) originSnapshot(ctx context.Context, ns string) (warmSnapshot, error) {
	progress := n.progress[ns]
	progress.Store(0)
	opener, ok := n.cfg.Origin.(origin.SnapshotOpener)
	if !ok {
		ctx, cancel := context.WithTimeout(ctx, n.cfg.WarmTimeout)
		defer cancel()
		snap, err := n.cfg.Origin.GetSnapshot(ctx, ns)
		progress.Store(int64(len(snap.Records)))
		return warmSnapshot{Snapshot: snap}, err
	}
	ctx, stop := n.watchProgress(ctx, ns)
	defer stop()
	st, err := opener.OpenSnapshot(ctx, ns)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, origin.ErrNotFound) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		return warmSnapshot{}, err
	}
	defer st.Close()
	// With signatures to check (Config.Verifier), records are applied in
	// batches, so that the checks run on every core at once.
	size := 1
	if n.cfg.Verifier != nil {
		size = warmBatch
	}
	batch := make([]record.Record, 0, size)
	flush := func() {
		n.cache.ApplyBatch(batch)
		clear(batch) // let the values go
		batch = batch[:0]
	}
	for {
		r, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			flush()
			if cause := context.Cause(ctx); cause != nil {
				err = fmt.Errorf("%w (%w)", err, cause)
			}
			return warmSnapshot{}, err
		}
		batch = append(batch, r)
		progress.Add(1)
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	snap := warmSnapshot{Snapshot: record.Snapshot{Namespace: ns, Version: st.Version(), Known: st.Known()}, streamed: true}
	n.load(snap.Snapshot) // the Known versions
	return snap, nil
}

// watchProgress returns ctx cancelled when no record of ns has arrived
// (n.progress[ns]) for WarmTimeout: a streamed warm-up's watchdog, which
// bounds progress, not total time. stop ends it.
func (n *Node) watchProgress(ctx context.Context, ns string) (_ context.Context, stop func()) {
	progress := n.progress[ns]
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(n.cfg.WarmTimeout)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			cur := progress.Load()
			if cur == last {
				cancel(fmt.Errorf("warm-up of %s: no record for %v (Config.WarmTimeout, -warm-timeout)", ns, n.cfg.WarmTimeout))
				return
			}
			last = cur
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}
