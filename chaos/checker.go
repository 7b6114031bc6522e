package chaos

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dataplane/dataplane/record"
)

// Outcome is what a read returned.
type Outcome uint8

// The outcomes of a read.
const (
	// Value: a value was served.
	Value Outcome = iota
	// NotFound: the key was served as deleted (a tombstone) or absent
	// (version 0): an answer, not a failure.
	NotFound
	// Failed: no answer (origin failure with nothing held, deadline).
	Failed
)

// Phase tells when a read happened.
type Phase uint8

// The phases of a run.
const (
	// Chaos: while faults are injected.
	Chaos Phase = iota
	// Converging: after the last heal, before every node converged.
	Converging
	// Settled: after convergence; every read must serve the origin's
	// latest version.
	Settled
)

// Read is one read a node served (or failed to), as the checker sees it.
type Read struct {
	// Node names the node; Epoch counts its crashes (a graceful restart
	// keeps the epoch, since the node saved what it served).
	Node  string
	Epoch int
	// Namespace and Key address the record read.
	Namespace, Key string
	// Start and End bound the call.
	Start, End time.Time
	// Held reports that the node held an entry for the key just before
	// the read (cache.Peek): such a read must be answered.
	Held bool
	// Outcome, Version, Value and Stale describe the answer; Err the
	// failure.
	Outcome Outcome
	Version record.Version
	Value   []byte
	Stale   bool
	Err     error
	// Refused reports that a Failed read was the node's policy answer
	// (dataplane.ErrUnavailable: the namespace fails closed and the node
	// could not prove it current), not a failure to answer.
	Refused bool
	Phase   Phase
}

// Violation kinds reported by the Checker.
const (
	KindMonotonic   = "monotonic"   // a node served an older version after a newer one
	KindResurrected = "resurrected" // ... and the newer one was a delete
	KindUnavailable = "unavailable" // a held key was not served
	KindUnknown     = "unknown"     // a version nobody wrote, or a value that does not match its version
	KindConvergence = "convergence" // not converged within the bound after the last heal
	KindSettled     = "settled"     // an outdated version served after convergence
	KindFailClosed  = "fail-closed" // a fail-closed namespace served a value it could not prove current, or a serve-stale one refused
	KindRevoked     = "revoked"     // a version served longer than the namespace's revocation bound after a newer tombstone of it was published
)

// Checker records every read the nodes served and every write the
// publishers made, and checks the invariants over them. It is safe for
// concurrent use.
type Checker struct {
	mu         sync.Mutex // guards everything below
	reads      []Read
	writes     map[string]map[record.Version]*written // by ns/key, then version
	violations []string
	byKind     map[string]int
	// failClosed holds the namespaces whose policy fails closed, each
	// with the windows in which every read must be refused.
	failClosed map[string][]window
	// revokeBound holds the namespaces under RevocationBound, each with
	// its bound; revocations the tombstones published in them, by ns/key.
	revokeBound map[string]time.Duration
	revocations map[string][]revocation
}

// revocation is a tombstone known to be published (acknowledged) at at.
type revocation struct {
	version record.Version
	at      time.Time
}

// window is a span of time [from, to).
type window struct{ from, to time.Time }

// written is what the checker knows of one version of one key: every
// record sent to a compare-and-swap under it, and, once one is known to
// have landed, that one. Two publishers whose clocks give one version may
// both send it, with different values; only one can land, and a write sent
// but never confirmed (a timed-out request the server may still apply) may
// be it.
type written struct {
	candidates []record.Record // distinct contents sent, in order
	landed     *record.Record  // the one the store took, once known
}

// matches returns the records a read of this version may serve: the one
// that landed, or, while that is unknown, every candidate.
func (w *written) matches() []record.Record {
	if w.landed != nil {
		return []record.Record{*w.landed}
	}
	return w.candidates
}

// NewChecker returns an empty checker.
func NewChecker() *Checker {
	return &Checker{writes: make(map[string]map[record.Version]*written), byKind: make(map[string]int)}
}

