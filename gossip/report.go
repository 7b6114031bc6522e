package gossip

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/record"
)

// Applied-version reports: how a node learns which versions the others have
// applied, for fleet receipts (Receipt) and the fleet view (Fleet).
//
// Two kinds of evidence, both of which imply "this member will not serve a
// version of the key older than v":
//
//   - Acknowledgements (fast, exact per key). A member acknowledges a push or
//     relay only after the change went through its apply path (applied, or
//     it already held that version or a newer one); a change it refuses (a
//     version from the future) is not acknowledged. A relay forwards each
//     acknowledgement it gets from its share of its region to the node that
//     pushed the change to it, so the publishing node hears from every
//     member the eager push reached, about one round trip to the farthest
//     region after the push. No new message kind: a forwarded ack is the
//     ack itself. Acks are as trustworthy as the gossip encryption that
//     keeps strangers out: an insider holding the gossip key could forge
//     one (as it could any ack); record signatures cover records, not acks.
//   - High-water reports (slow, for every key). Each member carries in its
//     memberlist node metadata its log cursor (every change at or below it
//     has been handed to its applier, as proved by a complete read of the
//     change log) and, per namespace, the highest version it applied. A
//     cursor at or above v implies the key's version v (or a newer one) was
//     applied; the per-namespace highs do not (other keys of the namespace
//     may have gaps) and feed only the fleet view. A member the push missed
//     (gossip repair, the log) is counted once its cursor passes v: within
//     LogInterval + LogSettle plus a report interval.
//
// Why node metadata for the high-water marks: memberlist already spreads it
// to every member (and in each push/pull) with its own retransmission, and
// every member needs every other's report for the fleet view, so no new
// message or timer is needed. But every update reaches every member (about
// RetransmitMult × log10(N+1) piggybacked copies each), so a node updates
// only when it must, never once per change:
//
//   - for receipts, when its cursor newly covers a version it applied by a
//     path nobody acknowledged (gossip repair, a digest, the log): at most
//     once per ReportInterval, or 100 ms per live member if that is longer
//     (at most 10 such updates a second cluster-wide, whatever its size);
//     changes delivered by an acknowledged push cost no update at all;
//   - for the fleet view, when anything changed, at most once per view
//     interval: 10 × ReportInterval, or 2 s per live member if that is
//     longer (at most one every 2 s cluster-wide). "Changed" includes the
//     cursor newly covering a version applied by an acknowledged push: an
//     ack can be lost after the sender's last retry, and this report then
//     completes the receipt one view interval later instead of never.
//
// An idle fleet sends nothing. Each entry carries, besides the namespace's
// newest applied version, how long after that version's time the member
// applied it, so the fleet view times a change to its last member exactly
// even though the report arrives later. BENCHMARKS.md ("Fleet receipts")
// measures the bytes.

// Node metadata, format 2 (format 1 was the region alone):
//
//	0x02 | flags (bit 0: observer) | uvarint len + region |
//	log cursor (8 bytes, big endian) | uvarint count |
//	count × (uvarint len + namespace, highest applied version (8 bytes),
//	         uvarint milliseconds from that version's time to its apply) |
//	[if flags bit 1: uvarint count | count × (uvarint len + namespace,
//	         uvarint len + key, version (8 bytes), reason code (1 byte))]
//
// At most memberlist.MetaMaxSize (512) bytes: the namespaces with the
// newest versions come first and those that do not fit are left out; the
// refused changes (issue 23: the last maxReportRefusals this node refused,
// newest first) are left out before any namespace. A node from before
// issue 23 does not decode a report with refusals (flag bit 1): it sees the
// member's region only until the refusals age out of its report.
const (
	metaV2            byte = 2
	reportObserver    byte = 1 << 0
	reportRefusals    byte = 1 << 1
	reportFlags            = reportObserver | reportRefusals
	maxReportEntries       = 64 // namespaces a report (and a node) tracks
	maxReportRefusals      = 3  // refused changes a report carries
	maxAfterMS             = 1<<32 - 1
)

// NamespaceVersion is the highest version a member applied in a namespace,
// and how long after the version's time (the publisher's clock) it did, to
// the millisecond (0 if the member's clock was behind).
type NamespaceVersion struct {
	Namespace string         `json:"namespace"`
	Version   record.Version `json:"version"`
	After     time.Duration  `json:"after_ns"`
}

