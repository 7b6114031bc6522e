package dataplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// ErrUnavailable is returned (wrapped) by Get, Record and Cached for a
// namespace whose Policy fails closed, once the node has not been proven
// current for the policy's FailClosedAfter. A gateway answers it 503: an
// API key check that cannot be trusted is never an allow.
var ErrUnavailable = errors.New("dataplane: namespace not confirmed current recently: failing closed")

// DefaultFailClosedAfter is the FailClosedAfter of the default policy of
// the keys namespace.
const DefaultFailClosedAfter = 5 * time.Minute

// Policy is how a namespace is served when the node cannot confirm that it
// is current (gossip, the change log and the origin all silent).
//
// The zero Policy is serve-stale: the last good value is served for ever,
// marked Stale (DESIGN.md invariant 4). With FailClosedAfter > 0 the
// namespace fails closed: once the node's proof of being current for the
// namespace (see NamespaceStatus.Heard) is older than FailClosedAfter,
// every read of the namespace answers an error wrapping ErrUnavailable,
// whatever the node holds, until a new proof arrives.
type Policy struct {
	// FailClosedAfter is D: how old the node's proof of being current may
	// get before reads fail. Zero or negative: serve stale for ever.
	FailClosedAfter time.Duration
	// RefuseOutdated, with FailClosedAfter, also refuses (ErrUnavailable)
	// a value known to be outdated: a newer version was announced (by
	// gossip without its value, or by the log) and could not be read.
	// Without it such a value is served stale (DESIGN.md invariant 4)
	// until D passes. Off by default: records of the keys namespace are
	// small enough to travel inline in gossip, so the announcement and
	// the value usually arrive together. Implied for a namespace whose
	// checkpoints are enforced (see Config.RequireCheckpoints): there only
	// a checkpoint match proves the node current, and a match proves it
	// knows every version, not that it holds every value.
	RefuseOutdated bool
}

// FailsClosed reports whether p fails closed.
func (p Policy) FailsClosed() bool { return p.FailClosedAfter > 0 }

// String is "serve-stale" or "fail-closed after D".
func (p Policy) String() string {
	if !p.FailsClosed() {
		return "serve-stale"
	}
	if p.RefuseOutdated {
		return "fail-closed after " + p.FailClosedAfter.String() + ", refusing outdated values"
	}
	return "fail-closed after " + p.FailClosedAfter.String()
}

// DefaultStaleness returns the default policies: keys fails closed after
// DefaultFailClosedAfter; every other namespace (routes included) serves
// stale.
func DefaultStaleness() map[string]Policy {
	return map[string]Policy{"keys": {FailClosedAfter: DefaultFailClosedAfter}}
}

// ParseStaleness parses policies written "ns=D,ns=off": D (a Go duration,
// e.g. 5m) makes ns fail closed after D; "off", "stale" or "0" makes it
// serve stale. The result is merged over DefaultStaleness by Open, so
// "routes=1h" keeps keys failing closed after 5 minutes, and "keys=off"
// turns that off.
func ParseStaleness(s string) (map[string]Policy, error) {
	out := make(map[string]Policy)
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		ns, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("staleness policy %q: want namespace=duration or namespace=off", item)
		}
		if err := record.ValidateNamespace(ns); err != nil {
			return nil, fmt.Errorf("staleness policy %q: %w", item, err)
		}
		switch v {
		case "off", "stale", "serve-stale", "0":
			out[ns] = Policy{}
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("staleness policy %q: %q is neither a positive duration nor off", item, v)
		}
		out[ns] = Policy{FailClosedAfter: d}
	}
	return out, nil
}

