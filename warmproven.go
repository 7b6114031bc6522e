package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

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
// early or fails are refused whole: without applyEach nothing has been
// applied. Like
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
