package publisher

import (
	"context"
	"errors"
	"fmt"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// Receipter is an optional interface of a Notifier that can tell which
// members of the fleet have applied a version (a *gossip.Node does).
type Receipter interface {
	Receipt(ctx context.Context, ns, key string, v record.Version, share float64) (gossip.Receipt, error)
}

var _ Receipter = (*gossip.Node)(nil)

// CheckpointPusher is an optional interface of a Notifier that spreads
// the checkpoints the publisher issues to the fleet (a *gossip.Node does:
// by gossip push, as it spreads changes). It must not block.
type CheckpointPusher interface {
	PushCheckpoint(raw []byte) error
}

var _ CheckpointPusher = (*gossip.Node)(nil)

// pushCheckpoint hands an issued checkpoint to the Notifier, if it is a
// CheckpointPusher. A failure is logged: the checkpoint is stored already,
// and the next one follows within a second while its namespace changes.
func (p *Publisher) pushCheckpoint(c *checkpoint.Checkpoint) {
	cp, ok := p.notify.(CheckpointPusher)
	if !ok {
		return
	}
	raw, err := c.Marshal()
	if err == nil {
		err = cp.PushCheckpoint(raw)
	}
	if err != nil {
		p.log.Warn("checkpoint not pushed to the fleet", "checkpoint", c.String(), "err", err)
	}
}

// ShareChecker is an optional interface of a Receipter that can tell
// before a write whether a share is one its receipts accept (a
// *gossip.Node does: not one that needs fewer than one member).
type ShareChecker interface {
	CheckShare(share float64) error
}

var _ ShareChecker = (*gossip.Node)(nil)

// CheckShare returns an error wrapping record.ErrInvalid if a receipt
// could not be asked for share (outside (0, 1], or needing fewer than one
// member), so that a write that will wait can be refused before it is
// made.
func (p *Publisher) CheckShare(share float64) error {
	if !(share > 0 && share <= 1) {
		return fmt.Errorf("%w: %w: got %v", record.ErrInvalid, gossip.ErrBadShare, share)
	}
	if sc, ok := p.notify.(ShareChecker); ok {
		if err := sc.CheckShare(share); err != nil {
			return fmt.Errorf("%w: %w", record.ErrInvalid, err)
		}
	}
	return nil
}

// ErrNoReceipts is returned by Receipt when the Publisher's Notifier cannot
// give receipts (none, or not a gossip node).
var ErrNoReceipts = errors.New("publisher: no fleet receipts: the notifier is not a gossip member")

// ErrNotApplied is returned (wrapped) by Receipt when the deadline passed
// before the share of every region applied the version; the receipt
// returned with it names the regions and nodes that had not.
var ErrNotApplied = errors.New("not applied by the requested share of every region before the deadline")

// Receipt waits until share (0 < share <= 1; 0 means 1) of the nodes of
// every region have applied rec's version of its key, or ctx ends (then
// the error wraps ErrNotApplied and the receipt says who had not). Call it
// right after the write (Put, Delete) that returned rec: the Publisher's
// gossip node then counts the acknowledgements of its own push. See
// gossip.Node.Receipt for what counts as applied.
func (p *Publisher) Receipt(ctx context.Context, rec record.Record, share float64) (gossip.Receipt, error) {
	rc, ok := p.notify.(Receipter)
	if !ok {
		return gossip.Receipt{}, ErrNoReceipts
	}
	r, err := rc.Receipt(ctx, rec.Namespace, rec.Key, rec.Version, share)
	switch {
	case err == nil && r.Met:
		p.m.receipts.WithLabelValues("met").Inc()
		return r, nil
	case errors.Is(err, gossip.ErrBadShare):
		return r, fmt.Errorf("%w: %w", record.ErrInvalid, err)
	case errors.Is(err, gossip.ErrRefused):
		p.m.receipts.WithLabelValues("refused").Inc()
		return r, fmt.Errorf("%w (regions %v): %w", ErrNotApplied, r.PendingRegions(), err)
	case err != nil && ctx.Err() != nil:
		p.m.receipts.WithLabelValues("incomplete").Inc()
		return r, fmt.Errorf("%w (regions %v): %w", ErrNotApplied, r.PendingRegions(), err)
	case err != nil:
		return r, err
	}
	p.m.receipts.WithLabelValues("incomplete").Inc()
	return r, fmt.Errorf("%w (regions %v)", ErrNotApplied, r.PendingRegions())
}
