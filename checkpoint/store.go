package checkpoint

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Checkpoints live in the origin as snapshot parts of their namespace
// (origin.SnapshotParts, which every store has), beside the snapshot
// objects and never confused with them: the latest checkpoint under
// LatestName, and the proof of the snapshot at version V under
// ProofName(V), so that a reader who read a snapshot finds its proof by
// the snapshot's own Version, whatever was written since.

// LatestName is the part name of a namespace's latest checkpoint.
const LatestName = "checkpoint"

// ProofName returns the part name of the proof of the snapshot at v:
// "ckpt-" and v in 16 hex digits. (Snapshot parts the origin package
// writes start with a hex version and a '-'; "ckpt" is not hex.)
func ProofName(v record.Version) string { return "ckpt-" + v.String() }

// MaxProofSize bounds a stored proof read back.
const MaxProofSize = MaxEncodedSize + 16 + MaxAbove*(3+record.MaxKeyLen+1+8+record.SealDigestLen)

// PutLatest stores c as the latest checkpoint of its namespace.
func PutLatest(ctx context.Context, p origin.SnapshotParts, c *Checkpoint) error {
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := p.PutSnapshotPart(ctx, c.Namespace, LatestName, b); err != nil {
		return fmt.Errorf("store checkpoint of %s: %w", c.Namespace, err)
	}
	return nil
}

// GetLatest reads the latest checkpoint of ns (origin.ErrNotFound when
// there is none). It verifies nothing.
func GetLatest(ctx context.Context, p origin.SnapshotParts, ns string) (*Checkpoint, error) {
	b, err := readPart(ctx, p, ns, LatestName, MaxEncodedSize)
	if err != nil {
		return nil, err
	}
	c, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint of %s: %w", ns, err)
	}
	if c.Namespace != ns {
		return nil, fmt.Errorf("checkpoint of %s: %w: holds one of %s", ns, ErrCorrupt, c.Namespace)
	}
	return c, nil
}

// PutProof stores proof under the name of its checkpoint's version.
func PutProof(ctx context.Context, p origin.SnapshotParts, proof *SnapshotProof) error {
	b, err := proof.Marshal()
	if err != nil {
		return err
	}
	ns := proof.Checkpoint.Namespace
	if err := p.PutSnapshotPart(ctx, ns, ProofName(proof.Checkpoint.Version), b); err != nil {
		return fmt.Errorf("store snapshot proof of %s: %w", ns, err)
	}
	return nil
}

// GetProof reads the proof of the snapshot of ns at version v
// (origin.ErrNotFound when there is none). It verifies nothing.
func GetProof(ctx context.Context, p origin.SnapshotParts, ns string, v record.Version) (*SnapshotProof, error) {
	b, err := readPart(ctx, p, ns, ProofName(v), MaxProofSize)
	if err != nil {
		return nil, err
	}
	proof, err := UnmarshalProof(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot proof of %s@%s: %w", ns, v, err)
	}
	if c := proof.Checkpoint; c.Namespace != ns || c.Version != v {
		return nil, fmt.Errorf("snapshot proof of %s@%s: %w: holds one of %s@%s", ns, v, ErrCorrupt, c.Namespace, c.Version)
	}
	return proof, nil
}

// DeleteProof removes the proof of the snapshot of ns at v; a missing one
// is not an error.
func DeleteProof(ctx context.Context, p origin.SnapshotParts, ns string, v record.Version) error {
	return p.DeleteSnapshotPart(ctx, ns, ProofName(v))
}

func readPart(ctx context.Context, p origin.SnapshotParts, ns, name string, limit int) ([]byte, error) {
	rc, err := p.GetSnapshotPart(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", name, ns, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s of %s: %w: larger than %s bytes", name, ns, ErrCorrupt, strconv.Itoa(limit))
	}
	return b, nil
}
