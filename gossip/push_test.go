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
	if got, want := r.timeout("eu", def), 8*time.Millisecond; got != want {
		t.Errorf("after a 2ms sample: timeout %s, want %s", got, want)
	}
	for range 100 {
		r.observe("eu", 100*time.Millisecond)
	}
	if got := r.timeout("eu", def); got < 150*time.Millisecond || got > 156*time.Millisecond {
		t.Errorf("after many 100ms samples: timeout %s, want about 155ms", got)
	}
	if got := r.timeout("us", def); got != def {
		t.Errorf("other region: timeout %s, want the default", got)
	}
}

// TestPendingRetriesPerTarget: each target is retried on its own timeout,
// doubling, and given up after the retries; an ack feeds the RTT table
// only for a target that needed no retry.
func TestPendingRetriesPerTarget(t *testing.T) {
	t.Parallel()
	near := &memberlist.Node{Name: "near", Meta: encodeMeta("eu")}
	far := &memberlist.Node{Name: "far", Meta: encodeMeta("us")}
	var r rttTable
	r.observe("eu", 10*time.Millisecond) // timeout 20ms
	c := change{rec: record.Record{Namespace: "ns", Key: "k", Version: 5}}
	var tbl ackTable
	p := tbl.add(c, []target{{node: near}, {node: far}}, "", 10, r.timeout, time.Second)
	t0 := time.Now()
	due, ok := p.next()
	if !ok || due.Sub(t0) > 25*time.Millisecond {
		t.Fatalf("first due in %s (ok %v), want about 20ms (the near target)", due.Sub(t0), ok)
	}
	resend, gaveUp := p.due(due, 1)
	if len(resend) != 1 || resend[0].node != near || gaveUp {
		t.Fatalf("at first due: resend %v gaveUp %v, want the near target only", resend, gaveUp)
	}
	// Its second timeout is twice the first; after it, with 1 retry, it is
	// given up; the far target is still waited for.
	due2, _ := p.next()
	if d := due2.Sub(due); d < 35*time.Millisecond || d > 45*time.Millisecond {
		t.Errorf("second wait %s, want about 40ms", d)
	}
	if _, gaveUp := p.due(due2, 1); !gaveUp {
		t.Errorf("near target not given up after its retry")
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
