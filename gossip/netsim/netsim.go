// Package netsim simulates a network for memberlist nodes in one process:
// a Transport wrapper that delays, jitters, drops and partitions traffic
// between zones (a zone is a region, a rack, one side of a partition).
//
// Every node of the simulated network must use a Transport from the same
// Network: faults are applied by the sender (packets) and by the dialer
// (streams), so traffic from an unwrapped node is not affected.
//
// A Filter (SetFilter) sees each user message (what a memberlist.Delegate
// sends and receives) with its sender's and receiver's addresses, and may
// drop or rewrite it alone, leaving the rest of its packet or stream as it
// was: to lose exactly the messages a test names, on their way to one
// member, whatever path they take (see gossip.DropRecords).
//
//	net := netsim.New(1)
//	net.SetLink("eu", "us", netsim.Link{Delay: 40 * time.Millisecond, Jitter: 5 * time.Millisecond})
//	net.SetDefault(netsim.Link{Loss: 0.3})
//	t, err := net.Listen("127.0.0.1", 0, "eu", nil)
//	// use t as gossip.Config.Transport (or memberlist.Config.Transport)
//	net.Cut("eu", "us") // partition; net.Heal("eu", "us") to end it
//
// Packets (UDP: probes, gossip, eager pushes) suffer loss, delay and
// jitter, and may arrive reordered. Streams (TCP: push/pull, reliable
// sends, fallback pings) are never lossy; dialing costs a round trip, and
// each write and read on the dialing side adds the one-way delay. A cut
// drops packets both ways, refuses dials and breaks open streams.
//
// ListenMemory gives a node a transport that never touches a socket:
// packets are delivered by timers and streams are net.Pipe pairs, so inside
// a testing/synctest bubble a whole fleet runs in virtual time (see
// MemoryTransport). Both kinds share one Network's links, cuts and random
// choices.
//
// A Network is safe for concurrent use. Its random choices come from one
// generator seeded by New, so a run is reproducible as far as the order of
// sends is.
package netsim

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Link is the behaviour of traffic between two zones, the same both ways.
type Link struct {
	// Delay is the one-way latency.
	Delay time.Duration
	// Jitter adds a uniformly random extra delay in [0, Jitter) to each
	// packet, which can reorder packets.
	Jitter time.Duration
	// Loss is the fraction of packets dropped, from 0 to 1.
	Loss float64
}

// Stats counts what a Network did to packets.
type Stats struct {
	Packets int64 // packets handed to the network
	Lost    int64 // dropped by Loss
	Cut     int64 // dropped by a partition
	Dials   int64 // streams dialed
	Refused int64 // dials refused by a partition
	// Filtered counts packets and stream writes a Filter changed or
	// dropped (SetFilter).
	Filtered int64
}

// ErrCut is returned for dials and stream I/O across a partition.
var ErrCut = errors.New("netsim: link cut")

// ErrUnreachable is returned for dials from a MemoryTransport to an address
// nobody listens on, or that does not accept in time.
var ErrUnreachable = errors.New("netsim: unreachable")

// Network is a set of zones and the links between them.
type Network struct {
	mu    sync.Mutex // guards everything below
	rng   *rand.Rand
	def   Link
	links map[pair]Link
	cuts  map[pair]bool
	zones map[string]string    // address (host:port) -> zone
	mem   map[string]*endpoint // in-memory listeners by address
	stats Stats
	// filter sees user messages (SetFilter); dialers maps the local
	// address of each open stream a Transport dialed to the dialer's own
	// address, so that the accepting side knows whom it writes to.
	filter  Filter
	dialers map[string]string
}

type pair struct{ a, b string }

func mkpair(a, b string) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// New returns a network with perfect links, whose random choices are
// seeded by seed.
func New(seed uint64) *Network {
	return &Network{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		links:   make(map[pair]Link),
		cuts:    make(map[pair]bool),
		zones:   make(map[string]string),
		mem:     make(map[string]*endpoint),
		dialers: make(map[string]string),
	}
}

// SetDefault sets the link used between (and within) zones that have no
// link of their own.
func (n *Network) SetDefault(l Link) {
	n.mu.Lock()
	n.def = l
	n.mu.Unlock()
}

// SetLink sets the link between zones a and b, both ways; a == b sets the
// link within a zone.
func (n *Network) SetLink(a, b string, l Link) {
	n.mu.Lock()
	n.links[mkpair(a, b)] = l
	n.mu.Unlock()
}