// freshness tracks, per namespace, when the node was last proven current.
//
// What counts as "heard from" (the proof), and why:
//   - A successful read of the origin's change log, even one that returned
//     nothing: follow.CaughtUpper.CaughtUp says every change up to the
//     cursor it reached has been applied, and that cursor is the read's
//     wall time minus LogSettle. The node follows the log with or without
//     gossip, so this proof holds in TTL-only mode too. The proof is that cursor's time (not the read's), so
//     it covers every namespace exactly up to the point the log vouches for.
//   - A change applied from gossip (or the log) in the namespace: the
//     proof is the change's version time (the publisher's clock when it
//     took the version) less LogSettle, capped at now: changes may arrive
//     out of version order by up to LogSettle, so an older change still
//     on its way is not claimed. A change reaching the node shows a
//     path from a publisher works; gossip repair (digests) and the log
//     recover what that path lost. Using the version's time, not the
//     arrival time, means an old change replayed by an isolated peer
//     proves nothing new.
//   - In TTL-only mode, also a successful origin read in the namespace (a
//     value, not-modified or not-found): each key is read again from the
//     origin when its fresh window ends, so an origin that answers keeps
//     every key within its fresh window. With gossip, origin reads do not
//     count: the node relies on gossip and the log for what it did not
//     read, and a log it cannot read proves nothing.
//   - Gossip membership and heartbeats do not count: a node in an island
//     of peers all cut off from the publishers keeps hearing them, and
//     they know nothing new.
//   - A snapshot loaded at start from the origin or this node's own local
//     file counts as its version's time: it proves the node held
//     everything up to that version. A peer's snapshot does not: its
//     Version is the peer's unsigned claim, and the peer may have left a
//     revocation out.
//
// All of the above holds only where checkpoints are not enforced: a node
// without Config.Verifier, a namespace it does not hold whole, or one
// whose publisher has issued no checkpoint the node verified (see trust
// and Config.RequireCheckpoints). On a verifying node, for a namespace it
// holds whole and whose checkpoints it checks, the only proof is a match
// (DESIGN decision 11): the node's state hash at a verified checkpoint's
// version V equals the checkpoint's, proving the node current as of V's
// time (every change at or below V held, absence included). A snapshot
// whose proof verifies (unexpired) is such a match. No log read, applied
// change, origin read or snapshot without a proof counts there: a node fed
// other signed changes while a revocation is withheld from it fails closed
// at D, and so does one whose log reads merely end. Checkpoints reach the
// node with each log read (the follower reads the latest from the origin,
// in TTL-only mode too) and by gossip (offerCheckpoint).
type freshness struct {
	log    atomic.Int64 // proof from log reads, Unix ns; all namespaces
	spaces map[string]*nsFreshness
	now    func() time.Time
	settle time.Duration // follow.Config.Settle
	trust  *trust        // enforced namespaces prove freshness by matches only

	// closing lists the spaces whose Policy fails closed, for the read
	// path: a short slice scanned in order costs a hit less than a map
	// lookup (few namespaces fail closed: keys alone, by default).
	closing []*nsFreshness
	// nFailing counts the failing flags set (see setFailing): while it is
	// zero, as it is whenever the node is current, a read need not scan
	// closing.
	nFailing atomic.Int64
}

// nsFreshness is one tracked namespace; the map holding them is fixed at
// Open, so reads need no lock.
type nsFreshness struct {
	ns     string
	policy Policy
	// failing caches "the proof is older than D" for the read path (which
	// must not read the clock: time.Now costs more than a hit); set by
	// freshLoop every failingTick, cleared at once by a new proof.
	failing atomic.Bool
	change  atomic.Int64 // proof from applied changes and snapshots, Unix ns
	origin  atomic.Int64 // proof from origin reads (TTL-only mode), Unix ns
	refused prometheus.Counter
}

// newFreshness tracks cfg.Namespaces and every namespace with a policy,
// policies merged over DefaultStaleness.
func newFreshness(cfg Config, settle time.Duration) *freshness {
	policies := DefaultStaleness()
	for ns, p := range cfg.Staleness {
		policies[ns] = p
	}
	f := &freshness{spaces: make(map[string]*nsFreshness), now: time.Now, settle: settle}
	for _, ns := range cfg.Namespaces {
		f.spaces[ns] = &nsFreshness{ns: ns, policy: policies[ns]}
	}
	for ns, p := range policies {
		if f.spaces[ns] == nil {
			f.spaces[ns] = &nsFreshness{ns: ns, policy: p}
		}
	}
	for _, s := range f.spaces {
		if s.policy.FailsClosed() {
			f.closing = append(f.closing, s)
		}
	}
	return f
}

