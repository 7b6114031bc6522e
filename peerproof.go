package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
)

// ProvenSnapshotSource is an optional interface of a SnapshotSource: a
// peer that proves its answer with the last checkpoint its state matched
// (see Node.ProvenSnapshot). A verifying node prefers it; once it enforces
// checkpoints for a namespace, it takes a peer's snapshot only so proven.
type ProvenSnapshotSource interface {
	GetProvenSnapshot(ctx context.Context, ns string) (record.Snapshot, *checkpoint.SnapshotProof, error)
}

// ErrNoProof is returned by Node.ProvenSnapshot when the node cannot prove
// the namespace: it does not verify signatures, does not hold it whole,
// or its state has not matched a checkpoint yet.
var ErrNoProof = errors.New("dataplane: no checkpoint matched to prove the snapshot with")

// ProvenSnapshot returns what the node holds of ns whole, as of the last
// checkpoint its state matched, with the proof a peer verifies it by: the
// snapshot's Version is that checkpoint's V (the receiver reads the log
// from there, never from this node's cursor), its Records are every value
// held, and the proof carries the checkpoint and, for each record newer
// than V, the key's state at V (checkpoint.State.ElementsAt). A key whose
// state at V the node holds without its value (evicted, or announced
// without it) makes the receiver's match fail: it then refuses the answer
// whole. ErrNoProof when there is nothing to prove it with.
func (n *Node) ProvenSnapshot(ns string) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	s := n.trust.space(ns)
	if s == nil {
		return record.Snapshot{}, nil, ErrNoProof
	}
	// Held across the cache pass: the state must not be trimmed past the
	// matched checkpoint before ElementsAt (admits of ns wait meanwhile).
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.matched
	if c == nil || s.st == nil {
		return record.Snapshot{}, nil, ErrNoProof
	}
	snap := record.Snapshot{Namespace: ns, Version: c.Version}
	var above []string
	for e := range n.cache.All() {
		r := e.Record
		if r.Namespace != ns || r.Version == 0 {
			continue
		}
		snap.Records = append(snap.Records, r)
		if r.Version > c.Version {
			above = append(above, r.Key)
		}
	}
	els, err := s.st.ElementsAt(c.Version, above)
	if err != nil {
		return record.Snapshot{}, nil, fmt.Errorf("%w: %w", ErrNoProof, err)
	}
	proof := &checkpoint.SnapshotProof{Checkpoint: c}
	for _, k := range above {
		proof.Above = append(proof.Above, checkpoint.AtVersion{Key: k, Element: els[k]})
	}
	return snap, proof, nil
}

// ContentTypeProvenSnapshot is the body of a proven snapshot (a request
// with ?proof=1 to SnapshotHandler): see MarshalProvenSnapshot.
const ContentTypeProvenSnapshot = "application/vnd.dataplane.proven-snapshot"

// MarshalProvenSnapshot encodes a snapshot with its proof:
//
//	uvarint len + proof (checkpoint.SnapshotProof.Marshal) | snapshot
//	(record.MarshalSnapshot)
func MarshalProvenSnapshot(snap record.Snapshot, proof *checkpoint.SnapshotProof) ([]byte, error) {
	pb, err := proof.Marshal()
	if err != nil {
		return nil, err
	}
	sb, err := record.MarshalSnapshot(snap)
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(pb)+len(sb)), uint64(len(pb)))
	b = append(b, pb...)
	return append(b, sb...), nil
}

// UnmarshalProvenSnapshot decodes MarshalProvenSnapshot's encoding; any
// other input is an error wrapping record.ErrCorrupt. It verifies nothing.
func UnmarshalProvenSnapshot(b []byte) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > checkpoint.MaxProofSize || n > uint64(len(b)-k) {
		return record.Snapshot{}, nil, fmt.Errorf("%w: proven snapshot: bad proof length", record.ErrCorrupt)
	}
	proof, err := checkpoint.UnmarshalProof(b[k : k+int(n)])
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	snap, err := record.UnmarshalSnapshot(b[k+int(n):])
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	if snap.Namespace != proof.Checkpoint.Namespace || snap.Version != proof.Checkpoint.Version {
		return record.Snapshot{}, nil, fmt.Errorf("%w: proven snapshot of %s@%s with a proof of %s@%s", record.ErrCorrupt, snap.Namespace, snap.Version, proof.Checkpoint.Namespace, proof.Checkpoint.Version)
	}
	return snap, proof, nil
}

// HTTPPeer is a SnapshotSource and ProvenSnapshotSource over one peer's
// SnapshotHandler.
type HTTPPeer struct {
	// URL is the base URL SnapshotHandler is mounted at
	// (http://host:port).
	URL string
	// Token is the peer's snapshot token.
	Token string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
}

var (
	_ SnapshotSource       = (*HTTPPeer)(nil)
	_ ProvenSnapshotSource = (*HTTPPeer)(nil)
)

// GetSnapshot implements SnapshotSource: the plain snapshot.
func (p *HTTPPeer) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	b, err := p.get(ctx, ns, false)
	if err != nil {
		return record.Snapshot{}, err
	}
	return record.UnmarshalSnapshot(b)
}

// GetProvenSnapshot implements ProvenSnapshotSource.
func (p *HTTPPeer) GetProvenSnapshot(ctx context.Context, ns string) (record.Snapshot, *checkpoint.SnapshotProof, error) {
	b, err := p.get(ctx, ns, true)
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	return UnmarshalProvenSnapshot(b)
}

func (p *HTTPPeer) get(ctx context.Context, ns string, proven bool) ([]byte, error) {
	if err := record.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	u := strings.TrimRight(p.URL, "/") + snapshotsPath + url.PathEscape(ns)
	if proven {
		u += "?proof=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.URL, err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, record.MaxSnapshotSize+checkpoint.MaxProofSize+16))
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("peer %s: snapshot of %s: %s: %s", p.URL, ns, resp.Status, strings.TrimSpace(string(b[:min(len(b), 200)])))
	}
	return b, nil
}
