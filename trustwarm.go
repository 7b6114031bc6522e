package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// Snapshots on a verifying node, for a namespace it holds whole (see
// trust). What each source proves:
//
//   - The origin's snapshot is read with its proof (checkpoint.GetProof
//     at the snapshot's version) and verified whole (checkpoint.Verifier.
//     StartBase, or VerifyBase): one signature for the namespace, a seal
//     per record above the proof's version, hashing for the rest (no
//     per-record signature at or below it). At warm-up, an origin that
//     streams snapshots has each batch hashed on every core as it is
//     decoded, and nothing is applied before the whole snapshot matched
//     (provenOriginStream); other reads take the snapshot whole first. A
//     snapshot with a proof
//     that does not verify is refused whole, whatever the namespace's
//     enforcement; one without a proof is refused once the namespace is
//     enforced. A refused snapshot at warm-up falls back to the local
//     file and peers; at recovery the node keeps what it serves. A
//     verified proof is the namespace's state at its version, so the
//     node's state hash is built exactly there; an unexpired one is also
//     a match (freshness as of its version). A snapshot older than the
//     newest state the node has matched is refused at recovery
//     (rollback); at warm-up an older one is loaded as a base, which
//     proves nothing until a checkpoint no older than the persisted one
//     matches.
//   - The local file (this node's own snapshot) is refused once enforced
//     if its version is below the persisted checkpoint's (written with
//     it), and the log is resumed from the persisted checkpoint's version,
//     not from the file's cursor.
//   - A peer's snapshot counts only with a proof (ProvenSnapshotSource,
//     HTTPPeer: the peer's last matched checkpoint and, for keys changed
//     since, their state at its version), verified whole like the
//     origin's and never older than the last checkpoint this node
//     verified; the log is then resumed from the proof's version. Once
//     enforced, an unproven peer answer is refused; before, it is loaded,
//     proves nothing, and the log is resumed from the last verified
//     checkpoint's version (or the log's start), never from the peer's
//     claimed cursor.

// errNoProof marks a snapshot refused for lack of a verifiable proof.
var errNoProof = errors.New("snapshot without a proof, refused: namespace checkpoints are enforced")

// trustedOriginSnapshot reads ns's origin snapshot whole and its proof, and
// verifies it (see above). floor is the rollback floor (0 at warm-up).
func (n *Node) trustedOriginSnapshot(ctx context.Context, ns string, s *nsTrust, floor record.Version) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	rctx, cancel := context.WithTimeout(ctx, n.cfg.WarmTimeout)
	defer cancel()
	snap, err := n.cfg.Origin.GetSnapshot(rctx, ns)
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	n.progress[ns].Store(int64(len(snap.Records)))
	var proof *checkpoint.SnapshotProof
	if n.cfg.Checkpoints != nil {
		proof, err = checkpoint.GetProof(rctx, n.cfg.Checkpoints, ns, snap.Version)
		switch {
		case errors.Is(err, origin.ErrNotFound):
			proof = nil
		case err != nil && errors.Is(err, checkpoint.ErrCorrupt):
			n.trust.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
			return record.Snapshot{}, nil, err
		case err != nil:
			return record.Snapshot{}, nil, err
		}
	}
	if proof == nil {
		if s.enforced.Load() {
			n.trust.m.refused.WithLabelValues("no_proof").Inc()
			n.log.Error("origin snapshot refused: no proof", "namespace", ns, "version", snap.Version)
			return record.Snapshot{}, nil, fmt.Errorf("origin snapshot of %s@%s: %w", ns, snap.Version, errNoProof)
		}
		return snap, nil, nil
	}
	if err := n.trust.v.VerifyBase(snap, proof, floor); err != nil {
		n.trust.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
		n.log.Error("origin snapshot refused: it does not verify whole against its signed proof", "namespace", ns, "version", snap.Version, "reason", checkpoint.Reason(err), "err", err)
		return record.Snapshot{}, nil, fmt.Errorf("origin snapshot of %s@%s: %w", ns, snap.Version, err)
	}
	return snap, proof, nil
}

// loadProven applies a snapshot whose proof verified: its records need no
// signature check (the hash binds those at or below the proof's version;
// the seals of those above were checked), its Known versions do.
func (n *Node) loadProven(snap record.Snapshot) {
	for _, r := range snap.Records {
		n.cache.ApplyVerified(r)
	}
	k := snap
	k.Records = nil
	n.load(k)
}

