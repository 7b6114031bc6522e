package gossip

import (
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate connects a Node to memberlist's hooks. It is a separate type so
// that the hooks do not become exported methods of Node.
type delegate struct{ n *Node }

var _ memberlist.Delegate = delegate{}

// NodeMeta implements memberlist.Delegate: the node's region and its
// applied-version report (report.go).
func (d delegate) NodeMeta(limit int) []byte {
	meta := d.n.reports.currentMeta()
	if len(meta) > limit {
		return nil
	}
	return meta
}

// NotifyMsg implements memberlist.Delegate. It runs on memberlist's packet
// loop: decode (which copies), apply, and hand any sending to relayLoop.
func (d delegate) NotifyMsg(b []byte) {
	msg, err := decode(b)
	if err != nil {
		d.n.dropGarbage("message", len(b), err)
		return
	}
	switch {
	case msg.change != nil:
		d.n.handle(*msg.change)
	case msg.refusal != nil:
		d.n.gotRefusal(*msg.refusal)
	case msg.query != nil:
		d.n.answerQuery(*msg.query)
	case msg.checkpoint != nil:
		d.n.gotCheckpoint(*msg.checkpoint)
	case msg.ack != nil:
		awaited, reportTo, found := d.n.acks.ack(*msg.ack, &d.n.rtt)
		if awaited {
			d.n.m.acks.Inc()
		}
		if !found {
			// This node's relay no longer waits (its own targets all
			// acknowledged), but a co-relay that relayed because of its
			// relay message still passes its share's acks on here.
			reportTo = d.n.seen.reportTo(recentID(msg.ack.ns, msg.ack.key), msg.ack.version)
		}
		if reportTo != "" {
			// A relay passes its share's acks on to whoever pushed the
			// change to it (report.go).
			d.n.enqueue(job{ackTo: reportTo, ack: *msg.ack}, "ack")
		}
		d.n.reports.acked(*msg.ack)
	default:
		d.n.dropGarbage("message", len(b), errUnexpectedDigest)
	}
}

// GetBroadcasts implements memberlist.Delegate: the gossip repair queue.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	msgs := d.n.queue.GetBroadcasts(overhead, limit)
	if len(msgs) > 0 {
		d.n.m.sent.WithLabelValues(pathGossip.String()).Add(float64(len(msgs)))
	}
	return msgs
}

// LocalState implements memberlist.Delegate: this node's digest for a
// push/pull (periodic, or a join).
func (d delegate) LocalState(join bool) []byte {
	n := d.n
	dg := digest{highWater: n.HighWater(), changes: n.seen.newest(n.cfg.tune.DigestMaxBytes/minChangeSize + 1)}
	return encodeDigest(dg, n.cfg.tune.DigestMaxBytes)
}

// MergeRemoteState implements memberlist.Delegate: apply what the remote's
// digest has that this node lacks, and read the log if the digest shows a
// gap it does not cover.
func (d delegate) MergeRemoteState(b []byte, join bool) {
	n := d.n
	dg, err := decodeDigest(b)
	if err != nil {
		n.dropGarbage("digest", len(b), err)
		return
	}
	repaired := 0
	for _, c := range dg.changes {
		n.m.received.WithLabelValues(pathDigest.String()).Inc()
		v, why := n.receiveWhy(c)
		if v == refused {
			n.refuse(c, why, "")
		}
		if v == fresh {
			repaired++
			n.queueGossip(c) // others may lack it too
		}
	}
	if repaired > 0 {
		n.m.repairs.WithLabelValues("digest").Add(float64(repaired))
	}
	// The remote knows something newer than anything here that its digest
	// did not carry, or this node lacked some of the digest and the digest
	// was cut short: there may be more missing below it.
	if dg.highWater > n.HighWater() || (repaired > 0 && dg.truncated) {
		n.triggerCatchUp("digest")
	}
}

// events tracks membership from memberlist's notifications. memberlist
// calls these holding its node lock: they must not call back into it.
type events struct{ n *Node }

var _ memberlist.EventDelegate = events{}

// NotifyJoin implements memberlist.EventDelegate. A member coming back
// after it was lost means a partition healed or a node restarted: changes
// may have been missed on either side, so read the log now.
func (e events) NotifyJoin(node *memberlist.Node) {
	n := e.n
	n.membersMu.Lock()
	_, rejoin := n.lost[node.Name]
	delete(n.lost, node.Name)
	n.alive[node.Name] = copyNode(node)
	n.updateMembersLocked()
	n.membersMu.Unlock()
	n.reports.member(node, StateAlive, n.cfg.Now())
	if node.Name == n.cfg.Name {
		return
	}
	if rejoin {
		n.logger.Info("gossip member rejoined", "member", node.Name, "addr", node.Address())
		n.triggerCatchUp("rejoin")
	} else {
		n.logger.Info("gossip member joined", "member", node.Name, "addr", node.Address())
	}
}

// NotifyLeave implements memberlist.EventDelegate.
func (e events) NotifyLeave(node *memberlist.Node) {
	n := e.n
	n.membersMu.Lock()
	delete(n.alive, node.Name)
	if node.Name != n.cfg.Name {
		n.lost[node.Name] = lostMember{addr: node.Address(), since: n.cfg.Now()}
	}
	n.updateMembersLocked()
	n.membersMu.Unlock()
	state := StateDead
	if node.State == memberlist.StateLeft {
		state = StateLeft
	}
	n.reports.member(node, state, n.cfg.Now())
	n.logger.Warn("gossip member failed or left", "member", node.Name, "addr", node.Address())
}

// NotifyUpdate implements memberlist.EventDelegate: metadata (the region)
// changed.
func (e events) NotifyUpdate(node *memberlist.Node) {
	n := e.n
	n.membersMu.Lock()
	if _, ok := n.alive[node.Name]; ok {
		n.alive[node.Name] = copyNode(node)
	}
	n.membersMu.Unlock()
	n.reports.member(node, StateAlive, n.cfg.Now())
}

// copyNode copies a node memberlist passes to an event callback (safe there:
// memberlist holds its lock) so that it can be read later.
func copyNode(node *memberlist.Node) *memberlist.Node {
	c := *node
	c.Addr = slices.Clone(node.Addr)
	c.Meta = slices.Clone(node.Meta)
	return &c
}

func (n *Node) updateMembersLocked() {
	n.numAlive.Store(int64(len(n.alive)))
	n.m.members.WithLabelValues("alive").Set(float64(len(n.alive)))
	n.m.members.WithLabelValues("dead").Set(float64(len(n.lost)))
}

// pings feeds memberlist's probe round trips to the push retry timeouts
// (rttTable): they seed a region no push has measured yet.
type pings struct{ n *Node }

var _ memberlist.PingDelegate = pings{}

// AckPayload implements memberlist.PingDelegate: nothing.
func (pings) AckPayload() []byte { return nil }

// NotifyPingComplete implements memberlist.PingDelegate. The region comes
// from this node's own copy of the member (other is memberlist's).
func (p pings) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, _ []byte) {
	n := p.n
	n.membersMu.Lock()
	m := n.alive[other.Name]
	n.membersMu.Unlock()
	if m == nil || rtt <= 0 {
		return
	}
	n.rtt.observeProbe(decodeMeta(m.Meta), rtt)
}
