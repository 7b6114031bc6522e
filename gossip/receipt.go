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
		b.WriteByte('\n')
	}
	return b.String()
}

// ErrBadShare is returned for a share outside (0, 1].
var ErrBadShare = errors.New("gossip: receipt share must be in (0, 1]")

// Receipt waits until at least share (0 < share <= 1; 0 means 1) of the
// members of every region have applied version v of ns/key, or ctx ends,
// and returns what it knows then. A member counts as applied when it
// acknowledged a push or relay of that version or a newer one (relays
// forward their region's acknowledgements to the node that pushed to
// them), or when its report shows a log cursor at or past v. Members
// counted: those alive and those failed but not yet forgotten
// (ReconnectTimeout), except observers (Config.Observer) and members that
// left gracefully; this node counts itself, unless it is an observer, as
// applied once it holds v. A member is never counted as applied without
// one of these proofs.
//
// Acknowledgements reach only the node that published the version (Publish
// on this node, shortly before), so call Receipt on that node; on another
// node only the slower cursor reports count. When ctx ends first, Receipt
// returns the receipt (Met false) and ctx.Err().
func (n *Node) Receipt(ctx context.Context, ns, key string, v record.Version, share float64) (Receipt, error) {
	if share == 0 {
		share = 1
	}
	if !(share > 0 && share <= 1) {
		return Receipt{}, ErrBadShare
	}
	start := time.Now()
	id := recentID(ns, key)
	n.reports.trackKey(id)
	for {
		r, wake := n.receipt(id, ns, key, v, share)
		r.Waited = time.Since(start)
		if r.Met {
			return r, nil
		}
		select {
		case <-ctx.Done():
			r.Waited = time.Since(start) // the whole wait, not the last look
			return r, ctx.Err()
		case <-wake:
		case <-n.stop:
			r.Waited = time.Since(start)
			return r, errors.New("gossip: node closed")
		}
	}
}

// receipt evaluates a receipt now, and returns the channel closed on news.
func (n *Node) receipt(id, ns, key string, v record.Version, share float64) (Receipt, <-chan struct{}) {
	selfHas := n.seen.version(id) >= v || n.LogCursor() >= v
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
		if selfHas {
			g.Applied++
		} else {
			g.Pending = append(g.Pending, r.self)
		}
	}
	for name, m := range r.members {
		if name == r.self || m.state == StateLeft || m.report.Observer {
			continue
		}
		g := region(m.report.Region)
		g.Total++
		has := m.valid && m.report.Cursor >= v
		if t != nil && t.acked[name] >= v {
			has = true
		}
		switch {
		case has:
			g.Applied++
		case m.state == StateDead:
			g.Pending = append(g.Pending, name)
			g.Down = append(g.Down, name)
		default:
			g.Pending = append(g.Pending, name)
		}
	}
	out := Receipt{Namespace: ns, Key: key, Version: v, Share: share, Met: true}
	for _, g := range byRegion {
		need := int(math.Ceil(share*float64(g.Total) - 1e-9))
		g.Met = g.Applied >= need
		out.Met = out.Met && g.Met
		slices.Sort(g.Down)
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
		Cursor: own.Cursor, Applied: sortedNS(own.Applied), ReportedAt: v.Now,
	})
	for name, m := range r.members {
		if name == r.self {
			continue
		}
		v.Members = append(v.Members, MemberReport{
			Name: name, Region: m.report.Region, State: m.state, Observer: m.report.Observer,
			Cursor: m.report.Cursor, Applied: sortedNS(m.report.Applied),
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
		n.reports.forget(now, n.cfg.ReconnectTimeout)
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