// raise moves a to t if t is later and not in the future, and reports
// whether it moved.
func (f *freshness) raise(a *atomic.Int64, t time.Time) bool {
	v := min(t.UnixNano(), f.now().UnixNano())
	for {
		cur := a.Load()
		if v <= cur {
			return false
		}
		if a.CompareAndSwap(cur, v) {
			return true
		}
	}
}

// failingTick is how often the failing flags are recomputed: a namespace
// fails closed at most this long after its D has passed.
const failingTick = 50 * time.Millisecond

// update recomputes the failing flag of s (of every space if s is nil).
func (f *freshness) update(s *nsFreshness) {
	if s != nil {
		if s.policy.FailsClosed() {
			f.setFailing(s, f.now().Sub(f.heard(s)) > s.policy.FailClosedAfter)
		}
		return
	}
	for _, s := range f.spaces {
		f.update(s)
	}
}

// setFailing sets the failing flag of s to v, keeping f.nFailing at least
// the number of flags set at every instant (raised before a flag is set,
// lowered after one is cleared): a read that finds it zero knows that no
// namespace fails closed now, without looking for its own.
func (f *freshness) setFailing(s *nsFreshness, v bool) {
	if v {
		f.nFailing.Add(1)
		if s.failing.Swap(true) {
			f.nFailing.Add(-1) // set already
		}
		return
	}
	if s.failing.Swap(false) {
		f.nFailing.Add(-1)
	}
}

// failingNow reports whether ns fails closed and is failing now.
func (f *freshness) failingNow(ns string) bool {
	for _, s := range f.closing {
		if s.ns == ns && s.failing.Load() {
			return true
		}
	}
	return false
}

// heardLog records a successful change-log read that reached cursor to.
func (f *freshness) heardLog(to record.Version) {
	if f.raise(&f.log, to.Time()) {
		f.update(nil)
	}
}

// heardSnapshot records a snapshot of ns at version v: it claims every
// change up to v.
func (f *freshness) heardSnapshot(ns string, v record.Version) {
	if s := f.spaces[ns]; s != nil && f.raise(&s.change, v.Time()) {
		f.update(s)
	}
}

// heardChange records a change of ns at version v, applied from gossip or
// the log. Changes may arrive out of version order by up to LogSettle
// (concurrent publishers), so the proof is v's time less settle: a change
// overtaken by this one is not claimed.
func (f *freshness) heardChange(ns string, v record.Version) {
	if s := f.spaces[ns]; s != nil && f.raise(&s.change, v.Time().Add(-f.settle)) && s.failing.Load() {
		f.update(s)
	}
}

// heardOrigin records a successful origin read in ns that started at t.
func (f *freshness) heardOrigin(ns string, t time.Time) {
	if s := f.spaces[ns]; s != nil && f.raise(&s.origin, t) && s.failing.Load() {
		f.update(s)
	}
}

// heard returns when ns was last proven current (zero time if never).
func (f *freshness) heard(s *nsFreshness) time.Time {
	var v int64
	if f.matchOnly(s.ns) {
		v = f.trust.spaces[s.ns].matchedAt.Load()
	} else {
		v = max(f.log.Load(), s.change.Load(), s.origin.Load())
	}
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v)
}

// matchOnly reports whether ns proves freshness by checkpoint matches
// only.
func (f *freshness) matchOnly(ns string) bool {
	return f.trust != nil && f.trust.enforced(ns)
}

// check returns an error wrapping ErrUnavailable if ns fails closed and its
// proof is older than its policy allows; count counts the refusal. A
// non-zero confirmed is the read key's own proof (TTL-only mode: when the
// origin last confirmed its value), taken if later than the namespace's.
func (f *freshness) check(ns string, count bool, confirmed time.Time) error {
	s := f.spaces[ns]
	if s == nil || !s.policy.FailsClosed() {
		return nil
	}
	h := f.heard(s)
	if confirmed.After(h) && !f.matchOnly(ns) {
		h = confirmed
	}
	age := f.now().Sub(h)
	if age <= s.policy.FailClosedAfter {
		return nil
	}
	if count && s.refused != nil {
		s.refused.Inc()
	}
	if h.IsZero() {
		return fmt.Errorf("%w: %s never confirmed current (%s)", ErrUnavailable, ns, s.policy)
	}
	return fmt.Errorf("%w: %s last confirmed current %s ago (%s)", ErrUnavailable, ns, age.Round(time.Millisecond), s.policy)
}

