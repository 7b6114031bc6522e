package fleetsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Link is the behaviour of traffic between two zones, the same both ways.
type Link struct {
	Delay time.Duration // one-way latency
	Loss  float64       // fraction of packets dropped, 0 to 1
}

// Counters count one endpoint's traffic: every memberlist packet (probes,
// gossip, our pushes and acks) and every stream write (push/pull, joins).
type Counters struct {
	PacketsOut, BytesOut atomic.Int64
	PacketsIn, BytesIn   atomic.Int64
	StreamBytesOut       atomic.Int64
	StreamBytesIn        atomic.Int64
}

// Traffic is a snapshot of Counters.
type Traffic struct {
	PacketsOut, BytesOut, PacketsIn, BytesIn int64
	StreamBytesOut, StreamBytesIn            int64
}

func (c *Counters) snapshot() Traffic {
	return Traffic{
		PacketsOut: c.PacketsOut.Load(), BytesOut: c.BytesOut.Load(),
		PacketsIn: c.PacketsIn.Load(), BytesIn: c.BytesIn.Load(),
		StreamBytesOut: c.StreamBytesOut.Load(), StreamBytesIn: c.StreamBytesIn.Load(),
	}
}

// Sub returns t minus o, field by field.
func (t Traffic) Sub(o Traffic) Traffic {
	return Traffic{t.PacketsOut - o.PacketsOut, t.BytesOut - o.BytesOut, t.PacketsIn - o.PacketsIn, t.BytesIn - o.BytesIn,
		t.StreamBytesOut - o.StreamBytesOut, t.StreamBytesIn - o.StreamBytesIn}
}

// Add returns t plus o, field by field.
func (t Traffic) Add(o Traffic) Traffic {
	return Traffic{t.PacketsOut + o.PacketsOut, t.BytesOut + o.BytesOut, t.PacketsIn + o.PacketsIn, t.BytesIn + o.BytesIn,
		t.StreamBytesOut + o.StreamBytesOut, t.StreamBytesIn + o.StreamBytesIn}
}

// ErrUnreachable is returned for dials to an address nobody listens on, or
// across a cut.
var ErrUnreachable = errors.New("fleetsim: unreachable")

// Network is an in-memory network of memberlist transports, in zones, with
// per-zone-pair delay and loss and partitions. Packets are delivered by
// timers and streams are net.Pipe pairs, so inside a testing/synctest
// bubble everything runs in virtual time. Safe for concurrent use.
type Network struct {
	mu    sync.Mutex // guards the fields below
	rng   *rand.Rand
	def   Link
	links map[[2]string]Link
	cuts  map[[2]string]bool
	eps   map[string]*endpoint // by address
}

// NewNetwork returns a network with perfect links, seeded for its loss
// choices.
func NewNetwork(seed uint64) *Network {
	return &Network{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		links: make(map[[2]string]Link),
		cuts:  make(map[[2]string]bool),
		eps:   make(map[string]*endpoint),
	}
}

func key(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// SetDefault sets the link used between zones with no link of their own.
func (n *Network) SetDefault(l Link) { n.mu.Lock(); n.def = l; n.mu.Unlock() }

// SetLink sets the link between zones a and b (a == b: within a zone).
func (n *Network) SetLink(a, b string, l Link) { n.mu.Lock(); n.links[key(a, b)] = l; n.mu.Unlock() }

// SetLoss sets the loss of every link, the default included.
func (n *Network) SetLoss(loss float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def.Loss = loss
	for k, l := range n.links {
		l.Loss = loss
		n.links[k] = l
	}
}

// Cut partitions zones a and b; Heal ends it.
func (n *Network) Cut(a, b string) { n.mu.Lock(); n.cuts[key(a, b)] = true; n.mu.Unlock() }

// Heal ends a partition between a and b.
func (n *Network) Heal(a, b string) { n.mu.Lock(); delete(n.cuts, key(a, b)); n.mu.Unlock() }

// IsCut reports whether zones a and b are partitioned.
func (n *Network) IsCut(a, b string) bool { n.mu.Lock(); defer n.mu.Unlock(); return n.cuts[key(a, b)] }

// fate decides one packet or stream write from zone a to zone b.
func (n *Network) fate(a, b string, lossy bool) (ok bool, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := key(a, b)
	if n.cuts[k] {
		return false, 0
	}
	l, found := n.links[k]
	if !found {
		l = n.def
	}
	if lossy && l.Loss > 0 && n.rng.Float64() < l.Loss {
		return false, 0
	}
	return true, l.Delay
}

// endpoint is one listening transport.
type endpoint struct {
	addr    string
	zone    string
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	c       *Counters
}

// Listen returns a transport for addr ("ip:port"), in zone, whose traffic
// counts into c (which may be shared across restarts of one node). A
// previous transport on addr must have been shut down.
func (n *Network) Listen(addr, zone string, c *Counters) (*Transport, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("fleetsim listen: %w", err)
	}
	ip := net.ParseIP(host)
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return nil, fmt.Errorf("fleetsim listen: bad address %q", addr)
	}
	ep := &endpoint{
		addr: addr, zone: zone, c: c,
		packets: make(chan *memberlist.Packet, 4096),
		streams: make(chan net.Conn, 64),
		done:    make(chan struct{}),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.eps[addr]; ok {
		select {
		case <-old.done:
		default:
			return nil, fmt.Errorf("fleetsim listen: %s already in use", addr)
		}
	}
	n.eps[addr] = ep
	return &Transport{n: n, ep: ep, ip: ip, port: p}, nil
}

