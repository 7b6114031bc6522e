package cachenode

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// partCache serves the snapshot parts signed checkpoints need (the latest
// checkpoint of a namespace, and the proof of its snapshot at a version)
// from the origin's SnapshotParts, sharing origin reads among the region's
// readers and never answering an older part than one it has read.
//
// Every sentinel behind the tier reads each namespace's latest checkpoint
// before each change-log read, so, like the log (logTail), one origin read
// of a part answers every request for it up to ttl (proofTTL for proofs)
// after it started; concurrent requests wait for one read.
//
// Freshness: checkpoints are short-lived and ordered (a higher Version, or
// the same Version issued later, is newer: checkpoint.Verifier.Verify's
// order). The node keeps, per part, the newest it accepted and answers that
// one whatever a later read returns: an origin read that gives an older
// one (a replica behind, a restored bucket, a writer rolling it back), none
// (deleted) or fails leaves the newer one served. It accepts a part only
// if it decodes as what its name says, of the namespace and version asked,
// and is not from the future (issued, or at a version, more than skew
// ahead of the node's clock), so a forged checkpoint can hold back the
// real ones for at most about skew plus the publisher's LogSettle; with a
// Verifier it must also be signed by a trusted key, and one that is not
// is never served. The node is not trusted by its readers all the same:
// they verify every part (package checkpoint).
type partCache struct {
	parts    origin.SnapshotParts // nil: the origin keeps none
	v        *checkpoint.Verifier // nil: no signature checks
	skew     time.Duration
	ttl      time.Duration // latest checkpoints; <= 0: every request reads
	proofTTL time.Duration // proofs; <= 0: every request reads
	wait     time.Duration // bounds each origin read
	now      func() time.Time

	// mu guards entries.
	mu      sync.Mutex
	entries map[partKey]*partEntry

	origin atomic.Int64 // origin reads made
	shared atomic.Int64 // requests answered by another request's read
}

// maxProofEntries bounds the proofs held (a namespace's readers ask for
// the proof of its current snapshot, rarely more than two versions).
const maxProofEntries = 64

type partKey struct{ ns, name string }

// partEntry is what the node holds of one part.
type partEntry struct {
	proof  bool
	held   []byte                 // the newest accepted encoding; nil none
	ckpt   *checkpoint.Checkpoint // held's checkpoint (a proof's own)
	readAt time.Time              // when the last origin read started
	flight chan struct{}          // open while an origin read is in flight
	err    error                  // the last read's failure; nil after a success
}

// get returns part name of ns (a name wire.CheckpointPart accepts), and
// whether the answer came from a read another request made.
func (c *partCache) get(ctx context.Context, ns, name string, proof bool) ([]byte, bool, error) {
	if c.parts == nil {
		return nil, false, fmt.Errorf("%s of %s: %w: the origin keeps no snapshot parts", name, ns, origin.ErrNotFound)
	}
	ttl := c.ttl
	if proof {
		ttl = c.proofTTL
	}
	k := partKey{ns, name}
	c.mu.Lock()
	e := c.entries[k]
	isNew := e == nil
	if isNew {
		e = &partEntry{proof: proof}
		c.entries[k] = e
	}
	ch, mine := e.flight, false
	if ch == nil && (e.held == nil || ttl <= 0 || c.now().Sub(e.readAt) > ttl) {
		ch, mine = make(chan struct{}), true
		e.flight, e.readAt = ch, c.now()
	}
	if isNew && proof {
		c.evictProofs() // after the flight is set: never the new entry
	}
	c.mu.Unlock()
	if mine {
		c.read(ctx, k, e, ch)
	} else if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, true, fmt.Errorf("%s of %s: %w: %w", name, ns, origin.ErrUnavailable, ctx.Err())
		}
	}
	if !mine {
		c.shared.Add(1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.held != nil {
		return e.held, !mine, nil
	}
	if e.err == nil { // another reader's flight ended before ours began
		return nil, !mine, fmt.Errorf("%s of %s: %w", name, ns, origin.ErrNotFound)
	}
	return nil, !mine, e.err
}

// read makes one origin read of k for the requests waiting on ch, and
// keeps its answer if it is newer than the held one. It runs to its end
// even if the request that started it goes away: others wait for it.
func (c *partCache) read(ctx context.Context, k partKey, e *partEntry, ch chan struct{}) {
	c.origin.Add(1)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.wait)
	b, err := c.readPart(rctx, k)
	cancel()
	var got *checkpoint.Checkpoint
	if err == nil {
		got, err = c.check(k, b, e.proof)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e.err = err
	if err == nil && (e.ckpt == nil || newer(got, e.ckpt)) {
		e.held, e.ckpt = b, got
	}
	e.flight = nil
	close(ch)
	if e.held == nil && c.entries[k] == e {
		delete(c.entries, k) // nothing to hold: no memory for names never found
	}
}

func (c *partCache) readPart(ctx context.Context, k partKey) ([]byte, error) {
	limit := int64(checkpoint.MaxEncodedSize)
	if _, proof, _ := wire.CheckpointPart(k.name); proof {
		limit = checkpoint.MaxProofSize
	}
	rc, err := c.parts.GetSnapshotPart(ctx, k.ns, k.name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s of %s: %v", origin.ErrUnavailable, k.name, k.ns, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s of %s: %w: larger than %d bytes", k.name, k.ns, record.ErrCorrupt, limit)
	}
	return b, nil
}

