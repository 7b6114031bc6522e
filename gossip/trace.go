package gossip

import "github.com/dataplane/dataplane/record"

// Tracer is an optional interface of an Applier: Trace is called for each
// step of a change's way through the node, so that a simulation (package
// fleetsim) can tell, for a late delivery, which path finally delivered it
// and why the faster ones did not. It is called from memberlist's packet
// loop and the node's own goroutines: it must be quick, must not block and
// must not call back into the Node. Nodes without it pay one type check
// per step.
type Tracer interface {
	Trace(TraceEvent)
}

// TraceKind is what a TraceEvent records.
type TraceKind uint8

const (
	// TraceSent: a push or relay message sent to Peer (Try 0 the first
	// send, then the retry number).
	TraceSent TraceKind = iota + 1
	// TraceReceived: a change arrived by Path (push, relay, gossip,
	// digest, log, local); Fresh if it was newer than anything held here
	// and went to the Applier.
	TraceReceived
	// TraceGaveUp: Peer never acknowledged the push or relay after every
	// retry.
	TraceGaveUp
	// TraceUnconfirmed: the change was queued for gossip repair because
	// some push was not confirmed (Peer: the first target given up on;
	// empty when the push went out without retries).
	TraceUnconfirmed
	// TraceNoTarget: the change was queued for gossip repair because the
	// push or relay had no target.
	TraceNoTarget
)

// TraceEvent is one step of a change's way through a node.
type TraceEvent struct {
	Kind      TraceKind
	Path      string // the message's path (see TraceKind)
	Peer      string // the other node, for TraceSent and TraceGaveUp
	Try       int    // TraceSent: 0 for the first send, then the retry number
	Fresh     bool   // TraceReceived: applied (newer than anything held)
	Namespace string
	Key       string
	Version   record.Version
}

// tracer returns the Applier's Tracer, or nil.
func (n *Node) tracer() Tracer {
	t, _ := n.applier.(Tracer)
	return t
}

// traceReceived traces the arrival of c with verdict v.
func (n *Node) traceReceived(c change, v verdict) {
	if t := n.tracer(); t != nil {
		t.Trace(TraceEvent{Kind: TraceReceived, Path: c.path.String(), Fresh: v == fresh || v == uncertain, Namespace: c.rec.Namespace, Key: c.rec.Key, Version: c.rec.Version})
	}
}
