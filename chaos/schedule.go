package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// FaultKind is a kind of fault the schedule injects.
type FaultKind int

// The faults a schedule draws from.
const (
	// Stop closes a node gracefully (it leaves the cluster and saves its
	// local snapshot files) and restarts it when the fault ends.
	Stop FaultKind = iota
	// Crash closes a node and rolls its local snapshot files back to
	// their last periodic write, as if it had died without saving, and
	// restarts it when the fault ends.
	Crash
	// Partition cuts two zones apart.
	Partition
	// Lossy makes every link drop Loss of the packets and delay the rest.
	Lossy
	// OriginDown makes every node's origin reads fail.
	OriginDown
	// OriginSlow makes every node's origin reads take FaultyStore.SlowDelay.
	OriginSlow
	// OriginCorrupt makes every node's origin reads return corrupt objects.
	OriginCorrupt
	// Skew shifts a node's clock by Skew.
	Skew
	// CacheDown kills cache node Node (its listener and its cache) and
	// starts it again, empty, on the same address when the fault ends.
	// Drawn only when Shape.CacheNodes > 0.
	CacheDown
	// CacheSlow delays every request to cache node Node by Delay.
	// Drawn only when Shape.CacheNodes > 0.
	CacheSlow
	// Outage is a whole origin outage: every node's origin and change-log
	// reads fail, and so do the publishers' writes (they use the same
	// origin), so no change and no proof of being current reaches any
	// node. Never drawn at random: Shape.Outage places one, longer than
	// the fail-closed bound D, so that failing closed is exercised.
	Outage
	numKinds
)

// numNodeKinds is how many kinds a schedule without a cache tier draws
// from: those before CacheDown (so that such schedules, and their seeds'
// replays, are what they were before the cache-tier kinds existed).
const numNodeKinds = CacheDown

var kindNames = [numKinds]string{"stop", "crash", "partition", "lossy", "origin-down", "origin-slow", "origin-corrupt", "clock-skew", "cache-node-down", "cache-node-slow", "outage"}

