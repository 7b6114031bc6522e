package gossip

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dataplane/dataplane/record"
)

// Receipt says which members have applied one version of one key: per
// region, how many of its members have, and the names of those that have
// not (yet).
type Receipt struct {
	Namespace string         `json:"namespace"`
	Key       string         `json:"key"`
	Version   record.Version `json:"-"`
	// Share is the fraction of each region's members that had to apply the
	// version for the receipt to be met.
	Share float64 `json:"share"`
	// Met reports that every region reached Share.
	Met bool `json:"met"`
	// Waited is how long Receipt waited: until the receipt was met, or
	// until its context ended or the node closed.
	Waited time.Duration `json:"-"`
	// Regions lists every region with a member counted, sorted by name.
	Regions []RegionReceipt `json:"regions"`
}

// RegionReceipt is one region's part of a Receipt.
type RegionReceipt struct {
	Region  string `json:"region"`
	Applied int    `json:"applied"`
	Total   int    `json:"total"`
	Met     bool   `json:"met"`
	// Pending names the members that have not reported the version: alive
	// ones first, then those that failed (Down) and may be partitioned off.
	Pending []string `json:"pending,omitempty"`
	// Down names the Pending members memberlist declared failed.
	Down []string `json:"down,omitempty"`
	// Refused names the members that refused the version, with their
	// reason (not counted as applied, not Pending), sorted by node.
	Refused []Refusal `json:"refused,omitempty"`
}

// PendingRegions returns the regions that did not reach the share.
func (r Receipt) PendingRegions() []string {
	var out []string
	for _, g := range r.Regions {
		if !g.Met {
			out = append(out, g.Region)
		}
	}
	return out
}

