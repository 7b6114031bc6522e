package gossip

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/record"
)

func TestRTTTableTimeout(t *testing.T) {
	t.Parallel()
	var r rttTable
	def := 300 * time.Millisecond
	if got := r.timeout("eu", def); got != def {
		t.Fatalf("unknown region: timeout %s, want the default %s", got, def)
	}
	r.observe("eu", 2*time.Millisecond)
	if got, want := r.timeout("eu", def), 7250*time.Microsecond; got != want {
		t.Errorf("after a 2ms sample: timeout %s, want %s", got, want)
	}
	for range 100 {
		r.observe("eu", 100*time.Millisecond)
	}
	if got := r.timeout("eu", def); got < 115*time.Millisecond || got > 120*time.Millisecond {
		t.Errorf("after many 100ms samples: timeout %s, want about 117.5ms (the RTT, an eighth of it, 5ms)", got)
	}
	// A probe seeds a region no push has measured, but does not move one
	// that a push has.
	r.observeProbe("us", 200*time.Millisecond)
	if got, want := r.timeout("us", def), 230*time.Millisecond; got != want {
		t.Errorf("after a 200ms probe: timeout %s, want %s", got, want)
	}
	r.observeProbe("eu", time.Second)
	if got := r.timeout("eu", def); got > 120*time.Millisecond {
		t.Errorf("a probe moved a region measured by pushes: timeout %s", got)
	}
	r.observe("us", 100*time.Millisecond)
	if got, want := r.timeout("us", def), 117500*time.Microsecond; got != want {
		t.Errorf("first push sample after a probe: timeout %s, want %s (the push replaces the probe)", got, want)
	}
	if got := r.timeout("ap", def); got != def {
		t.Errorf("other region: timeout %s, want the default", got)
	}
}

// TestPendingRetriesPerTarget: each target is retried on its own timeout,
// at a steady pace for the first retries and then doubling, and given up
// after the retries; an ack feeds the RTT table only for a target that
// needed no retry.
func TestPendingRetriesPerTarget(t *testing.T) {
	t.Parallel()
	near := &memberlist.Node{Name: "near", Meta: encodeMeta("eu")}
	far := &memberlist.Node{Name: "far", Meta: encodeMeta("us")}
	var r rttTable
	r.observe("eu", 12*time.Millisecond) // timeout 12+1.5+5 = 18.5ms
	c := change{rec: record.Record{Namespace: "ns", Key: "k", Version: 5}}
	var tbl ackTable
	p := tbl.add(c, []target{{node: near}, {node: far}}, "", 10, r.timeout, time.Second)
	t0 := time.Now()
	due, ok := p.next()
	if !ok || due.Sub(t0) > 25*time.Millisecond {
		t.Fatalf("first due in %s (ok %v), want about 18.5ms (the near target)", due.Sub(t0), ok)
	}
	const retries = steadyRetries + 1
	wants := []time.Duration{18500 * time.Microsecond, 18500 * time.Microsecond, 37 * time.Millisecond}
	for i, want := range wants {
		resend, gaveUp := p.due(due, retries)
		if len(resend) != 1 || resend[0].node != near || resend[0].try != i+1 || len(gaveUp) != 0 {
			t.Fatalf("at due %d: resend %v gaveUp %v, want the near target only, try %d", i, resend, gaveUp, i+1)
		}
		next, _ := p.next()
		if d := next.Sub(due); d < want-2*time.Millisecond || d > want+2*time.Millisecond {
			t.Errorf("wait after retry %d: %s, want about %s", i+1, d, want)
		}
		due = next
	}
	if _, gaveUp := p.due(due, retries); len(gaveUp) != 1 || gaveUp[0].node != near {
		t.Errorf("near target not given up after its retries: %v", gaveUp)
	}
	if ok, _ := tbl.ack(ack{ns: "ns", key: "k", version: 5, from: "far"}, &r); !ok {
		t.Fatalf("ack from far not awaited")
	}
	select {
	case <-p.done:
	default:
		t.Errorf("pending not done once every target acked or was given up")
	}
	if got := r.timeout("us", time.Hour); got == time.Hour {
		t.Errorf("ack without retry gave no RTT sample for its region")
	}
}

// TestMarkRelayedOncePerVersion: a relay forwards each version once, even
// when it already held that version (another relay pushed it first), and
// never an older version.
func TestMarkRelayedOncePerVersion(t *testing.T) {
	t.Parallel()
	r := newRecent(64)
	id := recentID("ns", "k")
	s := r.lock(id)
	s.observe(r, id, change{rec: record.Record{Namespace: "ns", Key: "k", Version: 7}})
	s.mu.Unlock()
	for _, tc := range []struct {
		v    record.Version
		want bool
	}{{6, false}, {7, true}, {7, false}, {8, false}} {
		if got := r.markRelayed(id, tc.v); got != tc.want {
			t.Errorf("markRelayed(v%d) = %v, want %v", tc.v, got, tc.want)
		}
	}
	s = r.lock(id)
	s.observe(r, id, change{rec: record.Record{Namespace: "ns", Key: "k", Version: 9}})
	s.mu.Unlock()
	if !r.markRelayed(id, 9) {
		t.Errorf("a newer version is relayed again")
	}
	if r.markRelayed(recentID("ns", "other"), 1) {
		t.Errorf("unknown key relayed")
	}
}