// check decodes b as part k and returns its checkpoint if the node may
// serve it (see partCache); a refusal wraps record.ErrCorrupt.
func (c *partCache) check(k partKey, b []byte, proof bool) (*checkpoint.Checkpoint, error) {
	var ck *checkpoint.Checkpoint
	if proof {
		v, _, _ := wire.CheckpointPart(k.name)
		p, err := checkpoint.UnmarshalProof(b)
		if err != nil {
			return nil, fmt.Errorf("%s of %s: %w", k.name, k.ns, err)
		}
		if p.Checkpoint.Namespace != k.ns || p.Checkpoint.Version != v {
			return nil, fmt.Errorf("%s of %s: %w: holds the proof of %s@%s", k.name, k.ns, record.ErrCorrupt, p.Checkpoint.Namespace, p.Checkpoint.Version)
		}
		ck = p.Checkpoint
	} else {
		var err error
		if ck, err = checkpoint.Unmarshal(b); err != nil {
			return nil, fmt.Errorf("%s of %s: %w", k.name, k.ns, err)
		}
		if ck.Namespace != k.ns {
			return nil, fmt.Errorf("%s of %s: %w: holds a checkpoint of %s", k.name, k.ns, record.ErrCorrupt, ck.Namespace)
		}
	}
	if c.v != nil {
		// Signed by a trusted key and not from the future; expiry is
		// the readers' to judge (a proof's checkpoint outlives it).
		if err := c.v.VerifyProof(ck, 0); err != nil {
			return nil, fmt.Errorf("%s of %s: %w: %w", k.name, k.ns, record.ErrCorrupt, err)
		}
		return ck, nil
	}
	if lim := c.now().Add(c.skew); ck.IssuedAt.After(lim) || ck.Version.Time().After(lim) {
		return nil, fmt.Errorf("%s of %s: %w: %w: %s is ahead of the node's clock", k.name, k.ns, record.ErrCorrupt, checkpoint.ErrFuture, ck)
	}
	return ck, nil
}

// offer takes a checkpoint received by gossip (see Server.OfferCheckpoint).
func (c *partCache) offer(raw []byte) error {
	ck, err := checkpoint.Unmarshal(raw)
	if err != nil {
		return err
	}
	if c.v == nil {
		return nil
	}
	if err := c.v.Verify(ck, nil); err != nil {
		return err
	}
	k := partKey{ck.Namespace, wire.LatestPartName}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		e = &partEntry{}
		c.entries[k] = e
	}
	if e.ckpt == nil || newer(ck, e.ckpt) {
		e.held, e.ckpt = append([]byte(nil), raw...), ck
	}
	return nil
}

// newer reports whether a is newer than b: a higher version, or the same
// version issued later.
func newer(a, b *checkpoint.Checkpoint) bool {
	return a.Version > b.Version || a.Version == b.Version && a.IssuedAt.After(b.IssuedAt)
}

// evictProofs drops the proofs read longest ago beyond maxProofEntries
// (never one being read). Called with mu held.
func (c *partCache) evictProofs() {
	n := 0
	for _, e := range c.entries {
		if e.proof {
			n++
		}
	}
	for ; n > maxProofEntries; n-- {
		var oldest partKey
		var at time.Time
		found := false
		for k, e := range c.entries {
			if e.proof && e.flight == nil && (!found || e.readAt.Before(at)) {
				oldest, at, found = k, e.readAt, true
			}
		}
		if !found {
			return
		}
		delete(c.entries, oldest)
	}
}
