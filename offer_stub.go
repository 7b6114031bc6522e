package dataplane

// offerCheckpoint is handed every checkpoint gossip receives (raw:
// checkpoint.Marshal's bytes; source: "gossip/push" or "gossip/relay").
// A stub so that this branch builds: the trust branch implements it
// (verify, match, persist), and the lead deletes this file at merge.
func (n *Node) offerCheckpoint(raw []byte, source string) error { return nil }
