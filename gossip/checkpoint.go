package gossip

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
)

// Checkpoints by gossip push (issue 23, DESIGN decision 11). The
// publisher issues a signed checkpoint per namespace about every second
// while the namespace changes, and renews it before half its lifetime;
// its gossip node pushes each one as it pushes a change: to every member
// of its region, and to RelaysPerRegion relays of each other region
// (chosen by rendezvous hash of the namespace), which split their region
// into shares and forward it to theirs and to each other (planRelay). A
// checkpoint is about 2.2 KB (its state hash alone is 2 KB), over one
// packet, so every hop is a memberlist reliable send (a TCP stream):
// delivered or failed, never silently lost, so there are no acks or
// retries; a node the stream cannot reach gets the next checkpoint (at
// most a second later while its namespace changes), and the change log
// and the origin carry checkpoints too.
//
// A relay forwards a checkpoint only if it decodes, the node did not
// refuse it (Config.OnCheckpoint) and it is newer than the last it
// forwarded for its namespace (higher Version, or the same Version issued
// later): a replayed old checkpoint is handed to the node, which refuses
// it, but never amplified. Every checkpoint received that decodes is
// handed to the node; gossip decides nothing about trust.

// cpMsg is a decoded checkpoint message.
type cpMsg struct {
	raw   []byte // checkpoint.Marshal's bytes; does not alias the message
	cp    *checkpoint.Checkpoint
	path  path // pathPush or pathRelay
	share share
}

const cpFlags = pathMask | flagShare

// maxCheckpointMsg bounds a checkpoint message.
const maxCheckpointMsg = 4 + checkpoint.MaxEncodedSize

func encodeCheckpointMsg(m cpMsg) []byte {
	flags := byte(m.path) << pathShift & pathMask
	if m.path == pathRelay && !m.share.whole() {
		flags |= flagShare
	}
	b := make([]byte, 0, 4+len(m.raw))
	b = append(b, kindCheckpoint, flags)
	if flags&flagShare != 0 {
		b = append(b, m.share.i, m.share.k)
	}
	return append(b, m.raw...)
}

func decodeCheckpointMsg(b []byte) (cpMsg, error) {
	if len(b) > maxCheckpointMsg {
		return cpMsg{}, fmt.Errorf("%w: checkpoint message is %d bytes, limit is %d", record.ErrCorrupt, len(b), maxCheckpointMsg)
	}
	if len(b) < 2 || b[0] != kindCheckpoint {
		return cpMsg{}, fmt.Errorf("%w: bad checkpoint message of %d bytes", record.ErrCorrupt, len(b))
	}
	flags := b[1]
	if flags&^cpFlags != 0 {
		return cpMsg{}, fmt.Errorf("%w: unknown checkpoint flags %#x", record.ErrCorrupt, flags)
	}
	m := cpMsg{path: path((flags & pathMask) >> pathShift)}
	if m.path != pathPush && m.path != pathRelay {
		return cpMsg{}, fmt.Errorf("%w: checkpoint on path %s", record.ErrCorrupt, m.path)
	}
	body := b[2:]
	if flags&flagShare != 0 {
		if m.path != pathRelay {
			return cpMsg{}, fmt.Errorf("%w: share on a %s checkpoint", record.ErrCorrupt, m.path)
		}
		if len(body) < 2 || body[1] < 2 || body[0] >= body[1] {
			return cpMsg{}, fmt.Errorf("%w: bad share", record.ErrCorrupt)
		}
		m.share, body = share{i: body[0], k: body[1]}, body[2:]
	}
	cp, err := checkpoint.Unmarshal(body)
	if err != nil {
		if !errors.Is(err, record.ErrCorrupt) {
			return cpMsg{}, fmt.Errorf("%w: checkpoint message: %w", record.ErrCorrupt, err)
		}
		return cpMsg{}, fmt.Errorf("checkpoint message: %w", err)
	}
	m.cp, m.raw = cp, append([]byte(nil), body...)
	return m, nil
}

// cpID is the key relays of a namespace's checkpoints are chosen by.
func cpID(ns string) string { return "\x00checkpoint\x00" + ns }

// maxCheckpointSpaces bounds the namespaces whose last forwarded
// checkpoint a node remembers; checkpoints of further namespaces are
// handed to the node but not forwarded.
const maxCheckpointSpaces = 1024

// cpMark is the last checkpoint forwarded for a namespace.
type cpMark struct {
	v      record.Version
	issued time.Time
}

// cpState is a node's checkpoint relay state and its sends in flight.
type cpState struct {
	mu     sync.Mutex        // guards last, flying and closed
	last   map[string]cpMark // by namespace
	flying int               // reliable sends under way
	closed bool              // the node is closing: no new sends
}

// maxCheckpointSends bounds the reliable sends of checkpoints a node runs
// at once, each in its own goroutine: a stream to another region takes a
// round trip to open and one more to deliver, and one to an unreachable
// member blocks up to memberlist's TCPTimeout, so a few workers would fall
// behind a publisher pushing every second to every region. Beyond it a
// send is shed, counted (send_shed).
const maxCheckpointSends = 256

// goSend runs send in a goroutine unless maxCheckpointSends are under way
// or the node is closing; it reports whether it did.
func (s *cpState) goSend(send func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.flying >= maxCheckpointSends {
		return false
	}
	s.flying++
	go func() {
		defer func() {
			s.mu.Lock()
			s.flying--
			s.mu.Unlock()
		}()
		send()
	}()
	return true
}