// Report is what a member tells the cluster about itself in its metadata.
type Report struct {
	Region   string
	Observer bool           // not counted in receipts (a publisher's node)
	Cursor   record.Version // every change at or below it is applied
	Applied  []NamespaceVersion
	// Refused are the last changes the member refused, newest first.
	Refused []RefusedChange
}

// encodeReport encodes r in at most limit bytes, dropping the namespaces
// with the oldest versions first; nil if even the header does not fit.
func encodeReport(r Report, limit int) []byte {
	b := make([]byte, 0, 64)
	b = append(b, metaV2, 0)
	if r.Observer {
		b[1] |= reportObserver
	}
	b = appendString(b, r.Region)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Cursor))
	ns := slices.Clone(r.Applied)
	slices.SortFunc(ns, func(a, b NamespaceVersion) int {
		if a.Version != b.Version {
			if a.Version > b.Version {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Namespace, b.Namespace)
	})
	ns = ns[:min(len(ns), maxReportEntries)]
	refused := r.Refused[:min(len(r.Refused), maxReportRefusals)]
	for {
		size := len(b) + binary.MaxVarintLen64
		for _, e := range ns {
			size += 1 + len(e.Namespace) + 8 + binary.MaxVarintLen32
		}
		if len(refused) > 0 {
			size++
		}
		for _, e := range refused {
			size += 1 + len(e.Namespace) + 2 + len(e.Key) + 8 + 1
		}
		if size <= limit || len(ns) == 0 && len(refused) == 0 {
			break
		}
		if len(refused) > 0 {
			refused = refused[:len(refused)-1]
		} else {
			ns = ns[:len(ns)-1]
		}
	}
	if len(refused) > 0 {
		b[1] |= reportRefusals
	}
	b = binary.AppendUvarint(b, uint64(len(ns)))
	for _, e := range ns {
		b = appendString(b, e.Namespace)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Version))
		b = binary.AppendUvarint(b, uint64(min(max(e.After, 0)/time.Millisecond, maxAfterMS)))
	}
	if len(refused) > 0 {
		b = binary.AppendUvarint(b, uint64(len(refused)))
		for _, e := range refused {
			b = appendString(b, e.Namespace)
			b = appendString(b, e.Key)
			b = binary.BigEndian.AppendUint64(b, uint64(e.Version))
			b = append(b, reasonCode(e.Reason))
		}
	}
	if len(b) > limit {
		return nil
	}
	return b
}