func id(ns, key string) string { return ns + "/" + key }

func (c *Checker) version(rec record.Record) *written {
	k := id(rec.Namespace, rec.Key)
	if c.writes[k] == nil {
		c.writes[k] = make(map[record.Version]*written)
	}
	w := c.writes[k][rec.Version]
	if w == nil {
		w = &written{}
		c.writes[k][rec.Version] = w
	}
	return w
}

func sameContent(a, b record.Record) bool {
	return a.Tombstone == b.Tombstone && bytes.Equal(a.Value, b.Value)
}

// FailsClosed declares that ns fails closed: a read of it may be refused
// (Read.Refused), even of a held key, where a serve-stale namespace must
// answer. A refusal in any other namespace is a violation.
func (c *Checker) FailsClosed(ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failClosed == nil {
		c.failClosed = make(map[string][]window)
	}
	if _, ok := c.failClosed[ns]; !ok {
		c.failClosed[ns] = nil
	}
}

// MustRefuse declares that every read of the fail-closed namespace ns that
// starts in [from, to) must be refused: no node can have proven ns current
// within its bound D then (the caller knows that no proof could reach any
// node after from - D, e.g. because the origin, its change log and every
// publisher were down). Serving a value or a not-found then is a
// KindFailClosed violation.
func (c *Checker) MustRefuse(ns string, from, to time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failClosed == nil {
		c.failClosed = make(map[string][]window)
	}
	c.failClosed[ns] = append(c.failClosed[ns], window{from, to})
}

// mustRefuse reports whether r falls in a window where it must be refused.
func (c *Checker) mustRefuse(r *Read) bool {
	for _, w := range c.failClosed[r.Namespace] {
		if !r.Start.Before(w.from) && r.Start.Before(w.to) {
			return true
		}
	}
	return false
}

// RevocationBound declares that no read of ns may serve a version of a
// key later than bound after a newer tombstone of that key was published
// (Revoked): the longest a node may take to stop serving a revoked key
// (for a namespace that fails closed after D, D plus the clock skews and
// propagation delays of the run). Serving one is a KindRevoked violation;
// refusing the read or serving the tombstone (or a newer version) is not.
func (c *Checker) RevocationBound(ns string, bound time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revokeBound == nil {
		c.revokeBound = make(map[string]time.Duration)
	}
	c.revokeBound[ns] = bound
}

// Revoked records that the tombstone rec was published by at (its publish
// acknowledged): from at plus the namespace's RevocationBound on, no read
// may serve a version of its key older than rec.Version.
func (c *Checker) Revoked(rec record.Record, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revocations == nil {
		c.revocations = make(map[string][]revocation)
	}
	k := id(rec.Namespace, rec.Key)
	c.revocations[k] = append(c.revocations[k], revocation{rec.Version, at})
}

// checkRevoked checks a served read r of k against the revocations of k:
// it counts in s.PastRevocation when one was published more than the
// bound before r started, and is a violation when such a one is newer
// than the value r served.
func (c *Checker) checkRevoked(r *Read, k string, s *Summary) {
	bound, ok := c.revokeBound[r.Namespace]
	if !ok {
		return
	}
	past := false
	for _, rv := range c.revocations[k] {
		if !r.Start.After(rv.at.Add(bound)) {
			continue
		}
		past = true
		if r.Outcome == Value && r.Version < rv.version {
			c.violateLocked(KindRevoked, "%s (epoch %d) served %s@%s at %s, %s after a tombstone @%s of it was published (bound %s)",
				r.Node, r.Epoch, k, r.Version, r.Start.Format("15:04:05.000"), r.Start.Sub(rv.at).Round(time.Millisecond), rv.version, bound)
			break
		}
	}
	if past {
		s.PastRevocation++
	}
}

// Sent records a write that may have reached the origin: a record sent to
// a compare-and-swap, before the answer (WriteFaults.Sent). It is one
// candidate for its version until Wrote says which landed.
func (c *Checker) Sent(rec record.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.version(rec)
	for _, o := range w.candidates {
		if sameContent(o, rec) {
			return
		}
	}
	rec.Value = bytes.Clone(rec.Value)
	w.candidates = append(w.candidates, rec)
}

