package dataplane

// PushCheckpoint takes a signed checkpoint (checkpoint.Marshal's bytes)
// itself, as one received (verify, match), and spreads it to the gossip
// cluster (see gossip.Node.PushCheckpoint; nothing more on a node without
// one): with Publish, it makes a node that a publisher notifies spread the
// publisher's checkpoints (publisher.CheckpointPusher). A checkpoint this
// node refuses is still spread: the others verify it themselves.
//
// Gossip does not send a push to its sender, so without taking it here
// the publisher's own node matched only the checkpoints its log reads
// brought: with the push of a delete lost it failed closed at D instead
// of reading the log on the mismatch (BENCHMARKS.md "Revocation time").
func (n *Node) PushCheckpoint(raw []byte) error {
	if err := n.offerCheckpoint(raw, "publisher"); err != nil {
		n.log.Warn("checkpoint pushed through this node refused by it", "err", err)
	}
	if n.gossip == nil {
		return nil
	}
	return n.gossip.PushCheckpoint(raw)
}

// CheckShare returns an error wrapping gossip.ErrBadShare if Receipt would
// refuse share (see gossip.Node.CheckShare), and ErrNoGossip without a
// cluster: with Receipt, it lets a publisher refuse a write that asks to
// wait for a share no receipt can accept before making the write.
func (n *Node) CheckShare(share float64) error {
	if n.gossip == nil {
		return ErrNoGossip
	}
	return n.gossip.CheckShare(share)
}