// installState builds and installs ns's state from a snapshot just loaded
// (proof nil: unproven; see stateFromSnapshot).
func (n *Node) installState(s *nsTrust, snap record.Snapshot, proof *checkpoint.SnapshotProof) {
	st := stateFromSnapshot(snap, proof, func(r record.Record) bool {
		k, ok := n.cache.Known(r.Namespace, r.Key)
		return ok && k.Version == r.Version
	})
	if proof == nil {
		for _, c := range snap.Known {
			if c.Seal == nil {
				continue
			}
			if k, ok := n.cache.Known(snap.Namespace, c.Key); ok && k.Version == c.Version {
				_, _ = st.Apply(statehash.Element{Namespace: snap.Namespace, Key: c.Key, Version: c.Version, Tombstone: c.Tombstone, Digest: c.Seal.Digest})
			}
		}
		n.setState(s, st, nil)
		return
	}
	n.setState(s, st, proof.Checkpoint)
}

// checkFallback decides whether a snapshot of a tracked namespace from the
// local file or a peer may be loaded (see above).
func (n *Node) checkFallback(s *nsTrust, snap record.Snapshot, source string) error {
	if !s.enforced.Load() {
		return nil
	}
	switch source {
	case "local":
		if f := s.floor(); snap.Version < f {
			n.trust.m.refused.WithLabelValues("rollback").Inc()
			return fmt.Errorf("local snapshot of %s@%s: %w: older than the last verified checkpoint %s", snap.Namespace, snap.Version, checkpoint.ErrRollback, f)
		}
		return nil
	default:
		n.trust.m.refused.WithLabelValues("no_proof").Inc()
		return fmt.Errorf("%s snapshot of %s: %w", source, snap.Namespace, errNoProof)
	}
}

// trustedResume is where the log is read from after loading snap from
// source for a tracked namespace: a proven snapshot's version, but never
// past the last verified checkpoint for a cursor that is only a file's or
// a peer's claim.
func (n *Node) trustedResume(s *nsTrust, snap record.Snapshot, source string, proven bool) record.Version {
	if source == "origin" || proven {
		return snap.Version
	}
	f := s.floor()
	if f == 0 {
		if source == "local" {
			return snap.Version // the node's own file, no checkpoint to bound it
		}
		return 1 // a peer's claim: read the whole log
	}
	return min(snap.Version, f)
}

// provenPeerSnapshot asks a peer for its proven snapshot of ns and
// verifies it whole (checkpoint.Verifier.VerifyBase) against the last
// checkpoint this node verified: a peer's proof older than that is a
// rollback.
func (n *Node) provenPeerSnapshot(ctx context.Context, p ProvenSnapshotSource, ns string, s *nsTrust) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	snap, proof, err := p.GetProvenSnapshot(ctx, ns)
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	if snap.Namespace != ns {
		return record.Snapshot{}, nil, fmt.Errorf("answered with the snapshot of %q", snap.Namespace)
	}
	if err := n.trust.v.VerifyBase(snap, proof, s.floor()); err != nil {
		n.trust.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
		n.log.Error("peer snapshot refused: it does not verify whole against its proof", "namespace", ns, "reason", checkpoint.Reason(err), "err", err)
		return record.Snapshot{}, nil, err
	}
	return snap, proof, nil
}

// provenBatch is how many records of a streamed proven snapshot are
// decoded before they are handed to the hashing workers (one worker's
// chunk).
const provenBatch = 1024

// provenWarm is an origin snapshot streamed and verified whole at
// warm-up (provenOriginStream): its header and Known versions (snap,
// Records nil), its records in the batches they were decoded in, its
// proof and the check that matched it.
type provenWarm struct {
	snap    record.Snapshot
	batches [][]record.Record
	proof   *checkpoint.SnapshotProof
	check   *checkpoint.SnapshotCheck
	// applied: the records are in the cache already (applyEach).
	applied bool
}

