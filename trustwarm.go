package dataplane

import (
	"context"
	"errors"
	"fmt"

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
//     decoded (provenOriginStream): at Open its records are applied as
//     they are hashed, and a refusal drops the whole cache, made anew
//     (warmAtOpen); on a later warm-up nothing is applied before the
//     whole snapshot matched. Other reads take the snapshot whole first.
//     A snapshot with a proof that does not verify is refused whole,
//     whatever the namespace's enforcement; one without a proof is
//     refused once the namespace is enforced. A refused snapshot at warm-up falls back to the local
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