// decodeReport decodes node metadata of format 2; it never panics and
// rejects anything malformed with an error wrapping record.ErrCorrupt.
func decodeReport(b []byte) (Report, error) {
	var r Report
	if len(b) < 2 || b[0] != metaV2 {
		return r, fmt.Errorf("%w: not a format 2 report", record.ErrCorrupt)
	}
	if b[1]&^reportFlags != 0 {
		return r, fmt.Errorf("%w: report flags %#x", record.ErrCorrupt, b[1])
	}
	r.Observer = b[1]&reportObserver != 0
	region, rest, err := readString(b[2:], 64, "region")
	if err != nil {
		return r, err
	}
	if err := validateRegion(region); err != nil {
		return r, fmt.Errorf("%w: %v", record.ErrCorrupt, err)
	}
	r.Region = region
	if len(rest) < 8 {
		return r, fmt.Errorf("%w: short report", record.ErrCorrupt)
	}
	r.Cursor = record.Version(binary.BigEndian.Uint64(rest))
	rest = rest[8:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > maxReportEntries {
		return r, fmt.Errorf("%w: bad namespace count", record.ErrCorrupt)
	}
	rest = rest[k:]
	for i := uint64(0); i < n; i++ {
		var e NamespaceVersion
		if e.Namespace, rest, err = readString(rest, record.MaxNamespaceLen, "namespace"); err != nil {
			return r, err
		}
		if len(rest) < 8 {
			return r, fmt.Errorf("%w: short report", record.ErrCorrupt)
		}
		e.Version = record.Version(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
		ms, k := binary.Uvarint(rest)
		if k <= 0 || ms > maxAfterMS {
			return r, fmt.Errorf("%w: bad apply delay", record.ErrCorrupt)
		}
		e.After = time.Duration(ms) * time.Millisecond
		rest = rest[k:]
		r.Applied = append(r.Applied, e)
	}
	if b[1]&reportRefusals != 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n == 0 || n > maxReportRefusals {
			return r, fmt.Errorf("%w: bad refusal count", record.ErrCorrupt)
		}
		rest = rest[k:]
		for i := uint64(0); i < n; i++ {
			var e RefusedChange
			if e.Namespace, rest, err = readString(rest, record.MaxNamespaceLen, "namespace"); err != nil {
				return r, err
			}
			if e.Key, rest, err = readString(rest, record.MaxKeyLen, "key"); err != nil {
				return r, err
			}
			if len(rest) < 9 || rest[8] == 0 || int(rest[8]) >= len(refusalReasons) {
				return r, fmt.Errorf("%w: short or bad refusal", record.ErrCorrupt)
			}
			e.Version = record.Version(binary.BigEndian.Uint64(rest))
			e.Reason = refusalReasons[rest[8]]
			rest = rest[9:]
			r.Refused = append(r.Refused, e)
		}
	}
	if len(rest) != 0 {
		return r, fmt.Errorf("%w: %d trailing bytes", record.ErrCorrupt, len(rest))
	}
	return r, nil
}

// metaRegion reads the region of node metadata of either format without
// decoding the rest; "" if malformed.
func metaRegion(b []byte) string {
	if len(b) < 2 || b[0] != metaV2 || b[1]&^reportFlags != 0 {
		return ""
	}
	region, _, err := readString(b[2:], 64, "region")
	if err != nil || validateRegion(region) != nil {
		return ""
	}
	return region
}

// Member states in the fleet view.
const (
	StateAlive = "alive" // alive or suspect
	StateDead  = "dead"  // failed; still counted (as not applied) in receipts
	StateLeft  = "left"  // left gracefully; not counted
)

// memberState is what a node knows of one member.
type memberState struct {
	state      string
	report     Report
	valid      bool      // report decoded
	reportedAt time.Time // when its last report arrived
	since      time.Time // when state last changed
}

// changeTiming is a change this node applied, timed until every member's
// report showed its namespace at or past its version.
type changeTiming struct {
	ns, key string
	v       record.Version
	applied time.Time // here
	reached time.Time // zero until every live member reported it
}

// track is a key this node published (or was asked a receipt for): the
// newest version each member acknowledged (or said it holds, answering a
// query), and the version each member said it refused, and why.
type track struct {
	acked   map[string]record.Version
	refused map[string]RefusedChange
}

// maxOwnRefusals bounds the refusals a node remembers, to answer queries.
const maxOwnRefusals = 64

// reporter holds the reports: this node's own and those it heard.
type reporter struct {
	self     string
	region   string
	observer bool

	// mu guards everything below.
	mu      sync.Mutex
	applied map[string]NamespaceVersion // ns -> highest version applied here
	// cover is the highest version applied here by a path nobody
	// acknowledged; a report is due once the cursor covers it.
	cover record.Version
	// ackedCover is the highest version applied here by an acknowledged
	// path. The ack may have been lost (and the sender's retries spent),
	// so the next view update after the cursor covers it carries that
	// cursor: a receipt never waits for ever on one lost ack.
	ackedCover record.Version
	members    map[string]*memberState // by name, this node included
	changes    []changeTiming          // the last maxTimings, oldest first
	tracks     map[string]*track       // by recentID
	order      []string                // tracks' ids, oldest first
	wake       chan struct{}           // closed and replaced on news
	meta       []byte                  // this node's current metadata
	sent       Report                  // what meta says
	sentAt     time.Time
	updates    int // metadata updates sent
	// refused are the last changes this node refused, newest first;
	// refusedNew says one is not in the metadata yet.
	refused    []RefusedChange
	refusedNew bool
}

const (
	maxTimings = 16
	maxTracks  = 4096
	// reportSpacing per live member keeps the cluster-wide rate of
	// metadata updates at or below 1/reportSpacing.
	reportSpacing = 100 * time.Millisecond
	// viewSpacing per live member keeps the cluster-wide rate of updates
	// for the fleet view at or below 1/viewSpacing.
	viewSpacing = 2 * time.Second
	// defaultReportInterval is Config.ReportInterval when zero.
	defaultReportInterval = time.Second
)

func newReporter(self, region string, observer bool, cursor record.Version) *reporter {
	r := &reporter{
		self: self, region: region, observer: observer,
		applied: make(map[string]NamespaceVersion),
		members: make(map[string]*memberState),
		tracks:  make(map[string]*track),
		wake:    make(chan struct{}),
	}
	r.sent = Report{Region: region, Observer: observer, Cursor: cursor}
	r.meta = encodeReport(r.sent, memberlist.MetaMaxSize)
	return r
}

// notifyLocked wakes every waiter. r.mu must be held.
func (r *reporter) notifyLocked() {
	close(r.wake)
	r.wake = make(chan struct{})
}

// currentMeta returns this node's metadata.
func (r *reporter) currentMeta() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta
}

