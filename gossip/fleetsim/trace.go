package fleetsim

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// nodeApplier is a fleet member's Applier: it times arrivals and records
// the node's trace of each tracked change (gossip.Tracer), so that a late
// delivery can be explained.
type nodeApplier struct {
	f   *Fleet
	idx int
}

var (
	_ gossip.Applier = nodeApplier{}
	_ gossip.Tracer  = nodeApplier{}
)

func (a nodeApplier) Apply(rec record.Record) bool {
	a.f.arrived(a.idx, rec.Namespace, rec.Key, rec.Version)
	return true
}

func (a nodeApplier) Invalidate(ns, key string, v record.Version) {
	a.f.arrived(a.idx, ns, key, v)
}

// logApplier is what a member's log follower applies to: its nodeApplier,
// marking each change as delivered by the log (the follower is not
// gossip, so gossip's Tracer never sees what it applies).
type logApplier struct{ nodeApplier }

func (a logApplier) Apply(rec record.Record) bool {
	a.fromLog(rec.Namespace, rec.Key, rec.Version)
	return a.nodeApplier.Apply(rec)
}

func (a logApplier) Invalidate(ns, key string, v record.Version) {
	a.fromLog(ns, key, v)
	a.nodeApplier.Invalidate(ns, key, v)
}

// fromLog traces an arrival by the log; the first arrival of a tracked
// change names its path, so a change gossip delivered earlier keeps its own.
func (a logApplier) fromLog(ns, key string, v record.Version) {
	a.Trace(gossip.TraceEvent{Kind: gossip.TraceReceived, Path: "log", Fresh: true, Namespace: ns, Key: key, Version: v})
}

// Trace implements gossip.Tracer.
func (a nodeApplier) Trace(e gossip.TraceEvent) {
	f := a.f
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	tr := f.changes[e.Namespace+"/"+e.Key]
	if tr == nil || e.Version != tr.version {
		return
	}
	ev := event{at: now.Sub(tr.at), node: a.idx, peer: -1, kind: e.Kind, path: e.Path, try: e.Try, fresh: e.Fresh}
	if e.Peer != "" {
		ev.peer = f.byName[e.Peer]
	}
	tr.events = append(tr.events, ev)
	if e.Kind == gossip.TraceReceived && e.Fresh && tr.path[a.idx] == "" {
		tr.path[a.idx] = e.Path
	}
}

// event is one traced step of a tracked change, at a node.
type event struct {
	at    time.Duration // since publish
	node  int
	peer  int // the other node's index, -1 if none
	kind  gossip.TraceKind
	path  string
	try   int
	fresh bool
}

// LateAfter is the delivery time from which Report explains a delivery
// (Late): the goal for the slowest delivery at 10% loss is half of it.
const LateAfter = 500 * time.Millisecond

// deliveredBy names the path that delivered change tr to member i: push,
// relay, retry (a push or relay resent after a missing ack), gossip repair
// (gossip, or a push/pull digest), log, or local (the publisher).
func (tr *tracked) deliveredBy(i int) string {
	p := tr.path[i]
	switch p {
	case "push", "relay":
		// A retry if the last send of that path to i before arrival was
		// one.
		last := -1
		for _, e := range tr.events {
			if e.kind == gossip.TraceSent && e.peer == i && e.path == p && e.at <= tr.arrived[i] {
				last = e.try
			}
		}
		if last > 0 {
			return "retry"
		}
		return p
	case "gossip", "digest":
		return "gossip repair"
	case "":
		return "unknown"
	}
	return p
}