// Wrote records a write known to have landed: a compare-and-swap the
// store accepted (WriteFaults.Landed) or a publish acknowledged. From then
// on a read of its version must serve its content, whatever else was sent
// under that version. A second, different record said to have landed under
// one version is itself a violation (two writes of one version).
func (c *Checker) Wrote(rec record.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.version(rec)
	rec.Value = bytes.Clone(rec.Value)
	switch {
	case w.landed == nil:
		w.landed = &rec
	case !sameContent(*w.landed, rec):
		c.violateLocked(KindUnknown, "%s@%s landed twice with different contents (tombstone=%v, %d bytes; tombstone=%v, %d bytes)",
			id(rec.Namespace, rec.Key), rec.Version, w.landed.Tombstone, len(w.landed.Value), rec.Tombstone, len(rec.Value))
		return
	}
	for _, o := range w.candidates {
		if sameContent(o, rec) {
			return
		}
	}
	w.candidates = append(w.candidates, rec)
}

// Record records a read.
func (c *Checker) Record(r Read) {
	c.mu.Lock()
	c.reads = append(c.reads, r)
	c.mu.Unlock()
}

// Violate records a violation found outside the read history (e.g. by the
// convergence check).
func (c *Checker) Violate(kind, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violateLocked(kind, format, args...)
}

// maxListed bounds the violations kept as text; all are counted.
const maxListed = 50

func (c *Checker) violateLocked(kind, format string, args ...any) {
	c.byKind[kind]++
	if len(c.violations) < maxListed {
		c.violations = append(c.violations, kind+": "+fmt.Sprintf(format, args...))
	}
}

// Summary is what Check found.
type Summary struct {
	Reads       int // reads recorded
	Served      int // answered with a value or a not-found
	StaleServed int // of which marked stale
	HeldReads   int // reads of a key the node held
	Failed      int // reads not answered (of keys not held, unless a violation)
	Refused     int // of which refused by a fail-closed policy
	MustRefuse  int // reads in a window where they had to be refused
	// PastRevocation counts the reads served more than the namespace's
	// RevocationBound after a tombstone of their key was published.
	PastRevocation int
	Keys           int // distinct keys written
	Writes         int // writes recorded
	Violations     int
	ByKind         map[string]int
	Listed         []string // the first violations, as text
}

// Check verifies the recorded history against the invariants: per node
// (and epoch) and key, a read never serves an older version than a read
// that ended before it started (monotonic reads, no resurrection); a read
// of a held key is always answered (availability); every served version
// was written, with the value served (bad input never reaches a reader);
// and every read after convergence serves latest[ns/key].
func (c *Checker) Check(latest map[string]record.Version) Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Summary{Reads: len(c.reads), Keys: len(c.writes)}
	for _, w := range c.writes {
		s.Writes += len(w)
	}
	type series struct{ reads []*Read }
	all := make(map[string]*series)
	for i := range c.reads {
		r := &c.reads[i]
		if r.Held {
			s.HeldReads++
		}
		must := c.mustRefuse(r)
		if must {
			s.MustRefuse++
		}
		if r.Outcome == Failed && r.Refused {
			s.Failed++
			s.Refused++
			if _, ok := c.failClosed[r.Namespace]; !ok {
				c.violateLocked(KindFailClosed, "%s (epoch %d) refused a read of %s/%s at %s, a namespace that serves stale: %v", r.Node, r.Epoch, r.Namespace, r.Key, r.Start.Format("15:04:05.000"), r.Err)
			}
			continue
		}
		if must && r.Outcome != Failed {
			c.violateLocked(KindFailClosed, "%s (epoch %d) served %s/%s@%s (%s) at %s, past the fail-closed bound with no proof of being current", r.Node, r.Epoch, r.Namespace, r.Key, r.Version, outcomeName(r.Outcome), r.Start.Format("15:04:05.000"))
		}
		if r.Outcome == Failed {
			s.Failed++
			if r.Held {
				c.violateLocked(KindUnavailable, "%s (epoch %d) failed a read of held key %s/%s at %s: %v", r.Node, r.Epoch, r.Namespace, r.Key, r.Start.Format("15:04:05.000"), r.Err)
			}
			continue
		}
		s.Served++
		if r.Stale {
			s.StaleServed++
		}
		k := id(r.Namespace, r.Key)
		if r.Version != 0 {
			c.checkWritten(r, k)
		}
		c.checkRevoked(r, k, &s)
		if r.Phase == Settled {
			if want, ok := latest[k]; ok && r.Version != want {
				c.violateLocked(KindSettled, "%s served %s@%s after convergence; the origin holds %s", r.Node, k, r.Version, want)
			}
		}
		sk := fmt.Sprintf("%s\x00%d\x00%s", r.Node, r.Epoch, k)
		if all[sk] == nil {
			all[sk] = &series{}
		}
		all[sk].reads = append(all[sk].reads, r)
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.checkSeries(all[k].reads)
	}
	s.ByKind = make(map[string]int, len(c.byKind))
	for k, n := range c.byKind {
		s.ByKind[k] = n
		s.Violations += n
	}
	s.Listed = slices.Clone(c.violations)
	return s
}