// SetLoss sets the loss of every link, the default included, keeping
// their delays.
func (n *Network) SetLoss(loss float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def.Loss = loss
	for p, l := range n.links {
		l.Loss = loss
		n.links[p] = l
	}
}

// Cut partitions zones a and b from each other (a == b isolates the
// members of a from each other).
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	n.cuts[mkpair(a, b)] = true
	n.mu.Unlock()
}

// Heal ends a partition between a and b.
func (n *Network) Heal(a, b string) {
	n.mu.Lock()
	delete(n.cuts, mkpair(a, b))
	n.mu.Unlock()
}

// IsCut reports whether zones a and b are partitioned.
func (n *Network) IsCut(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cuts[mkpair(a, b)]
}

// HealAll ends every partition.
func (n *Network) HealAll() {
	n.mu.Lock()
	clear(n.cuts)
	n.mu.Unlock()
}

// Stats returns the counts so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// packet decides the fate of one packet from zone `from` to address to.
func (n *Network) packet(from, to string) (drop bool, delay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.packetLocked(from, n.zones[to])
}

// packetLocked decides the fate of one packet from zone a to zone b.
func (n *Network) packetLocked(a, b string) (drop bool, delay time.Duration) {
	n.stats.Packets++
	p := mkpair(a, b)
	if n.cuts[p] {
		n.stats.Cut++
		return true, 0
	}
	l, ok := n.links[p]
	if !ok {
		l = n.def
	}
	if l.Loss > 0 && n.rng.Float64() < l.Loss {
		n.stats.Lost++
		return true, 0
	}
	return false, n.delayLocked(l)
}

func (n *Network) delayLocked(l Link) time.Duration {
	d := l.Delay
	if l.Jitter > 0 {
		d += time.Duration(n.rng.Int64N(int64(l.Jitter)))
	}
	return d
}

// stream returns the one-way delay for a stream from zone `from` to
// address to, or ErrCut.
func (n *Network) stream(from, to string, dial bool) (time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.streamLocked(from, n.zones[to], dial)
}

// streamLocked returns the one-way delay for a stream from zone a to zone
// b, or ErrCut.
func (n *Network) streamLocked(a, b string, dial bool) (time.Duration, error) {
	p := mkpair(a, b)
	if dial {
		n.stats.Dials++
	}
	if n.cuts[p] {
		if dial {
			n.stats.Refused++
		}
		return 0, fmt.Errorf("%w: %s to %s", ErrCut, a, b)
	}
	l, ok := n.links[p]
	if !ok {
		l = n.def
	}
	return n.delayLocked(l), nil
}

func (n *Network) register(addr, zone string) {
	n.mu.Lock()
	n.zones[addr] = zone
	n.mu.Unlock()
}

// Listen starts a memberlist.NetTransport on bindAddr:port (0: a free
// port) and wraps it as a member of zone. logger may be nil (discard).
func (n *Network) Listen(bindAddr string, port int, zone string, logger *log.Logger) (*Transport, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bindAddr},
		BindPort:  port,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	t := n.Wrap(nt, zone)
	t.setSelf(net.JoinHostPort(bindAddr, fmt.Sprint(nt.GetAutoBindPort())))
	return t, nil
}

// Wrap makes inner a member of zone. The wrapper learns its own address
// when memberlist asks it for the advertise address.
func (n *Network) Wrap(inner memberlist.NodeAwareTransport, zone string) *Transport {
	return &Transport{net: n, inner: inner, zone: zone, done: make(chan struct{}), stopped: make(chan struct{})}
}

// Transport is a memberlist.NodeAwareTransport whose traffic goes through a
// Network.
type Transport struct {
	net   *Network
	inner memberlist.NodeAwareTransport

	mu   sync.Mutex // guards zone and self
	zone string
	self string

	acceptOnce, shutOnce, stopOnce sync.Once
	accepted                       chan net.Conn // StreamCh, once asked for
	done                           chan struct{} // closed when Shutdown begins
	stopped                        chan struct{} // closed when the inner transport is shut down
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Zone returns the transport's zone.
func (t *Transport) Zone() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.zone
}

// SetZone moves the transport to another zone.
func (t *Transport) SetZone(zone string) {
	t.mu.Lock()
	t.zone = zone
	self := t.self
	t.mu.Unlock()
	if self != "" {
		t.net.register(self, zone)
	}
}

// Addr returns the transport's own host:port, once known.
func (t *Transport) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.self
}