// explain says how change tr reached member i, and why the faster paths
// did not: every push, relay and retry sent to it, what its region's
// relays got, and whether a sender gave up on it.
func (f *Fleet) explain(key string, tr *tracked, i int) string {
	var b strings.Builder
	m := f.members[i]
	fmt.Fprintf(&b, "%s %s at %d ms by %s.", m.name, key, tr.arrived[i].Milliseconds(), tr.deliveredBy(i))
	var sends, gaveUp []string
	for _, e := range tr.events {
		switch {
		case e.kind == gossip.TraceSent && e.peer == i:
			sends = append(sends, fmt.Sprintf("%s#%d from %s @%dms", e.path, e.try, f.members[e.node].name, e.at.Milliseconds()))
		case e.kind == gossip.TraceGaveUp && e.peer == i:
			gaveUp = append(gaveUp, fmt.Sprintf("%s @%dms", f.members[e.node].name, e.at.Milliseconds()))
		}
	}
	if len(sends) == 0 {
		b.WriteString(" No push, relay or retry was sent to it")
		// Who relayed in its region, and when they got the change.
		// A relay that counted the member failed or left (not yet seen
		// rejoining) does not push to it: say so, with when it saw it
		// rejoin.
		var relays []string
		blind := 0
		for _, e := range tr.events {
			if e.kind == gossip.TraceReceived && e.path == "relay" && f.members[e.node].region == m.region {
				l := fmt.Sprintf("%s got a relay @%dms", f.members[e.node].name, e.at.Milliseconds())
				if alive, known := f.aliveIn(e.node, m.name, tr.at.Add(e.at)); known && !alive {
					blind++
					l += " but counted it failed"
					if j, ok := f.joinedAt(e.node, m.name); ok && j.After(tr.at) {
						l += fmt.Sprintf(" (saw it rejoin @%dms)", j.Sub(tr.at).Milliseconds())
					}
				}
				relays = append(relays, l)
			}
		}
		switch {
		case len(relays) == 0 && m.region != f.members[tr.publisher].region:
			b.WriteString(" (no relay of its region ever got the change)")
		case len(relays) > 0 && blind == len(relays):
			fmt.Fprintf(&b, " (relays: %s: none counted it alive)", strings.Join(relays, ", "))
		case len(relays) > 0:
			fmt.Fprintf(&b, " (relays: %s: not in any share they covered)", strings.Join(relays, ", "))
		}
		// The relay messages sent into its region from outside it, per
		// target: how often, whether the sender gave up, and how the
		// target itself got the change (a target that got it by push
		// does not relay; if the sender stopped retrying without giving
		// up, an ack was counted for it).
		type relayTarget struct{ sends, gaveUp int }
		targets := map[int]*relayTarget{}
		var order []int
		for _, e := range tr.events {
			if e.peer < 0 || f.members[e.peer].region != m.region || f.members[e.node].region == m.region || e.path != "relay" {
				continue
			}
			rt := targets[e.peer]
			if rt == nil {
				rt = &relayTarget{}
				targets[e.peer] = rt
				order = append(order, e.peer)
			}
			switch e.kind {
			case gossip.TraceSent:
				rt.sends++
			case gossip.TraceGaveUp:
				rt.gaveUp++
			}
		}
		for _, j := range order {
			rt := targets[j]
			how := "never got the change"
			if tr.arrived[j] > 0 {
				how = fmt.Sprintf("got it by %s @%dms", tr.path[j], tr.arrived[j].Milliseconds())
			}
			stop := "acked"
			if rt.gaveUp > 0 {
				stop = "given up"
			}
			fmt.Fprintf(&b, "; relay to %s sent %d time(s), then %s; it %s", f.members[j].name, rt.sends, stop, how)
		}
		b.WriteString(".")
	} else {
		fmt.Fprintf(&b, " Sent to it: %s; each lost or beaten by the delivery", strings.Join(sends, ", "))
		if len(gaveUp) > 0 {
			fmt.Fprintf(&b, "; given up by %s", strings.Join(gaveUp, ", "))
		}
		b.WriteString(".")
	}
	return b.String()
}

// lateDeliveries returns, for changes published at or after since, the
// deliveries to up members that took LateAfter or longer: counted by the
// path that delivered them, and explained (at most limit, slowest first).
func (f *Fleet) lateDeliveries(since time.Time, limit int) (byPath map[string]int, lines []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	type late struct {
		key string
		tr  *tracked
		i   int
	}
	var all []late
	byPath = map[string]int{}
	for key, tr := range f.changes {
		if tr.at.Before(since) {
			continue
		}
		for i, m := range f.members {
			if m.up && tr.arrived[i] >= LateAfter {
				all = append(all, late{key, tr, i})
				byPath[tr.deliveredBy(i)]++
			}
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].tr.arrived[all[a].i] > all[b].tr.arrived[all[b].i] })
	for _, l := range all[:min(len(all), limit)] {
		lines = append(lines, f.explain(l.key, l.tr, l.i))
	}
	return byPath, lines
}

// repairs returns, for changes published at or after since, why changes
// went to gossip repair: counts by reason ("gave up on <path>", "no
// target", "no retries").
func (f *Fleet) repairs(since time.Time) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, tr := range f.changes {
		if tr.at.Before(since) {
			continue
		}
		for _, e := range tr.events {
			switch e.kind {
			case gossip.TraceGaveUp:
				out["gave up on a "+e.path]++
			case gossip.TraceNoTarget:
				out["no target"]++
			case gossip.TraceUnconfirmed:
				if e.peer < 0 {
					out["sent without retries"]++
				}
			}
		}
	}
	return out
}