// checkWritten checks that the version r served was written with the
// content served: the content that landed, or, if which one landed is not
// known, one of those sent under it.
func (c *Checker) checkWritten(r *Read, k string) {
	w, ok := c.writes[k][r.Version]
	if !ok {
		c.violateLocked(KindUnknown, "%s served %s@%s, a version never written", r.Node, k, r.Version)
		return
	}
	var tombstones []bool
	for _, m := range w.matches() {
		if m.Tombstone == (r.Outcome == NotFound) && (r.Outcome == NotFound || bytes.Equal(m.Value, r.Value)) {
			return
		}
		tombstones = append(tombstones, m.Tombstone)
	}
	if !slices.Contains(tombstones, r.Outcome == NotFound) {
		c.violateLocked(KindUnknown, "%s served %s@%s as tombstone=%v, written as tombstone=%v", r.Node, k, r.Version, r.Outcome == NotFound, tombstones)
		return
	}
	c.violateLocked(KindUnknown, "%s served %s@%s with a value that differs from the one written", r.Node, k, r.Version)
}

// checkSeries checks the reads of one key on one node: a read must not
// serve a version older than one served by a read that ended before it
// started. (Overlapping reads may be answered in either order.)
func (c *Checker) checkSeries(rs []*Read) {
	byEnd := slices.Clone(rs)
	slices.SortFunc(byEnd, func(a, b *Read) int { return a.End.Compare(b.End) })
	byStart := slices.Clone(rs)
	slices.SortFunc(byStart, func(a, b *Read) int { return a.Start.Compare(b.Start) })
	var best *Read // the newest version among reads ended so far
	j := 0
	for _, r := range byStart {
		for j < len(byEnd) && byEnd[j].End.Before(r.Start) {
			if best == nil || byEnd[j].Version > best.Version {
				best = byEnd[j]
			}
			j++
		}
		if best == nil || r.Version >= best.Version {
			continue
		}
		kind := KindMonotonic
		if best.Outcome == NotFound && best.Version != 0 && r.Outcome == Value {
			kind = KindResurrected
		}
		c.violateLocked(kind, "%s (epoch %d) served %s/%s@%s (%s) at %s after serving @%s (%s) at %s",
			r.Node, r.Epoch, r.Namespace, r.Key, r.Version, outcomeName(r.Outcome), r.Start.Format("15:04:05.000"),
			best.Version, outcomeName(best.Outcome), best.End.Format("15:04:05.000"))
	}
}

func outcomeName(o Outcome) string {
	switch o {
	case Value:
		return "value"
	case NotFound:
		return "deleted"
	}
	return "failed"
}
