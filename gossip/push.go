package gossip

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/record"
)

// Eager push with acknowledgements. A pushed or relayed change carries the
// sender's name; each receiver acknowledges it, even a duplicate or an old
// version, and the sender sends it again to those that did not, after
// PushAckTimeout, doubling the wait each time, up to PushRetries times. It
// stops early once every target has acknowledged, or once a newer version
// of the key has superseded the change. Loss on the direct path then costs
// a retry (tens of milliseconds), not a wait for gossip's random rounds or
// the log interval.

// target is a member a change is pushed to, and how.
type target struct {
	node *memberlist.Node
	path path // pathPush or pathRelay
}

// push sends c to every member of this node's region, and to
// RelaysPerRegion random members of each other region, marked for relay.
func (n *Node) push(c change) {
	local, remote := n.peers()
	targets := make([]target, 0, len(local)+len(remote)*n.cfg.RelaysPerRegion)
	for _, m := range local {
		targets = append(targets, target{m, pathPush})
	}
	for _, nodes := range remote {
		k := min(n.cfg.RelaysPerRegion, len(nodes))
		for i := 0; i < k; i++ { // partial Fisher-Yates: k distinct random relays
			j := i + rand.IntN(len(nodes)-i)
			nodes[i], nodes[j] = nodes[j], nodes[i]
			targets = append(targets, target{nodes[i], pathRelay})
		}
	}
	n.deliver(c, targets)
}

// deliver sends c to targets now and retries those that do not acknowledge.
func (n *Node) deliver(c change, targets []target) {
	if len(targets) == 0 {
		return
	}
	c.from = n.cfg.Name
	var msgs [numPaths][]byte
	for _, t := range targets {
		if msgs[t.path] == nil {
			c.path = t.path
			msgs[t.path] = encodeChange(c)
		}
	}
	var p *pending
	if n.cfg.PushRetries > 0 {
		p = n.acks.add(c, targets, n.cfg.QueueMax) // before sending: an ack may be quick
		if p == nil {
			// Too many pushes await acknowledgement (a flood, or targets
			// that stopped answering): send this one without retries, so
			// that retry state and goroutines stay bounded. Gossip repair
			// and the change log still cover a loss.
			n.m.dropped.WithLabelValues("push_retry_shed").Inc()
		}
	}
	ml := n.ml.Load()
	for _, t := range targets {
		n.send(ml, t.node, msgs[t.path], t.path)
	}
	if p != nil {
		go n.retry(c, p, &msgs)
	}
}

// retry resends c to the targets of p that have not acknowledged it.
func (n *Node) retry(c change, p *pending, msgs *[numPaths][]byte) {
	defer n.acks.remove(p)
	wait := n.cfg.PushAckTimeout
	for range n.cfg.PushRetries {
		t := time.NewTimer(wait)
		select {
		case <-p.done:
			t.Stop()
			return
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if n.seen.version(recentID(c.rec.Namespace, c.rec.Key)) > c.rec.Version {
			return // superseded: the newer version is being delivered
		}
		ml := n.ml.Load()
		for _, tg := range p.unacked() {
			n.m.retries.Inc()
			n.send(ml, tg.node, msgs[tg.path], tg.path)
		}
		wait *= 2
	}
}

// ackTable holds the pushes awaiting acknowledgement.
type ackTable struct {
	mu sync.Mutex // guards m
	m  map[pendingKey]*pending
}

type pendingKey struct {
	id string
	v  record.Version
}

type pending struct {
	key pendingKey

	mu      sync.Mutex // guards waiting and closed
	waiting map[string]target
	closed  bool
	done    chan struct{} // closed when waiting empties
}

// add registers a push awaiting acknowledgement from targets, unless limit
// pushes already await one: then it returns nil and the push goes out
// without retries.
func (t *ackTable) add(c change, targets []target, limit int) *pending {
	p := &pending{
		key:     pendingKey{recentID(c.rec.Namespace, c.rec.Key), c.rec.Version},
		waiting: make(map[string]target, len(targets)),
		done:    make(chan struct{}),
	}
	for _, tg := range targets {
		p.waiting[tg.node.Name] = tg
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[pendingKey]*pending)
	}
	if _, dup := t.m[p.key]; !dup && len(t.m) >= limit {
		return nil
	}
	t.m[p.key] = p
	return p
}

func (t *ackTable) remove(p *pending) {
	t.mu.Lock()
	if t.m[p.key] == p {
		delete(t.m, p.key)
	}
	t.mu.Unlock()
}

// ack records an acknowledgement; it reports whether one was awaited.
func (t *ackTable) ack(a ack) bool {
	t.mu.Lock()
	p := t.m[pendingKey{recentID(a.ns, a.key), a.version}]
	t.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.waiting[a.from]; !ok {
		return false
	}
	delete(p.waiting, a.from)
	if len(p.waiting) == 0 && !p.closed {
		p.closed = true
		close(p.done)
	}
	return true
}

func (p *pending) unacked() []target {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]target, 0, len(p.waiting))
	for _, t := range p.waiting {
		out = append(out, t)
	}
	return out
}

// job is work for sendLoop, off memberlist's packet loop.
type job struct {
	relay *change // fan a fresh relay out to this node's region
	ackTo string  // or acknowledge to this member
	ack   ack
}

// sendLoop forwards relays to this node's region and sends acks.
func (n *Node) sendLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case j := <-n.jobs:
			if j.relay != nil {
				local, _ := n.peers()
				targets := make([]target, len(local))
				for i, m := range local {
					targets[i] = target{m, pathPush}
				}
				n.deliver(*j.relay, targets)
				continue
			}
			n.membersMu.Lock()
			to := n.alive[j.ackTo]
			n.membersMu.Unlock()
			if to == nil {
				continue // unknown sender: it will retry, then gossip covers
			}
			if err := n.ml.Load().SendBestEffort(to, encodeAck(j.ack)); err != nil {
				n.logger.Debug("gossip ack failed", "to", j.ackTo, "err", err)
			}
		}
	}
}

// enqueue hands j to sendLoop, dropping it (counted) if the queue is full.
func (n *Node) enqueue(j job, what string) {
	select {
	case n.jobs <- j:
	default:
		n.m.dropped.WithLabelValues(what + "_queue_full").Inc()
	}
}