// close stops new sends. Those under way are not waited for: a stream to
// an unreachable member may take memberlist's TCPTimeout to fail, and
// they touch nothing but the closed memberlist, metrics and the logger.
func (s *cpState) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// newer reports whether cp is newer than the last checkpoint forwarded for
// its namespace, and if so records it as forwarded.
func (s *cpState) newer(cp *checkpoint.Checkpoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = make(map[string]cpMark)
	}
	l, ok := s.last[cp.Namespace]
	if ok && (cp.Version < l.v || cp.Version == l.v && !cp.IssuedAt.After(l.issued)) {
		return false
	}
	if !ok && len(s.last) >= maxCheckpointSpaces {
		return false
	}
	s.last[cp.Namespace] = cpMark{v: cp.Version, issued: cp.IssuedAt}
	return true
}

// PushCheckpoint spreads a signed checkpoint (checkpoint.Marshal's bytes)
// to every member: directly to this node's region, and through
// RelaysPerRegion relays to each other region. It returns once the sends
// are queued, an error if raw does not decode or is not newer than the
// last checkpoint of its namespace this node spread.
func (n *Node) PushCheckpoint(raw []byte) error {
	cp, err := checkpoint.Unmarshal(raw)
	if err != nil {
		return fmt.Errorf("gossip: push checkpoint: %w", err)
	}
	if !n.cps.newer(cp) {
		return fmt.Errorf("gossip: push checkpoint of %s at %s issued %s: not newer than the last pushed", cp.Namespace, cp.Version, cp.IssuedAt.Format(time.RFC3339Nano))
	}
	m := cpMsg{raw: append([]byte(nil), raw...), cp: cp, path: pathPush}
	local, remote := n.peers()
	push := encodeCheckpointMsg(m)
	for _, to := range local {
		n.sendCheckpoint(to, push)
	}
	for _, nodes := range remote {
		relays := pickRelays(cpID(cp.Namespace), nodes, n.cfg.tune.RelaysPerRegion)
		for i, r := range relays {
			rm := m
			rm.path = pathRelay
			if len(relays) > 1 {
				rm.share = share{i: uint8(i), k: uint8(len(relays))}
			}
			n.sendCheckpoint(r, encodeCheckpointMsg(rm))
		}
	}
	return nil
}

// gotCheckpoint hands a received checkpoint to the node and, for a relay
// message, forwards it to this node's share of its region and to the
// region's other relays, if it is newer than the last forwarded.
func (n *Node) gotCheckpoint(m cpMsg) {
	n.m.cps.WithLabelValues("received").Inc()
	err := n.offerCheckpoint(m)
	if m.path != pathRelay {
		return
	}
	// Never remembered (nor forwarded) when from further ahead than a
	// change may be: a relay that cannot verify (no trusted keys) would
	// otherwise keep a forged far-future checkpoint as the newest and
	// forward no real one of its namespace again
	// (TestForgedFutureCheckpointDoesNotBlockRelay).
	limit := n.cfg.Now().Add(n.maxFutureSkew())
	future := m.cp.Version.Time().After(limit) || m.cp.IssuedAt.After(limit)
	if err != nil && !errors.Is(err, checkpoint.ErrMismatch) || future || !n.cps.newer(m.cp) {
		n.m.cps.WithLabelValues("not_relayed").Inc()
		return
	}
	n.m.cps.WithLabelValues("relayed").Inc()
	local, _ := n.peers()
	plan := planRelay(n.cfg.Name, local, cpID(m.cp.Namespace), m.share)
	for j, r := range plan.coRelays {
		rm := m
		rm.share = share{i: uint8(plan.coShares[j]), k: uint8(plan.k)}
		n.sendCheckpoint(r, encodeCheckpointMsg(rm))
	}
	pm := m
	pm.path, pm.share = pathPush, share{}
	push := encodeCheckpointMsg(pm)
	for _, to := range plan.members {
		n.sendCheckpoint(to, push)
	}
}

// offerCheckpoint calls Config.OnCheckpoint, turning a panic into an
// error, a metric and a log line.
func (n *Node) offerCheckpoint(m cpMsg) (err error) {
	if n.cfg.OnCheckpoint == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			n.m.panics.Inc()
			n.logger.Error("gossip checkpoint callback panicked", "ns", m.cp.Namespace, "version", m.cp.Version, "panic", r)
			err = fmt.Errorf("gossip: checkpoint callback panicked: %v", r)
		}
	}()
	return n.cfg.OnCheckpoint(m.raw, "gossip/"+m.path.String())
}

// sendCheckpoint sends msg to a member by memberlist's reliable stream, in
// the background, shedding it (counted) if too many sends are under way.
func (n *Node) sendCheckpoint(to *memberlist.Node, msg []byte) {
	ok := n.cps.goSend(func() {
		if err := n.ml.Load().SendReliable(to, msg); err != nil {
			n.m.cps.WithLabelValues("send_failed").Inc()
			n.logger.Debug("gossip checkpoint send failed", "to", to.Name, "err", err)
			return
		}
		n.m.cps.WithLabelValues("sent").Inc()
	})
	if !ok {
		n.m.cps.WithLabelValues("send_shed").Inc()
	}
}