// appliedLocal records that this node applied ns/key at v; acked says the
// change came by a path whose sender got an acknowledgement (push, relay)
// or was published here.
func (r *reporter) appliedLocal(ns, key string, v record.Version, acked bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.applied[ns]; ok || len(r.applied) < maxReportEntries {
		if v > cur.Version {
			r.applied[ns] = NamespaceVersion{Namespace: ns, Version: v, After: max(now.Sub(v.Time()), 0)}
		}
	}
	if acked {
		r.ackedCover = max(r.ackedCover, v)
	} else {
		r.cover = max(r.cover, v)
	}
	if len(r.changes) == maxTimings {
		copy(r.changes, r.changes[1:])
		r.changes = r.changes[:maxTimings-1]
	}
	r.changes = append(r.changes, changeTiming{ns: ns, key: key, v: v, applied: now})
}

// ownReport builds this node's report.
func (r *reporter) ownReport(cursor record.Version) Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Report{Region: r.region, Observer: r.observer, Cursor: cursor}
	for _, e := range r.applied {
		rep.Applied = append(rep.Applied, e)
	}
	rep.Refused = slices.Clone(r.refused[:min(len(r.refused), maxReportRefusals)])
	return rep
}

// refusedHere records that this node refused a change (once per version).
func (r *reporter) refusedHere(e RefusedChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.refused {
		if o.Namespace == e.Namespace && o.Key == e.Key && o.Version == e.Version {
			return
		}
	}
	if len(r.refused) == maxOwnRefusals {
		r.refused = r.refused[:maxOwnRefusals-1]
	}
	r.refused = slices.Insert(r.refused, 0, e)
	r.refusedNew = true
	r.notifyLocked() // this node's own receipts count it
}

// refusedOwn returns why this node refused version v of ns/key, or "".
func (r *reporter) refusedOwn(ns, key string, v record.Version) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refusedOwnLocked(ns, key, v)
}

func (r *reporter) refusedOwnLocked(ns, key string, v record.Version) string {
	for _, o := range r.refused {
		if o.Namespace == ns && o.Key == key && o.Version == v {
			return o.Reason
		}
	}
	return ""
}

// refusedBy records a member's refusal (direct, passed on by a relay, or
// answering a query) of a tracked key.
func (r *reporter) refusedBy(f refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tracks[recentID(f.ns, f.key)]
	if !ok || f.from == "" {
		return
	}
	if t.refused == nil {
		t.refused = make(map[string]RefusedChange)
	}
	if old, ok := t.refused[f.from]; !ok || f.version > old.Version {
		t.refused[f.from] = RefusedChange{Namespace: f.ns, Key: f.key, Version: f.version, Reason: f.reason}
		r.notifyLocked()
	}
}

