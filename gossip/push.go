package gossip

import (
	"hash/fnv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/record"
)

// Eager push with acknowledgements. A pushed or relayed change carries the
// sender's name; each receiver acknowledges it, even a duplicate or an old
// version, and the sender sends it again to those that did not, after a
// timeout just above the round trip measured to the target's region
// (until one is measured: PushAckTimeout, or localAckTimeout inside the
// node's own region), twice at that pace and then
// doubling the wait each time up to maxRetryWait, up to PushRetries times. It
// stops early once every target has acknowledged, or once a newer version
// of the key has superseded the change. Loss on the direct path then costs
// a retry (tens of milliseconds), not a wait for gossip's random rounds or
// the log interval.
//
// The relays of a region are not random: for each change, the k members of
// the region with the highest rendezvous hash of (key, member name) are its
// relays, in that order, so every member computes the same relays from the
// same view without them riding in the message. Relay i of k forwards to
// the members of its share, those (relays excluded) whose name hashes to i
// mod k: a stable split, so two relays whose views differ by one member
// still cover every member they both know exactly once (ranks would shift
// and skip some members, double others). A relay also forwards the relay
// message, with their shares, to the other relays of its region: a relay
// message lost on the long link is then repaired within the region in a
// LAN round trip by whichever relay got it, instead of waiting for the
// pusher's retry across the WAN (Plumtree's lazy repair, done eagerly for
// the k relays only, so it costs k(k-1) messages per region, not one per
// member). A change goes to gossip repair only when its push could not be
// confirmed: a target that never acknowledged, a push sent without retries
// (PushRetries 0, or QueueMax pushes already pending), or no target at all.
// Acknowledged pushes cost nothing more, so a change costs a node about one
// message plus, on average, one ack.

// target is a member a change is pushed to, and how.
type target struct {
	node *memberlist.Node
	path path   // pathPush or pathRelay
	msg  []byte // the encoded change for this target
}

// push sends c to every member of this node's region, and to the
// RelaysPerRegion relays of each other region, marked for relay.
func (n *Node) push(c change) {
	local, remote := n.peers()
	targets := make([]target, 0, len(local)+len(remote)*n.cfg.tune.RelaysPerRegion)
	c.from = n.cfg.Name
	msg := encodeChange(withPath(c, pathPush))
	for _, m := range local {
		targets = append(targets, target{m, pathPush, msg})
	}
	id := recentID(c.rec.Namespace, c.rec.Key)
	for _, nodes := range remote {
		relays := pickRelays(id, nodes, n.cfg.tune.RelaysPerRegion)
		for i, r := range relays {
			targets = append(targets, target{r, pathRelay, encodeChange(relayChange(c, i, len(relays)))})
		}
	}
	n.deliver(c, targets, "")
}

func withPath(c change, p path) change {
	c.path = p
	return c
}

// relayChange is c as a relay message for share i of k.
func relayChange(c change, i, k int) change {
	c.path = pathRelay
	c.share = share{}
	if k > 1 {
		c.share = share{i: uint8(i), k: uint8(k)}
	}
	return c
}

// maxRelays bounds the relays per region (a share index is one byte).
const maxRelays = 255

// pickRelays returns the relays of a change of key id among nodes, k at
// most, highest rendezvous hash of (id, name) first. It reorders nodes.
func pickRelays(id string, nodes []*memberlist.Node, k int) []*memberlist.Node {
	k = min(k, len(nodes), maxRelays)
	if k == 0 {
		return nil
	}
	scores := make([]uint64, len(nodes))
	for j, m := range nodes {
		scores[j] = relayScore(id, m.Name)
	}
	for i := 0; i < k; i++ { // partial selection sort: k is small
		best := i
		for j := i + 1; j < len(nodes); j++ {
			if scores[j] > scores[best] || scores[j] == scores[best] && nodes[j].Name < nodes[best].Name {
				best = j
			}
		}
		nodes[i], nodes[best] = nodes[best], nodes[i]
		scores[i], scores[best] = scores[best], scores[i]
	}
	return nodes[:k]
}

// relayScore is the rendezvous hash of member name for key id (FNV-1a,
// the same on every node and release).
func relayScore(id, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return mix64(h.Sum64())
}

