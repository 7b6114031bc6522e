package netsim

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Counters count one in-memory endpoint's traffic: every memberlist packet
// (probes, gossip, pushes and acks) and every stream write (push/pull,
// joins).
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

// Traffic returns the counts so far.
func (c *Counters) Traffic() Traffic {
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

// endpoint is one listening MemoryTransport.
type endpoint struct {
	addr    string
	zone    string
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	c       *Counters
}

// ListenMemory returns an in-memory transport for addr ("ip:port") in zone,
// whose traffic counts into c (which may be shared across restarts of one
// node). A previous transport on addr must have been shut down.
func (n *Network) ListenMemory(addr, zone string, c *Counters) (*MemoryTransport, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netsim listen: %w", err)
	}
	ip := net.ParseIP(host)
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return nil, fmt.Errorf("netsim listen: bad address %q", addr)
	}
	ep := &endpoint{
		addr: addr, zone: zone, c: c,
		packets: make(chan *memberlist.Packet, 4096),
		streams: make(chan net.Conn, 64),
		done:    make(chan struct{}),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.mem[addr]; ok {
		select {
		case <-old.done:
		default:
			return nil, fmt.Errorf("netsim listen: %s already in use", addr)
		}
	}
	n.mem[addr] = ep
	return &MemoryTransport{n: n, ep: ep, ip: ip, port: p}, nil
}

// lookup returns the live in-memory listener on addr, or nil.
func (n *Network) lookup(addr string) *endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep := n.mem[addr]
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

// packetZones decides the fate of one packet from zone a to zone b.
func (n *Network) packetZones(a, b string) (drop bool, delay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.packetLocked(a, b)
}

// streamZones returns the one-way delay for a stream from zone a to zone b,
// or ErrCut.
func (n *Network) streamZones(a, b string, dial bool) (time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.streamLocked(a, b, dial)
}

// MemoryTransport is a memberlist.NodeAwareTransport that exists only in
// its Network: packets are delivered by timers and streams are net.Pipe
// pairs, so inside a testing/synctest bubble everything runs in virtual
// time. A packet to an address nobody listens on vanishes without a
// decision of the network.
type MemoryTransport struct {
	n    *Network
	ep   *endpoint
	ip   net.IP
	port int
	once sync.Once
}

var _ memberlist.NodeAwareTransport = (*MemoryTransport)(nil)

type memAddr string

func (a memAddr) Network() string { return "netsim" }
func (a memAddr) String() string  { return string(a) }

// FinalAdvertiseAddr implements memberlist.Transport: the listen address.
func (t *MemoryTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.ip, t.port, nil
}

// WriteTo implements memberlist.Transport.
func (t *MemoryTransport) WriteTo(b []byte, a string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: a})
}

// WriteToAddress implements memberlist.NodeAwareTransport: the packet is
// counted, then lost, or delivered after the link's delay to whoever
// listens on the address then (a full receive queue drops it, as a socket
// buffer would).
func (t *MemoryTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	t.ep.c.PacketsOut.Add(1)
	t.ep.c.BytesOut.Add(int64(len(b)))
	dst := t.n.lookup(a.Addr)
	if dst == nil {
		return now, nil
	}
	drop, d := t.n.packetZones(t.ep.zone, dst.zone)
	if drop {
		return now, nil
	}
	if f := t.n.getFilter(); f != nil {
		if b = t.n.filterPacket(f, t.ep.addr, a.Addr, b); b == nil {
			return now, nil
		}
	}
	buf := append([]byte(nil), b...) // the caller may reuse b
	from := memAddr(t.ep.addr)
	time.AfterFunc(d, func() {
		dst := t.n.lookup(a.Addr)
		if dst == nil {
			return
		}
		// Counted before the send, so that a receiver that has the packet
		// sees it counted too; taken back if the queue is full.
		dst.c.PacketsIn.Add(1)
		dst.c.BytesIn.Add(int64(len(buf)))
		select {
		case dst.packets <- &memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()}:
		default:
			dst.c.PacketsIn.Add(-1)
			dst.c.BytesIn.Add(-int64(len(buf)))
		}
	})
	return now, nil
}

// PacketCh implements memberlist.Transport.
func (t *MemoryTransport) PacketCh() <-chan *memberlist.Packet { return t.ep.packets }

// DialTimeout implements memberlist.Transport.
func (t *MemoryTransport) DialTimeout(a string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: a}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a round
// trip for the handshake, then a pipe whose writes, on either side, each
// take the link's one-way delay and fail across a cut. A dial across a cut
// waits out its timeout.
func (t *MemoryTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst := t.n.lookup(a.Addr)
	if dst == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, a.Addr)
	}
	d, err := t.n.streamZones(t.ep.zone, dst.zone, true)
	if err != nil {
		time.Sleep(timeout)
		return nil, fmt.Errorf("netsim: dial %s: %w", a.Addr, err)
	}
	if 2*d > timeout {
		time.Sleep(timeout)
		return nil, fmt.Errorf("%w: dial %s timed out", ErrUnreachable, a.Addr)
	}
	time.Sleep(2 * d) // the handshake's round trip
	p1, p2 := net.Pipe()
	local := &memConn{Conn: p2, n: t.n, from: t.ep.zone, to: dst.zone, fromAddr: t.ep.addr, toAddr: a.Addr, c: t.ep.c}
	remote := &memConn{Conn: p1, n: t.n, from: dst.zone, to: t.ep.zone, fromAddr: a.Addr, toAddr: t.ep.addr, c: dst.c}
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
func (t *MemoryTransport) StreamCh() <-chan net.Conn { return t.ep.streams }

// Shutdown implements memberlist.Transport: the address stops receiving.
func (t *MemoryTransport) Shutdown() error {
	t.once.Do(func() { close(t.ep.done) })
	return nil
}

// memConn is one side of an in-memory stream: each write waits the link's
// one-way delay, and a write across a cut fails and closes the stream.
type memConn struct {
	net.Conn
	n                *Network
	from, to         string // zones
	fromAddr, toAddr string // the two ends' listen addresses
	c                *Counters
}

func (c *memConn) Write(p []byte) (int, error) {
	d, err := c.n.streamZones(c.from, c.to, false)
	if err != nil {
		c.Conn.Close()
		return 0, err
	}
	time.Sleep(d)
	if f := c.n.getFilter(); f != nil {
		if out, send := c.n.filterStream(f, c.fromAddr, c.toAddr, p); !send {
			return len(p), nil
		} else if !same(out, p) {
			k, err := c.Conn.Write(out)
			c.c.StreamBytesOut.Add(int64(k))
			if err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	k, err := c.Conn.Write(p)
	c.c.StreamBytesOut.Add(int64(k))
	return k, err
}

func (c *memConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.c.StreamBytesIn.Add(int64(k))
	return k, err
}
