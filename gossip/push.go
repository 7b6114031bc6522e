package gossip

import (
	"math/rand/v2"
	"slices"
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
//
// The relays of a region split it: relay i of k forwards to the members at
// ranks r (sorted by name, relays included) with r mod k == i, so each
// member gets one copy, not k. A change goes to gossip repair only when its
// push could not be confirmed: a target that never acknowledged, a push sent
// without retries (PushRetries 0, or QueueMax pushes already pending), or
// no target at all. Acknowledged pushes cost nothing more, so a change costs
// a node about one message plus, on average, one ack.

// target is a member a change is pushed to, and how.
type target struct {
	node *memberlist.Node
	path path   // pathPush or pathRelay
	msg  []byte // the encoded change for this target
}

// push sends c to every member of this node's region, and to
// RelaysPerRegion random members of each other region, marked for relay.
func (n *Node) push(c change) {
	local, remote := n.peers()
	targets := make([]target, 0, len(local)+len(remote)*n.cfg.RelaysPerRegion)
	c.from = n.cfg.Name
	msg := encodeChange(withPath(c, pathPush))
	for _, m := range local {
		targets = append(targets, target{m, pathPush, msg})
	}
	for _, nodes := range remote {
		k := min(n.cfg.RelaysPerRegion, len(nodes), 255)
		for i := 0; i < k; i++ { // partial Fisher-Yates: k distinct random relays
			j := i + rand.IntN(len(nodes)-i)
			nodes[i], nodes[j] = nodes[j], nodes[i]
			rc := withPath(c, pathRelay)
			if k > 1 {
				rc.share = share{i: uint8(i), k: uint8(k)}
			}
			targets = append(targets, target{nodes[i], pathRelay, encodeChange(rc)})
		}
	}
	n.deliver(c, targets, "")
}

func withPath(c change, p path) change {
	c.path = p
	return c
}

// relay forwards a relayed change c to this node's part of its region,
// passing their acks on to reportTo (the node that relayed c here).
func (n *Node) relay(c change, reportTo string) {
	local, _ := n.peers()
	if !c.share.whole() {
		ranked := make([]string, 0, len(local)+1)
		ranked = append(ranked, n.cfg.Name)
		for _, m := range local {
			ranked = append(ranked, m.Name)
		}
		slices.Sort(ranked)
		mine := make(map[string]bool, len(ranked)/int(c.share.k)+1)
		for r, name := range ranked {
			if r%int(c.share.k) == int(c.share.i) {
				mine[name] = true
			}
		}
		local = slices.DeleteFunc(local, func(m *memberlist.Node) bool { return !mine[m.Name] })
	}
	c.share = share{}
	c.from = n.cfg.Name
	msg := encodeChange(withPath(c, pathPush))
	targets := make([]target, len(local))
	for i, m := range local {
		targets[i] = target{m, pathPush, msg}
	}
	n.deliver(c, targets, reportTo)
}

// deliver sends c to targets now (each its encoded msg) and retries those
// that do not acknowledge. A change whose delivery cannot be confirmed goes
// to gossip repair. Acks are passed on to reportTo, if set.
func (n *Node) deliver(c change, targets []target, reportTo string) {
	if len(targets) == 0 {
		n.queueGossip(c)
		return
	}
	var p *pending
	if n.cfg.PushRetries > 0 {
		p = n.acks.add(c, targets, reportTo, n.cfg.QueueMax, n.rtt.timeout, n.cfg.PushAckTimeout) // before sending: an ack may be quick
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
		n.send(ml, t.node, t.msg, t.path)
	}
	if p != nil {
		go n.retry(c, p)
	} else {
		n.queueGossip(c) // no acks awaited: nothing confirms delivery
	}
}

// retry resends c to each target of p that has not acknowledged it once
// its own timeout passes (the round trip measured to its region, doubling
// with each retry), up to PushRetries times, and queues c for gossip repair
// if some target never acknowledges.
func (n *Node) retry(c change, p *pending) {
	defer n.acks.remove(p)
	id := recentID(c.rec.Namespace, c.rec.Key)
	repaired := false
	for {
		due, ok := p.next()
		if !ok {
			return
		}
		t := time.NewTimer(time.Until(due))
		select {
		case <-p.done:
			t.Stop()
			return
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if n.seen.version(id) > c.rec.Version {
			return // superseded: the newer version is being delivered
		}
		resend, gaveUp := p.due(time.Now(), n.cfg.PushRetries)
		ml := n.ml.Load()
		for _, tg := range resend {
			n.m.retries.Inc()
			n.send(ml, tg.node, tg.msg, tg.path)
		}
		if gaveUp && !repaired {
			repaired = true
			n.m.unacked.Inc()
			n.queueGossip(c)
		}
	}
}

// rttTable estimates, per region, the time from sending a push to its ack
// (a smoothed average of samples from pushes acknowledged without a retry,
// as TCP does), so that a lost push to a near member is retried after a
// few milliseconds, not after the timeout the farthest region needs.
type rttTable struct {
	mu   sync.Mutex // guards srtt
	srtt map[string]time.Duration
}

// maxRTTRegions bounds the regions an rttTable remembers.
const maxRTTRegions = 1024

func (t *rttTable) observe(region string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.srtt == nil {
		t.srtt = make(map[string]time.Duration)
	}
	old, ok := t.srtt[region]
	switch {
	case ok:
		t.srtt[region] = old + (d-old)/8
	case len(t.srtt) < maxRTTRegions:
		t.srtt[region] = d
	}
}

// timeout is how long to wait for an ack from region before the first
// retry: 1.5 times its smoothed round trip plus 5 ms, or def while it has
// none.
func (t *rttTable) timeout(region string, def time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.srtt[region]; ok {
		return d + d/2 + 5*time.Millisecond
	}
	return def
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
	key      pendingKey
	reportTo string // passes acks on to this member (relayed changes)

	mu      sync.Mutex // guards waiting and closed
	waiting map[string]*waiter
	closed  bool
	done    chan struct{} // closed when waiting empties
}

// waiter is one target of a push that has not acknowledged it yet.
type waiter struct {
	target
	region string
	sent   time.Time     // first send
	wait   time.Duration // current timeout; doubles with each retry
	next   time.Time     // when to retry (or give up)
	tries  int           // retries sent
}

// add registers a push awaiting acknowledgement from targets, each with a
// first timeout from timeout(region, def), unless limit pushes already
// await one: then it returns nil and the push goes out without retries.
func (t *ackTable) add(c change, targets []target, reportTo string, limit int, timeout func(string, time.Duration) time.Duration, def time.Duration) *pending {
	now := time.Now()
	p := &pending{
		key:      pendingKey{recentID(c.rec.Namespace, c.rec.Key), c.rec.Version},
		reportTo: reportTo,
		waiting:  make(map[string]*waiter, len(targets)),
		done:     make(chan struct{}),
	}
	for _, tg := range targets {
		region := decodeMeta(tg.node.Meta)
		w := timeout(region, def)
		p.waiting[tg.node.Name] = &waiter{target: tg, region: region, sent: now, wait: w, next: now.Add(w)}
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

// ack records an acknowledgement; it reports whether one was awaited (and
// if so, to whom it is to be passed on), and feeds the round trip of a push
// acknowledged without a retry to rtt.
func (t *ackTable) ack(a ack, rtt *rttTable) (awaited bool, reportTo string) {
	t.mu.Lock()
	p := t.m[pendingKey{recentID(a.ns, a.key), a.version}]
	t.mu.Unlock()
	if p == nil {
		return false, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.waiting[a.from]
	if !ok {
		return false, ""
	}
	if w.tries == 0 { // Karn: a retried push's ack may answer either send
		rtt.observe(w.region, time.Since(w.sent))
	}
	delete(p.waiting, a.from)
	if len(p.waiting) == 0 && !p.closed {
		p.closed = true
		close(p.done)
	}
	return true, p.reportTo
}

// next returns the earliest time a waiting target is due.
func (p *pending) next() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var due time.Time
	for _, w := range p.waiting {
		if due.IsZero() || w.next.Before(due) {
			due = w.next
		}
	}
	return due, !due.IsZero()
}

// due returns the targets to send again at now, and reports whether some
// target used up its retries (those are dropped from the wait).
func (p *pending) due(now time.Time, retries int) (resend []target, gaveUp bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, w := range p.waiting {
		if w.next.After(now) {
			continue
		}
		if w.tries >= retries {
			delete(p.waiting, name)
			gaveUp = true
			continue
		}
		w.tries++
		w.wait *= 2
		w.next = now.Add(w.wait)
		resend = append(resend, w.target)
	}
	if len(p.waiting) == 0 && !p.closed {
		p.closed = true
		close(p.done)
	}
	return resend, gaveUp
}

// job is work for sendLoop, off memberlist's packet loop.
type job struct {
	relay    *change // fan a fresh relay out to this node's region
	reportTo string  // with relay: pass the region's acks on to this member
	ackTo    string  // or acknowledge to this member
	ack      ack
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
				n.relay(*j.relay, j.reportTo)
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
