package netsim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestMemoryDelayLossCut checks the in-memory transport: a packet arrives
// after its link's one-way delay (virtual time), a cut drops packets and
// refuses dials, loss drops about its fraction, and counters count.
func TestMemoryDelayLossCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(7)
		n.SetLink("eu", "us", Link{Delay: 40 * time.Millisecond})
		var ca, cb Counters
		a, err := n.ListenMemory("10.0.0.1:7946", "eu", &ca)
		if err != nil {
			t.Fatal(err)
		}
		b, err := n.ListenMemory("10.0.0.2:7946", "us", &cb)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.ListenMemory("10.0.0.2:7946", "us", &cb); err == nil {
			t.Errorf("second listener on a live address accepted")
		}

		t0 := time.Now()
		if _, err := a.WriteToAddress([]byte("ping"), memberlist.Address{Addr: "10.0.0.2:7946"}); err != nil {
			t.Fatal(err)
		}
		p := <-b.PacketCh()
		if got := time.Since(t0); got != 40*time.Millisecond {
			t.Errorf("packet took %s, want the link's 40ms", got)
		}
		if string(p.Buf) != "ping" || p.From.String() != "10.0.0.1:7946" {
			t.Errorf("got %q from %s", p.Buf, p.From)
		}
		if ca.PacketsOut.Load() != 1 || cb.PacketsIn.Load() != 1 || cb.BytesIn.Load() != 4 {
			t.Errorf("counters: out %d in %d bytes %d", ca.PacketsOut.Load(), cb.PacketsIn.Load(), cb.BytesIn.Load())
		}

		n.Cut("eu", "us")
		a.WriteToAddress([]byte("lost"), memberlist.Address{Addr: "10.0.0.2:7946"})
		if _, err := a.DialAddressTimeout(memberlist.Address{Addr: "10.0.0.2:7946"}, time.Second); err == nil {
			t.Errorf("dial across a cut succeeded")
		}
		time.Sleep(time.Second)
		select {
		case p := <-b.PacketCh():
			t.Errorf("packet %q crossed a cut", p.Buf)
		default:
		}
		n.Heal("eu", "us")

		n.SetLoss(0.25)
		const sent = 2000
		for range sent {
			a.WriteToAddress([]byte("x"), memberlist.Address{Addr: "10.0.0.2:7946"})
		}
		time.Sleep(time.Second)
		got := len(b.PacketCh())
		if got < sent*70/100 || got > sent*80/100 {
			t.Errorf("%d of %d packets arrived with 25%% loss, want about 75%%", got, sent)
		}

		// A stream: dial costs a round trip, and bytes flow.
		n.SetLoss(0)
		t0 = time.Now()
		go func() {
			c := <-b.StreamCh()
			buf := make([]byte, 5)
			k, _ := c.Read(buf)
			c.Write(buf[:k])
			c.Close()
		}()
		c, err := a.DialAddressTimeout(memberlist.Address{Addr: "10.0.0.2:7946"}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Since(t0); got != 80*time.Millisecond {
			t.Errorf("dial took %s, want a round trip (80ms)", got)
		}
		c.Write([]byte("hello"))
		buf := make([]byte, 5)
		if k, err := c.Read(buf); err != nil || string(buf[:k]) != "hello" {
			t.Errorf("echo: %q, %v", buf[:k], err)
		}
		c.Close()
		a.Shutdown()
		b.Shutdown()
		if _, err := n.ListenMemory("10.0.0.2:7946", "us", &cb); err != nil {
			t.Errorf("listen again after shutdown: %v", err)
		}
	})
}