// shareOf is the share (0 to k-1) a member belongs to in a region split
// between k relays: a hash of its name alone, so that it does not depend on
// who else the relay sees.
func shareOf(name string, k int) int {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(mix64(h.Sum64()) % uint64(k))
}

// mix64 is a finaliser (splitmix64's) that spreads FNV's low bits, which
// are weak for names that differ in their last bytes.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// relay forwards a relayed change c to this node's share of its region and
// to the region's other relays (each with its own share), passing their
// acks on to reportTo (the node that relayed c here).
func (n *Node) relay(c change, reportTo string) {
	n.seen.setReportTo(recentID(c.rec.Namespace, c.rec.Key), c.rec.Version, reportTo)
	local, _ := n.peers()
	plan := planRelay(n.cfg.Name, local, recentID(c.rec.Namespace, c.rec.Key), c.share)
	targets := make([]target, 0, len(plan.coRelays)+len(plan.members))
	for j, r := range plan.coRelays {
		targets = append(targets, target{r, pathRelay, encodeChange(relayChange(withFrom(c, n.cfg.Name), plan.coShares[j], plan.k))})
	}
	c.share = share{}
	c.from = n.cfg.Name
	msg := encodeChange(withPath(c, pathPush))
	for _, m := range plan.members {
		targets = append(targets, target{m, pathPush, msg})
	}
	n.deliver(c, targets, reportTo)
}

// relayPlan is what a relay forwards: the relay message to the region's
// other relays (coRelays, with the share each covers), and a plain push to
// the members of its own share.
type relayPlan struct {
	k        int
	coRelays []*memberlist.Node
	coShares []int
	members  []*memberlist.Node
}

// planRelay plans the relay, by the node named self, of a change of key id
// for share sh, given the other live members of its region (local, which
// it reorders).
func planRelay(self string, local []*memberlist.Node, id string, sh share) relayPlan {
	if sh.whole() {
		return relayPlan{k: 1, members: local}
	}
	k, i := int(sh.k), int(sh.i)
	p := relayPlan{k: k}
	// The region's relays as this node sees them (itself included).
	all := make([]*memberlist.Node, 0, len(local)+1)
	all = append(all, &memberlist.Node{Name: self})
	all = append(all, local...)
	relays := pickRelays(id, all, k)
	isRelay := make(map[string]bool, len(relays))
	for j, r := range relays {
		isRelay[r.Name] = true
		if j == i || r.Name == self {
			continue // this node covers share i
		}
		p.coRelays = append(p.coRelays, r)
		p.coShares = append(p.coShares, j)
	}
	for _, m := range local {
		if !isRelay[m.Name] && shareOf(m.Name, k) == i {
			p.members = append(p.members, m)
		}
	}
	return p
}

func withFrom(c change, from string) change {
	c.from = from
	return c
}

// deliver sends c to targets now (each its encoded msg) and retries those
// that do not acknowledge. A change whose delivery cannot be confirmed goes
// to gossip repair. Acks are passed on to reportTo, if set.
func (n *Node) deliver(c change, targets []target, reportTo string) {
	if len(targets) == 0 {
		n.repair(c, TraceNoTarget, "")
		return
	}
	var p *pending
	if n.cfg.tune.PushRetries > 0 {
		p = n.acks.add(c, targets, reportTo, n.cfg.tune.QueueMax, n.ackTimeout, n.cfg.tune.PushAckTimeout) // before sending: an ack may be quick
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
		n.sendTraced(ml, c, t, 0)
	}
	if p != nil {
		go n.retry(c, p)
	} else {
		n.repair(c, TraceUnconfirmed, "") // no acks awaited: nothing confirms delivery
	}
}

// localAckTimeout is the first ack timeout for a member of this node's own
// region while no round trip to it has been measured (DefaultLANConfig's
// PushAckTimeout): a region is one data center, and waiting the WAN
// default there put a relay's retries to its own share 300 ms apart.
const localAckTimeout = 25 * time.Millisecond

// ackTimeout is the first ack timeout for a member of region: measured,
// or localAckTimeout for this node's own region, or def.
func (n *Node) ackTimeout(region string, def time.Duration) time.Duration {
	if region == n.cfg.Region {
		def = min(def, localAckTimeout)
	}
	return n.rtt.timeout(region, def)
}

