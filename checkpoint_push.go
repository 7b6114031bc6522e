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