// loader wraps the origin for the cache: in TTL-only mode its successful
// reads are proofs (see freshness).
func (f *freshness) loader(o origin.Store, ttlOnly bool) cache.Loader {
	if !ttlOnly {
		return o
	}
	return cache.LoaderFunc(func(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
		start := f.now()
		rec, err := o.Get(ctx, ns, key, ifNewer)
		if err == nil || errors.Is(err, origin.ErrNotModified) || errors.Is(err, origin.ErrNotFound) {
			f.heardOrigin(ns, start)
		}
		return rec, err
	})
}

// freshLoop recomputes the failing flags every failingTick.
func (n *Node) freshLoop() {
	defer n.wg.Done()
	tick.Every(n.stop, failingTick, func() { n.fresh.update(nil) })
}

// register exposes dataplane_node_heard_age_seconds and
// dataplane_node_fail_closed_total per tracked namespace.
func (f *freshness) register(reg prometheus.Registerer) error {
	names := make([]string, 0, len(f.spaces))
	for ns := range f.spaces {
		names = append(names, ns)
	}
	slices.Sort(names)
	for _, ns := range names {
		s := f.spaces[ns]
		s.refused = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "fail_closed_total",
			Help:        "Reads refused with ErrUnavailable because the namespace fails closed and the node was not confirmed current recently.",
			ConstLabels: prometheus.Labels{"namespace": ns},
		})
		age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "heard_age_seconds",
			Help:        "Seconds since the node was last proven current for the namespace (change-log read, applied change, snapshot, or origin read in TTL-only mode; where the node enforces checkpoints, only the last checkpoint match); -1 if never.",
			ConstLabels: prometheus.Labels{"namespace": ns},
		}, func() float64 {
			h := f.heard(s)
			if h.IsZero() {
				return -1
			}
			return f.now().Sub(h).Seconds()
		})
		if reg == nil {
			continue
		}
		for _, c := range []prometheus.Collector{s.refused, age} {
			if err := reg.Register(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// Get returns the value of ns/key from memory, reading the origin only on a
// miss or past the fresh window. A deleted or never-written key returns an
// error wrapping ErrNotFound. When the origin is unreachable, the last known
// value is returned with Stale set, unless ns's Policy fails closed and the
// node has not been proven current for it recently: then the error wraps
// ErrUnavailable (see Config.Staleness).
func (n *Node) Get(ctx context.Context, ns, key string) (v Value, err error) {
	if h, ok := n.freshHit(ns, key); ok {
		if err := h.Err(); err != nil {
			return Value{}, err
		}
		// Written into the result in place: a hit copies nothing twice.
		v.Data, v.Version, v.Age = h.Value(), h.Version(), h.Age()
		return v, nil
	}
	e, err := n.read(ctx, ns, key)
	if err != nil {
		return Value{}, err
	}
	return Value{Data: e.Record.Value, Version: e.Record.Version, Age: e.Age, Stale: e.Stale}, nil
}

// Record returns the record of ns/key as Get does, for callers (like the
// sentinel gateway) that work in records.
func (n *Node) Record(ctx context.Context, ns, key string) (record.Record, error) {
	if h, ok := n.freshHit(ns, key); ok {
		if err := h.Err(); err != nil {
			return record.Record{}, err
		}
		return h.Record(), nil
	}
	e, err := n.read(ctx, ns, key)
	if err != nil {
		return record.Record{}, err
	}
	return e.Record, nil
}

// freshHit answers a read of ns/key held fresh, unless ns fails closed and
// is failing now (the read must then go the whole way, Node.read, to apply
// the policy); ok false means the read must go the whole way. A fresh
// value is never refused otherwise (Policy.RefuseOutdated concerns stale
// values), so the read needs of the node only this check, and is answered
// by cache.GetFresh, which copies nothing; every other read goes the whole
// way, with the same answers and counts: the lane only skips work whose
// outcome it knows.
func (n *Node) freshHit(ns, key string) (cache.Hit, bool) {
	if n.fresh.nFailing.Load() != 0 && n.fresh.failingNow(ns) {
		return cache.Hit{}, false
	}
	return n.cache.GetFresh(ns, key)
}

// Cached answers ns/key from memory when the node can, as
// cache.Cache.GetCached does, applying the namespace's Policy: a namespace
// failing closed answers ErrUnavailable from memory (ok true) when the node
// follows gossip, and ok false in TTL-only mode, so that the caller's Get
// reads the origin (whose answer is the new proof).
func (n *Node) Cached(ns, key string) (record.Record, error, bool) {
	if h, ok := n.freshHit(ns, key); ok {
		if err := h.Err(); err != nil {
			return record.Record{}, err, true
		}
		return h.Record(), nil, true
	}
	e, err, ok := n.cache.GetCached(ns, key)
	if !ok {
		return record.Record{}, err, false
	}
	if ferr := n.failClosed(ns, e, err, n.gossip != nil); ferr != nil {
		if n.gossip == nil {
			return record.Record{}, nil, false
		}
		return record.Record{}, ferr, true
	}
	if err != nil {
		return record.Record{}, err, true
	}
	return e.Record, nil, true
}

// failClosed applies ns's Policy to a read that returned e (or err): nil,
// or an error wrapping ErrUnavailable. In TTL-only mode the entry's own
// confirmation by the origin counts too (see freshness).
func (n *Node) failClosed(ns string, e cache.Entry, err error, count bool) error {
	s := n.fresh.spaces[ns]
	if s == nil || !s.policy.FailsClosed() {
		return nil
	}
	if e.Stale && err == nil && (s.policy.RefuseOutdated || n.trust.enforced(ns)) {
		// A value known to be outdated (a newer version announced by
		// gossip or the log, whose read failed) may be the one a
		// revocation replaced: never serve it from a failing-closed
		// namespace, however recent the proof. Implied once checkpoints
		// are enforced: a match proves the node knows every version, not
		// that it holds every value, and matches keep coming, so no D
		// would ever end the serving of an old value.
		if k, ok := n.cache.Known(ns, e.Record.Key); ok && k.Version > e.Record.Version {
			if count {
				s.refused.Inc()
			}
			return fmt.Errorf("%w: %s/%s: version %s is known but could not be read; not serving %s", ErrUnavailable, ns, e.Record.Key, k.Version, e.Record.Version)
		}
	}
	if !s.failing.Load() {
		return nil
	}
	var confirmed time.Time
	if n.gossip == nil && err == nil && e.Record.Version > 0 {
		confirmed = n.fresh.now().Add(-e.Age)
	}
	return n.fresh.check(ns, count, confirmed)
}

// read is Get's cache read under ns's Policy. In TTL-only mode a read that
// would fail closed is made again with the origin first (a value past its
// fresh window is not taken from memory): its answer is the proof.
func (n *Node) read(ctx context.Context, ns, key string) (cache.Entry, error) {
	e, err := n.cache.Get(ctx, ns, key)
	ferr := n.failClosed(ns, e, err, n.gossip != nil)
	if ferr != nil && n.gossip == nil {
		e, err = n.cache.GetRevalidated(ctx, ns, key)
		ferr = n.failClosed(ns, e, err, true)
	}
	if ferr != nil {
		return cache.Entry{}, ferr
	}
	return e, err
}

// Policy returns the staleness policy of ns.
func (n *Node) Policy(ns string) Policy {
	if s := n.fresh.spaces[ns]; s != nil {
		return s.policy
	}
	return Policy{}
}

// heardStatus fills the staleness fields of st for ns.
func (n *Node) heardStatus(st *NamespaceStatus) {
	s := n.fresh.spaces[st.Namespace]
	if s == nil {
		return
	}
	st.Policy = s.policy.String()
	if h := n.fresh.heard(s); !h.IsZero() {
		st.Heard = h
		st.HeardAgo = n.fresh.now().Sub(h).Round(time.Millisecond).String()
	}
	st.FailingClosed = n.fresh.check(st.Namespace, false, time.Time{}) != nil
}