// String names the kind.
func (k FaultKind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Fault is one fault of a schedule: what, to whom, from when, for how long.
type Fault struct {
	Kind     FaultKind
	At       time.Duration // from the start of the run
	Duration time.Duration
	Node     int           // Stop, Crash, Skew; the cache node of CacheDown, CacheSlow
	Zones    [2]string     // Partition
	Loss     float64       // Lossy
	Delay    time.Duration // Lossy: one-way delay (jitter is as much again); CacheSlow: added to each request
	Skew     time.Duration // Skew
}

// End is when the fault is lifted.
func (f Fault) End() time.Duration { return f.At + f.Duration }

// String describes the fault for logs.
func (f Fault) String() string {
	what := f.Kind.String()
	switch f.Kind {
	case Stop, Crash:
		what += fmt.Sprintf(" node-%d", f.Node)
	case Partition:
		what += fmt.Sprintf(" %s|%s", f.Zones[0], f.Zones[1])
	case Lossy:
		what += fmt.Sprintf(" loss=%.0f%% delay=%s", f.Loss*100, f.Delay)
	case Skew:
		what += fmt.Sprintf(" node-%d %+v", f.Node, f.Skew)
	case CacheDown:
		what += fmt.Sprintf(" cache-%d", f.Node)
	case CacheSlow:
		what += fmt.Sprintf(" cache-%d delay=%s", f.Node, f.Delay)
	}
	return fmt.Sprintf("%6.2fs +%.2fs %s", f.At.Seconds(), f.Duration.Seconds(), what)
}

// Shape is what a schedule is drawn for.
type Shape struct {
	Nodes    int           // node i is in zone Zones[i % len(Zones)]
	Zones    []string      // at least 2 for partitions
	Length   time.Duration // every fault ends by then
	MaxDown  int           // most nodes stopped or crashed at once
	MaxSkew  time.Duration // largest clock skew, either way
	SlowFor  time.Duration // shortest OriginSlow fault (longer than the slow delay)
	MinGap   time.Duration // between fault starts, at least
	MaxGap   time.Duration // and at most
	MinFault time.Duration // shortest fault (other than OriginSlow)
	MaxFault time.Duration // longest fault
	// CacheNodes is how many cache nodes the nodes read through; 0: none,
	// and no cache-node faults are drawn.
	CacheNodes int
	// CacheSlowDelay is the delay of a CacheSlow fault.
	CacheSlowDelay time.Duration
	// Outage, when positive, adds one Outage fault this long, starting at
	// a quarter of Length (which must hold it); the random origin faults
	// that would overlap it are left out. The random draw is the same as
	// without it, so a seed replays the other faults.
	Outage time.Duration
}

// NewSchedule draws a random schedule of faults for shape from seed: a new
// fault every MinGap to MaxGap, of a random kind, skipped when it would
// overlap a fault that excludes it (one origin fault, one partition and
// one lossy period at a time; at most MaxDown nodes down; one fault per
// node). The same seed and shape give the same schedule.
func NewSchedule(seed uint64, sh Shape) []Fault {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []Fault
	between := func(a, b time.Duration) time.Duration {
		if b <= a {
			return a
		}
		return a + time.Duration(rng.Int64N(int64(b-a)))
	}
	overlaps := func(f, g Fault) bool { return f.At < g.End() && g.At < f.End() }
	for at := between(sh.MinGap, sh.MaxGap); at < sh.Length; at += between(sh.MinGap, sh.MaxGap) {
		kinds := numNodeKinds
		if sh.CacheNodes > 0 {
			kinds = numKinds
		}
		f := Fault{Kind: FaultKind(rng.IntN(int(kinds))), At: at, Duration: between(sh.MinFault, sh.MaxFault)}
		switch f.Kind {
		case Stop, Crash, Skew:
			f.Node = rng.IntN(sh.Nodes)
		case Partition:
			i := rng.IntN(len(sh.Zones))
			j := (i + 1 + rng.IntN(len(sh.Zones)-1)) % len(sh.Zones)
			f.Zones = [2]string{sh.Zones[i], sh.Zones[j]}
		case Lossy:
			f.Loss = 0.1 + 0.4*rng.Float64()
			f.Delay = between(5*time.Millisecond, 60*time.Millisecond)
		case OriginSlow:
			f.Duration = between(sh.SlowFor, sh.SlowFor+sh.MaxFault/2)
		case CacheDown:
			f.Node = rng.IntN(sh.CacheNodes)
		case CacheSlow:
			f.Node = rng.IntN(sh.CacheNodes)
			f.Delay = sh.CacheSlowDelay
		}
		if f.Kind == Skew {
			f.Skew = between(sh.MaxSkew/4, sh.MaxSkew)
			if rng.IntN(2) == 0 {
				f.Skew = -f.Skew
			}
		}
		if f.End() > sh.Length {
			f.Duration = sh.Length - f.At
		}
		down := 0
		ok := true
		for _, g := range out {
			if !overlaps(f, g) {
				continue
			}
			switch {
			case isOrigin(f.Kind) && isOrigin(g.Kind),
				f.Kind == Partition && g.Kind == Partition,
				f.Kind == Lossy && g.Kind == Lossy,
				isNode(f.Kind) && isNode(g.Kind) && f.Node == g.Node,
				isCache(f.Kind) && isCache(g.Kind) && f.Node == g.Node:
				ok = false
			}
			if isDown(g.Kind) {
				down++
			}
		}
		if !ok || isDown(f.Kind) && down >= sh.MaxDown {
			continue
		}
		out = append(out, f)
	}
	if sh.CacheNodes > 0 {
		out = ensureCacheFaults(out, sh)
	}
	if sh.Outage > 0 {
		out = addOutage(out, sh)
	}
	return out
}

// addOutage places sh's Outage at a quarter of the run, leaving out the
// origin faults that overlap it.
func addOutage(out []Fault, sh Shape) []Fault {
	o := Fault{Kind: Outage, At: sh.Length / 4, Duration: sh.Outage}
	kept := out[:0]
	for _, f := range out {
		if isOrigin(f.Kind) && f.At < o.End() && o.At < f.End() {
			continue
		}
		kept = append(kept, f)
	}
	kept = append(kept, o)
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].At < kept[j].At })
	return kept
}