// sendTraced sends t its message, try 0 being the first send.
func (n *Node) sendTraced(ml *memberlist.Memberlist, c change, t target, try int) {
	n.send(ml, t.node, t.msg, t.path)
	if tr := n.tracer(); tr != nil {
		tr.Trace(TraceEvent{Kind: TraceSent, Path: t.path.String(), Peer: t.node.Name, Try: try, Namespace: c.rec.Namespace, Key: c.rec.Key, Version: c.rec.Version})
	}
}

// repair queues c for gossip repair, traced with why (and the target given
// up on, if any).
func (n *Node) repair(c change, why TraceKind, peer string) {
	if tr := n.tracer(); tr != nil {
		tr.Trace(TraceEvent{Kind: why, Path: pathGossip.String(), Peer: peer, Namespace: c.rec.Namespace, Key: c.rec.Key, Version: c.rec.Version})
	}
	n.queueGossip(c)
}

// retry resends c to each target of p that has not acknowledged it once
// its own timeout passes (just above the round trip measured to its
// region, doubling after the first retries), up to PushRetries times, and
// queues c for gossip repair if some target never acknowledges.
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
		resend, gaveUp := p.due(time.Now(), n.cfg.tune.PushRetries)
		ml := n.ml.Load()
		for _, r := range resend {
			n.m.retries.Inc()
			n.sendTraced(ml, c, r.target, r.try)
		}
		for _, g := range gaveUp {
			if tr := n.tracer(); tr != nil {
				tr.Trace(TraceEvent{Kind: TraceGaveUp, Path: g.path.String(), Peer: g.node.Name, Namespace: c.rec.Namespace, Key: c.rec.Key, Version: c.rec.Version})
			}
		}
		if len(gaveUp) > 0 && !repaired {
			repaired = true
			n.m.unacked.Inc()
			n.repair(c, TraceUnconfirmed, gaveUp[0].node.Name)
		}
	}
}

// rttTable estimates, per region, the time from sending a push to its ack
// (a smoothed average and mean deviation of samples from pushes
// acknowledged without a retry, as TCP does), so that a lost push to a near
// member is retried after a few milliseconds, not after the timeout the
// farthest region needs. Memberlist's probe round trips seed a region no
// push has measured yet (a node that publishes rarely would otherwise
// wait PushAckTimeout on its first push to each region).
type rttTable struct {
	mu  sync.Mutex // guards est
	est map[string]rttEstimate
}

type rttEstimate struct {
	srtt, rttvar time.Duration
	probed       bool // from probes only, no push sample yet
}

// maxRTTRegions bounds the regions an rttTable remembers.
const maxRTTRegions = 1024

// observe feeds a push's round trip to region.
func (t *rttTable) observe(region string, d time.Duration) { t.sample(region, d, false) }

// observeProbe feeds a memberlist probe's round trip to region; it counts
// only until a push has been measured there.
func (t *rttTable) observeProbe(region string, d time.Duration) { t.sample(region, d, true) }

