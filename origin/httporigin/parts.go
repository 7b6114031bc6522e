package httporigin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// ErrReadOnly is returned by writes to the view CheckpointParts returns:
// checkpoints are stored by the publisher in the origin itself, not through
// the cache tier.
var ErrReadOnly = errors.New("httporigin: checkpoint parts are read-only through the cache tier")

var _ origin.CheckpointPartsReader = (*Store)(nil)

// CheckpointParts implements origin.CheckpointPartsReader: a read-only
// view of the origin's checkpoint parts (package checkpoint: the latest
// checkpoint of a namespace and its snapshot proofs), read through the
// nodes' GET /v1/snapshots/{ns}/{part}, so that a node behind the tier
// verifies snapshots and matches checkpoints exactly as against the origin
// (dataplane.Config.Checkpoints defaults to it). All parts of a namespace
// go to one node (the node of its snapshot), so a region's readers share
// its origin reads. The Store does not implement origin.SnapshotParts
// itself: a publisher writing through the tier keeps writing whole
// snapshots.
//
// The nodes are not trusted for what they answer: they hold no signing
// key, and a reader verifies every checkpoint and proof it gets (package
// checkpoint). A node that lies (an old checkpoint, one of another
// namespace, a snapshot that leaves a key out) is refused like a bucket
// writer; it can withhold, as a down node can.
func (s *Store) CheckpointParts() origin.SnapshotParts { return checkpointParts{s} }

type checkpointParts struct{ s *Store }

// GetSnapshotPart reads part name of ns from the namespace's node, or from
// the fallback's parts when no node answers. Only the parts of package
// checkpoint are served (wire.CheckpointPart); others are refused with
// record.ErrInvalid before a request.
func (p checkpointParts) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	s := p.s
	if err := origin.CheckPartName(ns, name); err != nil {
		return nil, err
	}
	if _, _, ok := wire.CheckpointPart(name); !ok {
		return nil, fmt.Errorf("httporigin: snapshot part %s/%q: %w: cache nodes serve only checkpoints and snapshot proofs", ns, name, record.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("httporigin: get %s of %s: %w", name, ns, err)
	}
	rq := request{method: http.MethodGet, path: wire.SnapshotPartPath(ns, name), token: s.rtoken}
	var b []byte
	var rc io.ReadCloser
	fromFallback := false
	err := s.call(ctx, snapshotHash(ns), true, func(ctx context.Context, n *node) error {
		resp, err := s.exchange(ctx, n, rq, s.maxSnap)
		if err != nil {
			return err
		}
		b, err = decodePart(ns, name, s.maxSnap, resp.status, resp.body)
		return answer(n, err)
	}, func(fb origin.Store) (err error) {
		fromFallback = true
		fp := origin.CheckpointPartsOf(fb)
		if fp == nil {
			return fmt.Errorf("httporigin: get %s of %s: %w: no cache node answered and the fallback keeps no snapshot parts", name, ns, origin.ErrUnavailable)
		}
		rc, err = fp.GetSnapshotPart(ctx, ns, name)
		return err
	})
	switch {
	case fromFallback:
		return rc, err
	case err != nil:
		return nil, fmt.Errorf("httporigin: get %s of %s: %w", name, ns, err)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// PutSnapshotPart fails with ErrReadOnly.
func (checkpointParts) PutSnapshotPart(_ context.Context, ns, name string, _ []byte) error {
	return fmt.Errorf("put %s of %s: %w", name, ns, ErrReadOnly)
}

// DeleteSnapshotPart fails with ErrReadOnly.
func (checkpointParts) DeleteSnapshotPart(_ context.Context, ns, name string) error {
	return fmt.Errorf("delete %s of %s: %w", name, ns, ErrReadOnly)
}