func (t *Transport) setSelf(addr string) {
	t.mu.Lock()
	t.self = addr
	zone := t.zone
	t.mu.Unlock()
	t.net.register(addr, zone)
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	a, p, err := t.inner.FinalAdvertiseAddr(ip, port)
	if err == nil {
		t.setSelf(net.JoinHostPort(a.String(), fmt.Sprint(p)))
	}
	return a, p, err
}

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport: the packet is
// dropped, sent, or sent after a delay.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	drop, d := t.net.packet(t.Zone(), a.Addr)
	now := time.Now()
	if drop {
		return now, nil // lost in the network: the sender cannot tell
	}
	if f := t.net.getFilter(); f != nil {
		if b = t.net.filterPacket(f, t.Addr(), a.Addr, b); b == nil {
			return now, nil
		}
	}
	if d <= 0 {
		return t.inner.WriteToAddress(b, a)
	}
	buf := append([]byte(nil), b...) // the caller may reuse b
	time.AfterFunc(d, func() { _, _ = t.inner.WriteToAddress(buf, a) })
	return now, nil
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.inner.PacketCh() }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d, err := t.net.stream(t.Zone(), a.Addr, true)
	if err != nil {
		return nil, err
	}
	if 2*d > timeout {
		time.Sleep(timeout)
		return nil, fmt.Errorf("netsim: dial %s: timeout after %s", a.Addr, timeout)
	}
	time.Sleep(2 * d) // the handshake's round trip
	c, err := t.inner.DialAddressTimeout(a, timeout-2*d)
	if err != nil {
		return nil, err
	}
	local := c.LocalAddr().String()
	t.net.mu.Lock()
	t.net.dialers[local] = t.Addr()
	t.net.mu.Unlock()
	return &conn{Conn: c, t: t, to: a.Addr, local: local}, nil
}

// StreamCh implements memberlist.Transport. Accepted streams are wrapped
// so that a Filter sees what this side writes.
func (t *Transport) StreamCh() <-chan net.Conn {
	t.acceptOnce.Do(func() {
		t.accepted = make(chan net.Conn)
		go t.accept()
	})
	return t.accepted
}

// accept wraps the inner transport's accepted streams. Once Shutdown
// begins it closes them instead, and it returns once the inner transport
// is shut down: memberlist's NetTransport waits for its listener, which
// waits until someone takes the stream it accepted last.
func (t *Transport) accept() {
	in := t.inner.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.accepted <- &acceptedConn{Conn: c, t: t}:
			case <-t.done:
				c.Close()
			}
		case <-t.stopped:
			return
		}
	}
}

// Shutdown implements memberlist.Transport.
func (t *Transport) Shutdown() error {
	t.shutOnce.Do(func() { close(t.done) })
	err := t.inner.Shutdown()
	t.stopOnce.Do(func() { close(t.stopped) })
	return err
}

// acceptedConn is the accepting side of a stream: its writes pass the
// Network's Filter, addressed to the dialer.
type acceptedConn struct {
	net.Conn
	t *Transport
}

func (c *acceptedConn) Write(p []byte) (int, error) {
	f := c.t.net.getFilter()
	if f == nil {
		return c.Conn.Write(p)
	}
	c.t.net.mu.Lock()
	to := c.t.net.dialers[c.Conn.RemoteAddr().String()]
	c.t.net.mu.Unlock()
	if to == "" {
		return c.Conn.Write(p) // not dialed through a Transport
	}
	return filteredWrite(c.Conn, c.t.net, f, c.t.Addr(), to, p)
}

// filteredWrite writes p to w as f leaves it, and reports p written
// whatever f did (the network, not the writer, changed it).
func filteredWrite(w io.Writer, n *Network, f Filter, from, to string, p []byte) (int, error) {
	out, send := n.filterStream(f, from, to, p)
	if !send {
		return len(p), nil
	}
	if _, err := w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// conn is the dialing side of a stream: each write and read waits the
// link's one-way delay, and fails across a cut.
type conn struct {
	net.Conn
	t     *Transport
	to    string
	local string // the local address, a key of Network.dialers
}

func (c *conn) Write(p []byte) (int, error) {
	d, err := c.t.net.stream(c.t.Zone(), c.to, false)
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	if f := c.t.net.getFilter(); f != nil {
		return filteredWrite(c.Conn, c.t.net, f, c.t.Addr(), c.to, p)
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.t.net.mu.Lock()
	delete(c.t.net.dialers, c.local)
	c.t.net.mu.Unlock()
	return c.Conn.Close()
}

func (c *conn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	if k > 0 {
		d, cerr := c.t.net.stream(c.t.Zone(), c.to, false)
		if cerr != nil {
			return 0, cerr
		}
		time.Sleep(d)
	}
	return k, err
}