// update installs rep as this node's metadata if a report is due: the
// cursor now covers a version applied here by an unacknowledged path
// (receipts), or, when view is set, a namespace was applied further (the
// fleet view; a cursor that moved past nothing new is not worth a
// broadcast, so an idle node sends nothing). It reports whether it did.
func (r *reporter) update(rep Report, view bool, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	covers := rep.Cursor >= r.cover && r.sent.Cursor < r.cover
	if view { // only for a namespace applied further: a cursor alone is no news
		moved := len(rep.Applied) != len(r.sent.Applied) ||
			rep.Cursor >= r.ackedCover && r.sent.Cursor < r.ackedCover // ...unless it covers an acked apply now
		for _, e := range rep.Applied {
			moved = moved || appliedIn(r.sent.Applied, e.Namespace) != e.Version
		}
		view = moved || r.refusedNew
	}
	if !covers && !view {
		return false
	}
	b := encodeReport(rep, memberlist.MetaMaxSize)
	if b == nil || slices.Equal(b, r.meta) {
		return false
	}
	r.meta, r.sent, r.sentAt = b, rep, now
	r.refusedNew = false
	r.updates++
	return true
}

// viewDue reports whether the fleet view's interval has passed since the
// last update.
func (r *reporter) viewDue(now time.Time, every time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return now.Sub(r.sentAt) >= every
}

// member records what memberlist says of a member (join, update, leave).
// It runs in memberlist's event callbacks: quick, no calls back into it.
func (r *reporter) member(node *memberlist.Node, state string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.members[node.Name]
	if m == nil {
		m = &memberState{since: now}
		r.members[node.Name] = m
	}
	if m.state != state {
		m.state, m.since = state, now
	}
	if len(node.Meta) > 0 && node.Meta[0] == metaV2 {
		if rep, err := decodeReport(node.Meta); err == nil {
			m.report, m.valid, m.reportedAt = rep, true, now
		}
	} else if region := decodeMeta(node.Meta); region != "" && !m.valid {
		m.report.Region = region // a node of the previous format: region only
	}
	r.timeLocked(now)
	r.notifyLocked()
}

// counted returns how many members a receipt counts now: this node unless
// it is an observer, and every member not gone and not an observer.
func (r *reporter) counted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	if !r.observer {
		n++
	}
	for name, m := range r.members {
		if name != r.self && m.state != StateLeft && !m.report.Observer {
			n++
		}
	}
	return n
}

// forget drops members lost for longer than keep.
func (r *reporter) forget(now time.Time, keep time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, m := range r.members {
		if m.state != StateAlive && now.Sub(m.since) > keep {
			delete(r.members, name)
		}
	}
}

// timeLocked marks the recent changes every live member has now reported.
func (r *reporter) timeLocked(now time.Time) {
	for i := range r.changes {
		c := &r.changes[i]
		if !c.reached.IsZero() {
			continue
		}
		all := true
		last := c.applied
		for name, m := range r.members {
			if name == r.self || m.state != StateAlive || m.report.Observer {
				continue
			}
			e := entryIn(m.report.Applied, c.ns)
			if !m.valid || (m.report.Cursor < c.v && e.Version < c.v) {
				all = false
				break
			}
			at := now // when its report showed it: an upper bound
			if e.Version == c.v {
				at = c.v.Time().Add(e.After) // exact, by its clock
			}
			last = later(last, at)
		}
		if all {
			c.reached = last
		}
	}
}

func appliedIn(ns []NamespaceVersion, name string) record.Version {
	return entryIn(ns, name).Version
}

func entryIn(ns []NamespaceVersion, name string) NamespaceVersion {
	for _, e := range ns {
		if e.Namespace == name {
			return e
		}
	}
	return NamespaceVersion{}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// trackKey starts recording acknowledgements for a key.
func (r *reporter) trackKey(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trackLocked(id)
}

func (r *reporter) trackLocked(id string) *track {
	if t, ok := r.tracks[id]; ok {
		return t
	}
	if len(r.order) >= maxTracks {
		delete(r.tracks, r.order[0])
		r.order = r.order[1:]
	}
	t := &track{acked: make(map[string]record.Version)}
	r.tracks[id] = t
	r.order = append(r.order, id)
	return t
}

// acked records an acknowledgement (direct or forwarded by a relay) for a
// tracked key; others are ignored.
func (r *reporter) acked(a ack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tracks[recentID(a.ns, a.key)]
	if !ok || a.from == "" {
		return
	}
	if a.version > t.acked[a.from] {
		t.acked[a.from] = a.version
		r.notifyLocked()
	}
}