func (t *rttTable) sample(region string, d time.Duration, probe bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.est == nil {
		t.est = make(map[string]rttEstimate)
	}
	e, ok := t.est[region]
	switch {
	case ok && probe && !e.probed:
		return // push samples are the better measure
	case ok && e.probed && !probe, !ok && len(t.est) < maxRTTRegions:
		t.est[region] = rttEstimate{srtt: d, rttvar: d / 32, probed: probe}
	case ok:
		e.rttvar += (abs(e.srtt-d) - e.rttvar) / 4
		e.srtt += (d - e.srtt) / 8
		t.est[region] = e
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// timeout is how long to wait for an ack from region before the first
// retry: the smoothed round trip plus the larger of 4 mean deviations and
// an eighth of it, plus 5 ms; def while it has none.
func (t *rttTable) timeout(region string, def time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.est[region]; ok {
		return e.srtt + max(4*e.rttvar, e.srtt/8) + 5*time.Millisecond
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
	reportTo string          // passes acks on to this member (relayed changes)
	targets  map[string]bool // every target, acknowledged or not

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
	wait   time.Duration // current timeout
	next   time.Time     // when to retry (or give up)
	tries  int           // retries sent
}

// steadyRetries is how many retries keep the first timeout before the
// wait starts doubling: a lost packet is most likely lost alone, and
// waiting longer for it only lengthens the tail.
const steadyRetries = 2

// maxRetryWait caps the doubling of the wait between retries (a first wait
// longer than it is kept): the later retries are what save a member whose
// pushes were lost several times in a row (at 30% loss, one member in
// 1,400 loses six in a row), and waiting seconds between them only sends
// it to the log; the cap also bounds how long a push to an unreachable
// member stays pending (PushRetries × maxRetryWait at most beyond the
// steady retries).
const maxRetryWait = time.Second

// add registers a push awaiting acknowledgement from targets, each with a
// first timeout from timeout(region, def), unless limit pushes already
// await one: then it returns nil and the push goes out without retries.
func (t *ackTable) add(c change, targets []target, reportTo string, limit int, timeout func(string, time.Duration) time.Duration, def time.Duration) *pending {
	now := time.Now()
	p := &pending{
		key:      pendingKey{recentID(c.rec.Namespace, c.rec.Key), c.rec.Version},
		reportTo: reportTo,
		targets:  make(map[string]bool, len(targets)),
		waiting:  make(map[string]*waiter, len(targets)),
		done:     make(chan struct{}),
	}
	for _, tg := range targets {
		region := decodeMeta(tg.node.Meta)
		w := timeout(region, def)
		p.targets[tg.node.Name] = true
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

// ack records an acknowledgement; it reports whether one was awaited, and
// to whom it is to be passed on (relayed changes): an awaited ack, or one
// from a member that was never a target here (a co-relay's share, whose
// acks reach this node when the co-relay's first relay message came from
// it). found is false when no push of that version waits here. It feeds
// the round trip of a push acknowledged without a retry to rtt.
func (t *ackTable) ack(a ack, rtt *rttTable) (awaited bool, reportTo string, found bool) {
	t.mu.Lock()
	p := t.m[pendingKey{recentID(a.ns, a.key), a.version}]
	t.mu.Unlock()
	if p == nil {
		return false, "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.waiting[a.from]
	if !ok {
		if p.targets[a.from] {
			return false, "", true // a duplicate: passed on already
		}
		return false, p.reportTo, true
	}
	if w.tries == 0 { // Karn: a retried push's ack may answer either send
		rtt.observe(w.region, time.Since(w.sent))
	}
	delete(p.waiting, a.from)
	if len(p.waiting) == 0 && !p.closed {
		p.closed = true
		close(p.done)
	}
	return true, p.reportTo, true
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

// due returns the targets to send again at now (with the retry number of
// each), and those that used up their retries (dropped from the wait).
func (p *pending) due(now time.Time, retries int) (resend []retryOf, gaveUp []target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, w := range p.waiting {
		if w.next.After(now) {
			continue
		}
		if w.tries >= retries {
			delete(p.waiting, name)
			gaveUp = append(gaveUp, w.target)
			continue
		}
		w.tries++
		if w.tries > steadyRetries {
			w.wait = max(w.wait, min(2*w.wait, maxRetryWait))
		}
		w.next = now.Add(w.wait)
		resend = append(resend, retryOf{w.target, w.tries})
	}
	if len(p.waiting) == 0 && !p.closed {
		p.closed = true
		close(p.done)
	}
	return resend, gaveUp
}

// retryOf is a target to send again, and which retry it is (1 first).
type retryOf struct {
	target
	try int
}

// job is work for sendLoop, off memberlist's packet loop.
type job struct {
	relay    *change // fan a fresh relay out to this node's region
	reportTo string  // with relay: pass the region's acks on to this member
	ackTo    string  // or acknowledge to this member
	ack      ack
	sendTo   string // or send payload (a refusal, a query) to this member
	payload  []byte
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
			name, msg := j.ackTo, j.payload
			if name == "" {
				name = j.sendTo
			} else {
				msg = encodeAck(j.ack)
			}
			n.membersMu.Lock()
			to := n.alive[name]
			n.membersMu.Unlock()
			if to == nil {
				continue // unknown sender: it will retry, then gossip covers
			}
			if err := n.ml.Load().SendBestEffort(to, msg); err != nil {
				n.logger.Debug("gossip ack failed", "to", name, "err", err)
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