func (n *Network) lookup(addr string) *endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep := n.eps[addr]
	if ep == nil {
		return nil
	}
	select {
	case <-ep.done:
		return nil
	default:
		return ep
	}
}

// Transport is a memberlist.NodeAwareTransport on a Network.
type Transport struct {
	n    *Network
	ep   *endpoint
	ip   net.IP
	port int
	once sync.Once
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

type addr string

func (a addr) Network() string { return "fleetsim" }
func (a addr) String() string  { return string(a) }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) { return t.ip, t.port, nil }

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, a string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: a})
}

// WriteToAddress implements memberlist.NodeAwareTransport: the packet is
// counted, then lost, or delivered after the link's delay to whoever
// listens on the address then (a full receive queue drops it, as a socket
// buffer would).
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	t.ep.c.PacketsOut.Add(1)
	t.ep.c.BytesOut.Add(int64(len(b)))
	dst := t.n.lookup(a.Addr)
	if dst == nil {
		return now, nil
	}
	ok, d := t.n.fate(t.ep.zone, dst.zone, true)
	if !ok {
		return now, nil
	}
	buf := append([]byte(nil), b...)
	from := addr(t.ep.addr)
	time.AfterFunc(d, func() {
		dst := t.n.lookup(a.Addr)
		if dst == nil {
			return
		}
		select {
		case dst.packets <- &memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()}:
			dst.c.PacketsIn.Add(1)
			dst.c.BytesIn.Add(int64(len(buf)))
		default:
		}
	})
	return now, nil
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.ep.packets }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(a string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: a}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a round
// trip for the handshake, then a pipe whose writes each take the link's
// one-way delay and fail across a cut.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst := t.n.lookup(a.Addr)
	if dst == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, a.Addr)
	}
	ok, d := t.n.fate(t.ep.zone, dst.zone, false)
	if !ok || 2*d > timeout {
		time.Sleep(timeout)
		return nil, fmt.Errorf("%w: dial %s timed out", ErrUnreachable, a.Addr)
	}
	time.Sleep(2 * d)
	p1, p2 := net.Pipe()
	local := &conn{Conn: p2, n: t.n, from: t.ep.zone, to: dst.zone, c: t.ep.c}
	remote := &conn{Conn: p1, n: t.n, from: dst.zone, to: t.ep.zone, c: dst.c}
	select {
	case dst.streams <- remote:
		return local, nil
	case <-dst.done:
	case <-time.After(timeout):
	}
	p1.Close()
	p2.Close()
	return nil, fmt.Errorf("%w: %s not accepting", ErrUnreachable, a.Addr)
}

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.ep.streams }

// Shutdown implements memberlist.Transport: the address stops receiving.
func (t *Transport) Shutdown() error {
	t.once.Do(func() { close(t.ep.done) })
	return nil
}

// conn is one side of a stream.
type conn struct {
	net.Conn
	n        *Network
	from, to string
	c        *Counters
}

func (c *conn) Write(p []byte) (int, error) {
	ok, d := c.n.fate(c.from, c.to, false)
	if !ok {
		c.Conn.Close()
		return 0, fmt.Errorf("%w: stream cut", ErrUnreachable)
	}
	time.Sleep(d)
	k, err := c.Conn.Write(p)
	c.c.StreamBytesOut.Add(int64(k))
	return k, err
}

func (c *conn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.c.StreamBytesIn.Add(int64(k))
	return k, err
}