// ensureCacheFaults adds a CacheDown and a CacheSlow fault, at fixed points
// of the run on a cache node free then, when the random draw left either
// out, so that every cache-tier run has both.
func ensureCacheFaults(out []Fault, sh Shape) []Fault {
	for i, k := range []FaultKind{CacheDown, CacheSlow} {
		has := false
		for _, f := range out {
			has = has || f.Kind == k
		}
		if has {
			continue
		}
		f := Fault{Kind: k, Duration: min(sh.MinFault, sh.Length/5)}
		if k == CacheSlow {
			f.Delay = sh.CacheSlowDelay
		}
	place:
		for step := range 8 { // the first free slot from 1/5 (or 3/5) of the run on
			f.At = (sh.Length*time.Duration(1+2*i)/5 + sh.Length*time.Duration(step)/10) % (sh.Length - f.Duration)
			for node := range sh.CacheNodes {
				f.Node = node
				free := true
				for _, g := range out {
					if isCache(g.Kind) && g.Node == node && f.At < g.End() && g.At < f.End() {
						free = false
					}
				}
				if free {
					out = append(out, f)
					break place
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

func isOrigin(k FaultKind) bool {
	return k == OriginDown || k == OriginSlow || k == OriginCorrupt || k == Outage
}
func isDown(k FaultKind) bool  { return k == Stop || k == Crash }
func isNode(k FaultKind) bool  { return k == Stop || k == Crash || k == Skew }
func isCache(k FaultKind) bool { return k == CacheDown || k == CacheSlow }

// Table formats a summary of a run over the origin named originName as a
// Markdown table: the faults injected by kind, the operations, the reads
// checked, the convergence time against its bound, and the violations by
// kind.
func Table(seed uint64, originName string, faults []Fault, ops map[string]int, s Summary, convergence time.Duration, bound time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run, seed %d, origin %s\n\n", seed, originName)
	fmt.Fprintf(&b, "| what | count |\n|---|---:|\n")
	byKind := make(map[FaultKind]int)
	for _, f := range faults {
		byKind[f.Kind]++
	}
	for k := FaultKind(0); k < numKinds; k++ {
		fmt.Fprintf(&b, "| fault: %s | %d |\n", k, byKind[k])
	}
	fmt.Fprintf(&b, "| faults injected | %d |\n", len(faults))
	names := make([]string, 0, len(ops))
	for k := range ops {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "| %s | %d |\n", k, ops[k])
	}
	fmt.Fprintf(&b, "| reads checked | %d |\n", s.Reads)
	fmt.Fprintf(&b, "| reads served (value or not-found) | %d |\n", s.Served)
	fmt.Fprintf(&b, "| of which stale | %d |\n", s.StaleServed)
	fmt.Fprintf(&b, "| reads of held keys (all must be served) | %d |\n", s.HeldReads)
	fmt.Fprintf(&b, "| reads failed (keys not held) | %d |\n", s.Failed-s.Refused-s.ByKind[KindUnavailable])
	fmt.Fprintf(&b, "| reads refused by a fail-closed policy | %d |\n", s.Refused)
	fmt.Fprintf(&b, "| reads that had to be refused (past D in an outage) | %d |\n", s.MustRefuse)
	if s.PastRevocation > 0 || s.ByKind[KindRevoked] > 0 {
		fmt.Fprintf(&b, "| reads served past the revocation bound of a tombstone of their key | %d |\n", s.PastRevocation)
	}
	fmt.Fprintf(&b, "| writes (distinct keys) | %d (%d) |\n", s.Writes, s.Keys)
	fmt.Fprintf(&b, "| convergence after last heal (bound) | %s (%s) |\n", convergence.Round(time.Millisecond), bound)
	for _, k := range []string{KindMonotonic, KindResurrected, KindUnavailable, KindUnknown, KindConvergence, KindSettled, KindFailClosed, KindRevoked} {
		fmt.Fprintf(&b, "| violations: %s | %d |\n", k, s.ByKind[k])
	}
	fmt.Fprintf(&b, "| **violations** | **%d** |\n", s.Violations)
	return b.String()
}
