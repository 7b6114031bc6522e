package dataplane

// PushCheckpoint spreads a signed checkpoint (checkpoint.Marshal's bytes)
// to the gossip cluster (see gossip.Node.PushCheckpoint), and does nothing
// on a node without one: with Publish, it makes a node that a publisher
// notifies spread the publisher's checkpoints
// (publisher.CheckpointPusher).
func (n *Node) PushCheckpoint(raw []byte) error {
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
