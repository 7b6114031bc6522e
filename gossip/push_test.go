package gossip

import (
	"fmt"
	"slices"
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
	if ok, _, _ := tbl.ack(ack{ns: "ns", key: "k", version: 5, from: "far"}, &r); !ok {
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

func members(names ...string) []*memberlist.Node {
	out := make([]*memberlist.Node, len(names))
	for i, n := range names {
		out[i] = &memberlist.Node{Name: n}
	}
	return out
}

// TestRelaySharesStable: the relays of a region split it by a hash of
// member names, so two relays whose views differ by one member still cover
// every member they both know exactly once (a split by rank in each
// relay's own view skipped some members and doubled others), and each
// forwards the relay message to the other relays.
func TestRelaySharesStable(t *testing.T) {
	t.Parallel()
	var region []string
	for i := range 40 {
		region = append(region, fmt.Sprintf("eu-n%04d", i))
	}
	for _, k := range []int{2, 3} {
		for key := range 50 {
			id := recentID("routes", fmt.Sprintf("k%d", key))
			relays := pickRelays(id, members(region...), k)
			isRelay := func(name string) bool {
				return slices.ContainsFunc(relays, func(m *memberlist.Node) bool { return m.Name == name })
			}
			// Each relay's view lacks one member outside its own share
			// (a different one per relay), as when a join or a failure
			// has reached one relay and not yet the others.
			lacks := map[string]string{} // relay -> member it does not see
			count := map[string]int{}
			for i, r := range relays {
				var local []*memberlist.Node
				for _, name := range region {
					if name == r.Name {
						continue
					}
					if _, done := lacks[r.Name]; !done && !isRelay(name) && shareOf(name, k) != i && !slices.Contains(mapValues(lacks), name) {
						lacks[r.Name] = name
						continue
					}
					local = append(local, &memberlist.Node{Name: name})
				}
				p := planRelay(r.Name, local, id, share{uint8(i), uint8(k)})
				for _, m := range p.members {
					count[m.Name]++
				}
				if len(p.coRelays) != k-1 {
					t.Fatalf("k=%d key %d: relay %d forwards to %d co-relays, want %d", k, key, i, len(p.coRelays), k-1)
				}
				for j, c := range p.coRelays {
					if c.Name != relays[p.coShares[j]].Name {
						t.Errorf("k=%d key %d: relay %d sends share %d to %s, want %s", k, key, i, p.coShares[j], c.Name, relays[p.coShares[j]].Name)
					}
				}
			}
			for _, name := range region {
				switch {
				case isRelay(name) && count[name] != 0:
					t.Errorf("k=%d key %d: relay %s pushed to as a member %d times", k, key, name, count[name])
				case !isRelay(name) && count[name] != 1:
					t.Errorf("k=%d key %d: %s covered %d times, want once", k, key, name, count[name])
				}
			}
		}
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestAckPassedOn: a relay passes on to the node that relayed to it every
// ack its own targets send once, and the acks of members it never pushed
// to (a co-relay's share, whose relay message came from this node), but
// not a target's duplicate ack.
func TestAckPassedOn(t *testing.T) {
	t.Parallel()
	var r rttTable
	var tbl ackTable
	c := change{rec: record.Record{Namespace: "ns", Key: "k", Version: 5}}
	tbl.add(c, []target{{node: &memberlist.Node{Name: "a"}}, {node: &memberlist.Node{Name: "co-relay"}}}, "pusher", 10, r.timeout, time.Second)
	for _, tc := range []struct {
		from        string
		awaited     bool
		passedOnTo  string
		description string
	}{
		{"a", true, "pusher", "a target's ack"},
		{"a", false, "", "a target's duplicate ack"},
		{"b", false, "pusher", "an ack from the co-relay's share"},
		{"co-relay", true, "pusher", "the co-relay's ack"},
	} {
		awaited, to, _ := tbl.ack(ack{ns: "ns", key: "k", version: 5, from: tc.from}, &r)
		if awaited != tc.awaited || to != tc.passedOnTo {
			t.Errorf("%s: awaited %v, passed on to %q; want %v, %q", tc.description, awaited, to, tc.awaited, tc.passedOnTo)
		}
	}
}

// TestReportToOutlivesTheWait: a relay remembers to whom it passes acks on
// for the version it relayed, after its own wait ended, so that the acks a
// co-relay passes on later still reach the pusher; a newer version forgets
// it.
func TestReportToOutlivesTheWait(t *testing.T) {
	t.Parallel()
	r := newRecent(64)
	id := recentID("ns", "k")
	s := r.lock(id)
	s.observe(r, id, change{rec: record.Record{Namespace: "ns", Key: "k", Version: 7}})
	s.mu.Unlock()
	r.setReportTo(id, 7, "pusher")
	if got := r.reportTo(id, 7); got != "" {
		t.Errorf("before the relay: reportTo %q, want none", got)
	}
	r.markRelayed(id, 7)
	r.setReportTo(id, 7, "pusher")
	if got := r.reportTo(id, 7); got != "pusher" {
		t.Errorf("after the relay: reportTo %q, want pusher", got)
	}
	if got := r.reportTo(id, 6); got != "" {
		t.Errorf("other version: reportTo %q, want none", got)
	}
	s = r.lock(id)
	s.observe(r, id, change{rec: record.Record{Namespace: "ns", Key: "k", Version: 8}})
	s.mu.Unlock()
	if got := r.reportTo(id, 7); got != "" {
		t.Errorf("after a newer version: reportTo %q, want none", got)
	}
}

// TestRetryWaitCapped: after the steady retries the wait doubles only up
// to maxRetryWait (a first wait already longer is kept), so the later
// retries of PushRetries still come within seconds: a member whose first
// pushes were all lost (one in 1,400 at 30% loss) is saved by a retry,
// not by the log.
func TestRetryWaitCapped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		first time.Duration
		want  []time.Duration // waits after retries 1, 2, ...
	}{
		{400 * time.Millisecond, []time.Duration{400, 400, 800, 1000, 1000, 1000, 1000}},
		{1500 * time.Millisecond, []time.Duration{1500, 1500, 1500, 1500}},
	} {
		far := &memberlist.Node{Name: "far", Meta: encodeMeta("us")}
		c := change{rec: record.Record{Namespace: "ns", Key: "k", Version: 5}}
		var tbl ackTable
		fixed := func(string, time.Duration) time.Duration { return tc.first }
		p := tbl.add(c, []target{{node: far}}, "", 10, fixed, tc.first)
		due, _ := p.next()
		for i, ms := range tc.want {
			want := ms * time.Millisecond
			if resend, _ := p.due(due, len(tc.want)+1); len(resend) != 1 {
				t.Fatalf("first %s, retry %d: resend %v, want the target", tc.first, i+1, resend)
			}
			next, _ := p.next()
			if d := next.Sub(due); d != want {
				t.Errorf("first %s: wait after retry %d is %s, want %s", tc.first, i+1, d, want)
			}
			due = next
		}
	}
}