// String summarises the receipt on one line per region.
func (r Receipt) String() string {
	var b strings.Builder
	state := "met"
	if !r.Met {
		state = "NOT met"
	}
	fmt.Fprintf(&b, "receipt %s/%s version %s: %s (share %.2f, waited %s)\n", r.Namespace, r.Key, r.Version, state, r.Share, r.Waited.Round(time.Millisecond))
	for _, g := range r.Regions {
		fmt.Fprintf(&b, "  %-16s %d/%d applied", g.Region, g.Applied, g.Total)
		if len(g.Pending) > 0 {
			fmt.Fprintf(&b, "; pending: %s", strings.Join(g.Pending, ", "))
		}
		if len(g.Down) > 0 {
			fmt.Fprintf(&b, " (down: %s)", strings.Join(g.Down, ", "))
		}
		if len(g.Refused) > 0 {
			parts := make([]string, len(g.Refused))
			for i, f := range g.Refused {
				parts[i] = f.Node + " (" + f.Reason + ")"
			}
			fmt.Fprintf(&b, "; REFUSED by: %s", strings.Join(parts, ", "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ErrBadShare is returned for a share outside (0, 1], or one that needs
// fewer than one member (share × members < 1).
var ErrBadShare = errors.New("gossip: receipt share must be in (0, 1] and need at least one member")

// ErrRefused is returned by Receipt when members refused the version (see
// RegionReceipt.Refused) so that the share can no longer be reached.
var ErrRefused = errors.New("gossip: version refused by members")

// Receipt waits until at least share (0 < share <= 1) of the members of
// every region have applied version v of ns/key, or ctx ends, and returns
// what it knows then. A member counts as applied only when it said itself
// that it holds v or a newer version of the key: it acknowledged a push or
// relay of it (relays forward their region's acknowledgements to the node
// that pushed to them), or answered a query (sent to the members without
// an answer, first after a few push round trips and then at doubling
// intervals up to the report interval) saying it holds it. A log cursor
// past v proves nothing: a verifying member's cursor passes the changes it
// refused too. A member that refused v (unsigned, untrusted key, bad
// signature, ...) says so and is listed in its region's Refused with its
// reason; when refusals leave too few members for share, Receipt returns
// with an error wrapping ErrRefused once every live member answered, or
// two query delays after the share became unreachable.
//
// Members counted: those alive and those failed but not yet forgotten
// (ReconnectTimeout), except observers (Config.Observer) and members that
// left gracefully; this node counts itself, unless it is an observer, as
// applied once it holds v. A share that needs fewer than one member
// (share × members < 1), or outside (0, 1], is an error wrapping
// ErrBadShare; every region with members needs at least one.
//
// Acknowledgements of the push reach only the node that published the
// version (Publish on this node, shortly before), so call Receipt on that
// node; on another node only the slower queries count. When ctx ends
// first, Receipt returns the receipt (Met false) and ctx.Err().
func (n *Node) Receipt(ctx context.Context, ns, key string, v record.Version, share float64) (Receipt, error) {
	if !(share > 0 && share <= 1) {
		return Receipt{}, fmt.Errorf("%w: got %v", ErrBadShare, share)
	}
	start := time.Now()
	id := recentID(ns, key)
	n.reports.trackKey(id)
	every := n.firstQuery()
	qt := time.NewTimer(every)
	defer qt.Stop()
	var unreachable time.Time // when refusals first made share unreachable
	for first := true; ; first = false {
		r, wake := n.receipt(id, ns, key, v, share)
		r.Waited = time.Since(start)
		if first {
			if err := n.CheckShare(share); err != nil {
				return r, err
			}
		}
		if r.Met {
			return r, nil
		}
		if out := refusedOut(r); len(out) > 0 {
			// Wait a little for the other members' answers, so that the
			// receipt shows every refusal, unless nobody alive is left
			// to answer.
			if unreachable.IsZero() {
				unreachable = time.Now()
			}
			if !alivePending(r) || time.Since(unreachable) >= 2*n.firstQuery() {
				return r, fmt.Errorf("%w: regions %v can no longer reach share %v", ErrRefused, out, share)
			}
		}
		select {
		case <-ctx.Done():
			r.Waited = time.Since(start) // the whole wait, not the last look
			return r, ctx.Err()
		case <-wake:
		case <-qt.C:
			var ask []string
			for _, g := range r.Regions {
				for _, name := range g.Pending {
					if !slices.Contains(g.Down, name) && name != n.cfg.Name {
						ask = append(ask, name)
					}
				}
			}
			n.query(ask, ns, key, v)
			every = min(2*every, max(n.reportInterval(), n.firstQuery()))
			qt.Reset(every)
		case <-n.stop:
			r.Waited = time.Since(start)
			return r, errors.New("gossip: node closed")
		}
	}
}

// CheckShare returns an error wrapping ErrBadShare if Receipt would refuse
// share: outside (0, 1], or needing fewer than one of the members a
// receipt counts now. A publisher checks it before a write that will wait.
func (n *Node) CheckShare(share float64) error {
	if !(share > 0 && share <= 1) {
		return fmt.Errorf("%w: got %v", ErrBadShare, share)
	}
	total := n.reports.counted()
	if total == 0 {
		return fmt.Errorf("%w: no member to count yet (observers are not counted)", ErrBadShare)
	}
	if share*float64(total) < 1-1e-9 {
		return fmt.Errorf("%w: share %v of %d members needs fewer than one member", ErrBadShare, share, total)
	}
	return nil
}

// refusedOut returns the regions where refusals leave too few members to
// reach the receipt's share.
func refusedOut(r Receipt) []string {
	var out []string
	for _, g := range r.Regions {
		if len(g.Refused) > 0 && g.Total-len(g.Refused) < need(r.Share, g.Total) {
			out = append(out, g.Region)
		}
	}
	return out
}

// alivePending reports whether a member not known to be down has not
// answered yet.
func alivePending(r Receipt) bool {
	for _, g := range r.Regions {
		if len(g.Pending) > len(g.Down) {
			return true
		}
	}
	return false
}

// need is how many of total members share requires: at least one.
func need(share float64, total int) int {
	return max(1, int(math.Ceil(share*float64(total)-1e-9)))
}

// receipt evaluates a receipt now, and returns the channel closed on news.
func (n *Node) receipt(id, ns, key string, v record.Version, share float64) (Receipt, <-chan struct{}) {
	selfHas := n.held(ns, key) >= v
	r := n.reports
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tracks[id]
	byRegion := make(map[string]*RegionReceipt)
	region := func(name string) *RegionReceipt {
		g := byRegion[name]
		if g == nil {
			g = &RegionReceipt{Region: name}
			byRegion[name] = g
		}
		return g
	}
	if !r.observer {
		g := region(r.region)
		g.Total++
		switch why := r.refusedOwnLocked(ns, key, v); {
		case selfHas:
			g.Applied++
		case why != "":
			g.Refused = append(g.Refused, Refusal{Node: r.self, Reason: why})
		default:
			g.Pending = append(g.Pending, r.self)
		}
	}
	for name, m := range r.members {
		if name == r.self || m.state == StateLeft || m.report.Observer {
			continue
		}
		g := region(m.report.Region)
		g.Total++
		has := t != nil && t.acked[name] >= v
		why := ""
		if t != nil && t.refused[name].Version == v {
			why = t.refused[name].Reason
		}
		for _, e := range m.report.Refused {
			if why == "" && e.Namespace == ns && e.Key == key && e.Version == v {
				why = e.Reason
			}
		}
		switch {
		case has:
			g.Applied++
		case why != "":
			g.Refused = append(g.Refused, Refusal{Node: name, Reason: why})
		case m.state == StateDead:
			g.Pending = append(g.Pending, name)
			g.Down = append(g.Down, name)
		default:
			g.Pending = append(g.Pending, name)
		}
	}
	out := Receipt{Namespace: ns, Key: key, Version: v, Share: share, Met: true}
	for _, g := range byRegion {
		g.Met = g.Applied >= need(share, g.Total)
		out.Met = out.Met && g.Met
		slices.Sort(g.Down)
		slices.SortFunc(g.Refused, func(a, b Refusal) int { return strings.Compare(a.Node, b.Node) })
		slices.SortFunc(g.Pending, func(a, b string) int { // alive first
			da, db := slices.Contains(g.Down, a), slices.Contains(g.Down, b)
			if da != db {
				if da {
					return 1
				}
				return -1
			}
			return strings.Compare(a, b)
		})
		out.Regions = append(out.Regions, *g)
	}
	slices.SortFunc(out.Regions, func(a, b RegionReceipt) int { return strings.Compare(a.Region, b.Region) })
	return out, r.wake
}

// MemberReport is one member in the fleet view.
type MemberReport struct {
	Name     string `json:"name"`
	Region   string `json:"region"`
	State    string `json:"state"` // StateAlive, StateDead or StateLeft
	Observer bool   `json:"observer,omitempty"`
	Self     bool   `json:"self,omitempty"`
	// Cursor is the member's log cursor as last reported: every change at
	// or below it is applied there. A member reports a cursor only when it
	// covers a version it applied since its previous report, so an idle
	// member's cursor looks old.
	Cursor record.Version `json:"cursor"`
	// Applied is the highest version the member applied per namespace.
	Applied []NamespaceVersion `json:"applied"`
	// Refused are the last changes the member refused, newest first, with
	// the reason (see Refusal).
	Refused []RefusedChange `json:"refused,omitempty"`
	// ReportedAt is when this node last heard the member's report (zero if
	// never, e.g. a member of a version without reports).
	ReportedAt time.Time `json:"reported_at"`
	// StateSince is when the member entered State, as seen here.
	StateSince time.Time `json:"state_since"`
}

// ChangeTiming is a recent change this node applied, and how long it took
// to reach every live member (by their reports, so to within a report
// interval).
type ChangeTiming struct {
	Namespace string         `json:"namespace"`
	Key       string         `json:"key"`
	Version   record.Version `json:"version"`
	// Published is the version's time (the publisher's clock).
	Published time.Time `json:"published"`
	// AppliedHere is when this node applied it.
	AppliedHere time.Time `json:"applied_here"`
	// ReachedAll is when the last live member's report showed it; zero if
	// not yet.
	ReachedAll time.Time `json:"reached_all,omitzero"`
}

// FleetView is this node's view of the cluster's applied versions.
type FleetView struct {
	Self    string         `json:"self"`
	Region  string         `json:"region"`
	Now     time.Time      `json:"now"`
	Members []MemberReport `json:"members"`
	// Changes are the last changes applied here, oldest first.
	Changes []ChangeTiming `json:"changes"`
	// ReportUpdates counts the metadata updates this node sent.
	ReportUpdates int `json:"report_updates"`
}

// Fleet returns this node's view of every member's reported applied
// versions (its own current, the others' as last heard), sorted by region
// then name.
func (n *Node) Fleet() FleetView {
	own := n.reports.ownReport(n.LogCursor())
	r := n.reports
	r.mu.Lock()
	defer r.mu.Unlock()
	v := FleetView{Self: r.self, Region: r.region, Now: n.cfg.Now(), ReportUpdates: r.updates}
	v.Members = append(v.Members, MemberReport{
		Name: r.self, Region: r.region, State: StateAlive, Observer: r.observer, Self: true,
		Cursor: own.Cursor, Applied: sortedNS(own.Applied), Refused: own.Refused, ReportedAt: v.Now,
	})
	for name, m := range r.members {
		if name == r.self {
			continue
		}
		v.Members = append(v.Members, MemberReport{
			Name: name, Region: m.report.Region, State: m.state, Observer: m.report.Observer,
			Cursor: m.report.Cursor, Applied: sortedNS(m.report.Applied), Refused: slices.Clone(m.report.Refused),
			ReportedAt: m.reportedAt, StateSince: m.since,
		})
	}
	slices.SortFunc(v.Members, func(a, b MemberReport) int {
		if c := strings.Compare(a.Region, b.Region); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, c := range r.changes {
		v.Changes = append(v.Changes, ChangeTiming{
			Namespace: c.ns, Key: c.key, Version: c.v, Published: c.v.Time(),
			AppliedHere: c.applied, ReachedAll: c.reached,
		})
	}
	return v
}

func sortedNS(ns []NamespaceVersion) []NamespaceVersion {
	out := slices.Clone(ns)
	slices.SortFunc(out, func(a, b NamespaceVersion) int { return strings.Compare(a.Namespace, b.Namespace) })
	return out
}

// reportInterval is the shortest time between two metadata updates of this
// node for receipts; viewInterval, for the fleet view.
func (n *Node) reportInterval() time.Duration {
	d := n.cfg.ReportInterval
	if d <= 0 {
		d = defaultReportInterval
	}
	return max(d, time.Duration(n.numAlive.Load())*reportSpacing)
}

func (n *Node) viewInterval() time.Duration {
	d := n.cfg.ReportInterval
	if d <= 0 {
		d = defaultReportInterval
	}
	return max(10*d, time.Duration(n.numAlive.Load())*viewSpacing)
}

// reportLoop publishes this node's report in its metadata when one is due
// (see reporter.update), at most once per report interval.
func (n *Node) reportLoop() {
	defer n.wg.Done()
	for {
		d := n.reportInterval()
		t := time.NewTimer(d)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		now := n.cfg.Now()
		n.reports.forget(now, n.cfg.tune.ReconnectTimeout)
		view := n.cfg.ReportInterval >= 0 && n.reports.viewDue(now, n.viewInterval())
		if !n.reports.update(n.reports.ownReport(n.LogCursor()), view, now) {
			continue
		}
		// UpdateNode waits for the broadcast to go out; bound the wait.
		if err := n.ml.Load().UpdateNode(d); err != nil {
			n.logger.Debug("gossip report update", "err", err)
		}
	}
}
