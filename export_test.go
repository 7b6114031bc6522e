package dataplane

import "github.com/dataplane/dataplane/record"

// Announce tells n that version v of ns/key exists, as a gossip message
// without its value would: through the node's ordering gate, to its
// watchers too. For tests that stage an announcement no publisher made.
func Announce(n *Node, ns, key string, v record.Version) {
	(*applier)(n).Invalidate(ns, key, v)
}

// Reload loads s into n's cache as a recovery from snapshots would, for
// benchmarks of that path.
func Reload(n *Node, s record.Snapshot) []record.Change { return n.cache.Reload(s) }

// OfferCheckpoint hands n a checkpoint as gossip would.
func OfferCheckpoint(n *Node, raw []byte) error { return n.offerCheckpoint(raw, "test") }
