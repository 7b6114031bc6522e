package checkpoint

import (
	"fmt"

	"github.com/dataplane/dataplane/record"
)

// VerifyProof checks a snapshot's proof checkpoint for a node that loads
// the snapshot as a base to read the change log from, not as proof of
// freshness: signed by a trusted key, not from the future, and not older
// than floor (the version of the newest state the node has already
// proven; 0: none), with ErrRollback otherwise. Unlike Verify it does not
// refuse an expired checkpoint: a snapshot written ten minutes ago was
// the publisher's whole state at its version however old its proof is,
// and freshness comes only from a live checkpoint's match. Refusals are
// counted by Reason.
func (v *Verifier) VerifyProof(c *Checkpoint, floor record.Version) error {
	if c == nil {
		return v.refuse(fmt.Errorf("snapshot: %w", errUnsignedSnapshot))
	}
	if _, err := v.verifySigned(c); err != nil {
		return err
	}
	if c.Version < floor {
		return v.refuse(fmt.Errorf("%s: %w: the node already proved its state at %s", c, ErrRollback, floor))
	}
	return nil
}

// VerifyBase is VerifySnapshot for a snapshot loaded as a base (see
// VerifyProof): the proof's checkpoint by VerifyProof against floor, the
// seal of every record above its version, and the match of the whole
// snapshot.
func (v *Verifier) VerifyBase(snap record.Snapshot, proof *SnapshotProof, floor record.Version) error {
	return v.verifySnapshot(snap, proof, func(c *Checkpoint) error { return v.VerifyProof(c, floor) })
}