// provenOriginStream is trustedOriginSnapshot at warm-up (floor 0) for an
// origin that streams snapshots (origin.SnapshotOpener): it opens ns's
// snapshot, reads the proof of its version and verifies its checkpoint
// (checkpoint.Verifier.StartBase), then decodes the records in batches,
// each hashed on every core while the next is decoded (SnapshotCheck.
// Take: the records are held once), and returns them only once the whole
// snapshot matched (Finish). A snapshot that does not match, a record
// above the proof's version without a valid seal, a stream that ends
// early or fails are refused whole: nothing has been applied. Like
// originSnapshot, the read is abandoned only when no record arrives for
// WarmTimeout.
//
// With applyEach (Open's warm-up only: see warmAtOpen), each batch is
// also applied to the cache as soon as the workers have taken it, so
// that hashing runs beside decoding and loading; then any failure after
// the first batch was applied wraps errAppliedUnproven, and the caller
// must drop the cache.
//
// streamed false (and no error) means the caller reads the snapshot
// whole instead (trustedOriginSnapshot): the origin does not stream, the
// snapshot has no proof (whether that is refused is decided there), or a
// part of it was replaced during the read (ReadSnapshot retries that).
func (n *Node) provenOriginStream(ctx context.Context, ns string, s *nsTrust, applyEach bool) (pw *provenWarm, streamed bool, err error) {
	opener, ok := n.cfg.Origin.(origin.SnapshotOpener)
	if !ok || n.cfg.Checkpoints == nil {
		return nil, false, nil
	}
	progress := n.progress[ns]
	progress.Store(0)
	ctx, stop := n.watchProgress(ctx, ns)
	defer stop()
	withCause := func(err error) error {
		if cause := context.Cause(ctx); cause != nil {
			return fmt.Errorf("%w (%w)", err, cause)
		}
		return err
	}
	st, err := opener.OpenSnapshot(ctx, ns)
	if err != nil {
		if errors.Is(err, origin.ErrNotFound) {
			return nil, true, err
		}
		return nil, true, withCause(err)
	}
	defer st.Close()
	proof, err := checkpoint.GetProof(ctx, n.cfg.Checkpoints, ns, st.Version())
	switch {
	case errors.Is(err, origin.ErrNotFound):
		return nil, false, nil
	case err != nil && errors.Is(err, checkpoint.ErrCorrupt):
		n.trust.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
		return nil, true, err
	case err != nil:
		return nil, true, withCause(err)
	}
	refused := func(err error) error {
		n.trust.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
		n.log.Error("origin snapshot refused: it does not verify whole against its signed proof", "namespace", ns, "version", st.Version(), "reason", checkpoint.Reason(err), "err", err)
		return fmt.Errorf("origin snapshot of %s@%s: %w", ns, st.Version(), err)
	}
	check, err := n.trust.v.StartBase(ns, st.Version(), proof, 0)
	if err != nil {
		return nil, true, refused(err)
	}
	pw = &provenWarm{proof: proof, check: check, applied: applyEach}
	unproven := func(err error) error {
		if applyEach && len(pw.batches) > 0 {
			return fmt.Errorf("%w: %w", errAppliedUnproven, err)
		}
		return err
	}
	batch := make([]record.Record, 0, provenBatch)
	give := func() {
		check.Take(batch)
		pw.batches = append(pw.batches, batch)
		if applyEach {
			for _, r := range batch {
				n.cache.ApplyVerified(r)
			}
		}
		batch = make([]record.Record, 0, provenBatch)
	}
	for {
		r, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = check.Finish() // stops the workers; the records are dropped
			if errors.Is(err, origin.ErrNotFound) && ctx.Err() == nil && !(applyEach && len(pw.batches) > 0) {
				n.log.Warn("origin snapshot replaced during its read; reading it whole", "namespace", ns, "err", err)
				return nil, false, nil
			}
			return nil, true, unproven(withCause(err))
		}
		batch = append(batch, r)
		progress.Add(1)
		if len(batch) == cap(batch) {
			give()
		}
	}
	if len(batch) > 0 {
		give()
	}
	if err := check.Finish(); err != nil {
		return nil, true, unproven(refused(err))
	}
	pw.snap = record.Snapshot{Namespace: ns, Version: st.Version(), Known: st.Known()}
	return pw, true, nil
}

// loadProvenStream applies a snapshot provenOriginStream verified and
// installs ns's state from it: the records go to the cache (no signature
// check: the match binds those at or below the proof's version, the
// seals of those above were checked) while the state is built beside
// them from the digests the check computed (SnapshotCheck.State: nothing
// is hashed again), then the Known versions (verified one by one) and the
// state.
func (n *Node) loadProvenStream(s *nsTrust, pw *provenWarm) {
	var st *checkpoint.State
	var stErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, stErr = pw.check.State()
	}()
	if !pw.applied {
		for _, b := range pw.batches {
			for _, r := range b {
				n.cache.ApplyVerified(r)
			}
		}
	}
	n.load(pw.snap) // the Known versions; Records is nil
	<-done
	if stErr != nil {
		// Not after a match, unless the records changed: build it the
		// long way from what was loaded.
		n.log.Error("state of a proven snapshot not built from its check; hashing it again", "namespace", pw.snap.Namespace, "err", stErr)
		snap := pw.snap
		for _, b := range pw.batches {
			snap.Records = append(snap.Records, b...)
		}
		n.installState(s, snap, pw.proof)
		return
	}
	n.setState(s, st, pw.proof.Checkpoint)
}
