package netsim

import (
	"errors"
	"io"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func listen(t *testing.T, n *Network, zone string) *Transport {
	t.Helper()
	tr, err := n.Listen("127.0.0.1", 0, zone, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

// recv returns the next packet within d, or nil.
func recv(tr *Transport, d time.Duration) *memberlist.Packet {
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(d):
		return nil
	}
}

func TestLossDelayAndCut(t *testing.T) {
	n := New(1)
	a, b := listen(t, n, "a"), listen(t, n, "b")

	// Loss: about the configured fraction, and the same for the same seed.
	n.SetLink("a", "b", Link{Loss: 0.3})
	const sent = 2000
	for range sent {
		if _, err := a.WriteTo([]byte("x"), b.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	s := n.Stats()
	if frac := float64(s.Lost) / sent; math.Abs(frac-0.3) > 0.05 {
		t.Errorf("lost %.3f of packets, want about 0.3", frac)
	}
	again := New(1)
	again.SetLink("a", "b", Link{Loss: 0.3})
	again.register(b.Addr(), "b")
	for range sent {
		again.packet("a", b.Addr())
	}
	if again.Stats().Lost != s.Lost {
		t.Errorf("same seed lost %d then %d packets", s.Lost, again.Stats().Lost)
	}
	got := 0
	for recv(b, 200*time.Millisecond) != nil {
		got++
		if got == sent-int(s.Lost) {
			break
		}
	}
	if got != sent-int(s.Lost) {
		t.Errorf("received %d packets, want %d", got, sent-int(s.Lost))
	}

	// Delay.
	n.SetLink("a", "b", Link{Delay: 50 * time.Millisecond})
	start := time.Now()
	a.WriteTo([]byte("late"), b.Addr())
	if p := recv(b, time.Second); p == nil || string(p.Buf) != "late" {
		t.Fatalf("delayed packet not received: %v", p)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("packet arrived after %s, want at least 50ms", d)
	}

	// Cut: packets vanish both ways, dials are refused; Heal restores.
	n.Cut("a", "b")
	a.WriteTo([]byte("cut"), b.Addr())
	b.WriteTo([]byte("cut"), a.Addr())
	if p := recv(b, 100*time.Millisecond); p != nil {
		t.Errorf("packet crossed a cut: %q", p.Buf)
	}
	if p := recv(a, 10*time.Millisecond); p != nil {
		t.Errorf("packet crossed a cut: %q", p.Buf)
	}
	if _, err := a.DialTimeout(b.Addr(), time.Second); !errors.Is(err, ErrCut) {
		t.Errorf("dial across a cut: %v, want ErrCut", err)
	}
	n.Heal("a", "b")
	n.SetLink("a", "b", Link{})
	c, err := a.DialTimeout(b.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
	defer c.Close()
	srv := <-b.StreamCh()
	defer srv.Close()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("stream read %q, %v", buf, err)
	}
	// A cut breaks an open stream too.
	n.Cut("a", "b")
	if _, err := c.Write([]byte("no")); !errors.Is(err, ErrCut) {
		t.Errorf("write across a cut: %v, want ErrCut", err)
	}
	n.HealAll()

	// Moving zones: within zone "b" the default (perfect) link applies.
	a.SetZone("b")
	n.Cut("a", "b")
	a.WriteTo([]byte("moved"), b.Addr())
	if p := recv(b, time.Second); p == nil {
		t.Error("packet within a zone was dropped by a cut between other zones")
	}
}
