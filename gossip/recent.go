package gossip

import (
	"container/list"
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/dataplane/dataplane/record"
)

// recent remembers the newest version the node has seen of recently changed
// keys, with inline values, so that it can
//   - filter duplicates and reordered messages before they reach the
//     Applier (the Applier sees strictly increasing versions per key),
//   - relay and re-gossip only the first time a newer version arrives
//     (no broadcast storms), and
//   - fill push/pull digests with its most recent changes.
//
// It is split into stripes, each with its own lock; the stripe lock is held
// across "is it newer?" and the Applier call, which is what keeps calls per
// key in version order even when paths race.
type recent struct {
	seed    maphash.Seed
	stripes []stripe
	seq     atomic.Uint64 // arrival order across stripes, for digests
}

const numStripes = 64

type stripe struct {
	mu    sync.Mutex // guards the fields below
	byKey map[string]*list.Element
	order *list.List // of *entry, oldest arrival first
	max   int
	// floor is the highest version ever evicted: a key not in byKey whose
	// version is at most floor may be older than something forgotten.
	floor record.Version
}

type entry struct {
	id      string // namespace + "\x00" + key
	c       change // path is the one that delivered it first
	seq     uint64
	relayed bool // c's version was relayed to this node's share of its region
	// reportTo is whom the relay of c's version passes acks on to, kept
	// after the relay's own wait ended: a co-relay that relayed because
	// of this node's relay message sends its share's acks here, maybe
	// later.
	reportTo string
}

func newRecent(max int) *recent {
	r := &recent{seed: maphash.MakeSeed(), stripes: make([]stripe, numStripes)}
	per := (max + numStripes - 1) / numStripes
	for i := range r.stripes {
		r.stripes[i] = stripe{byKey: make(map[string]*list.Element), order: list.New(), max: per}
	}
	return r
}

func recentID(ns, key string) string { return ns + "\x00" + key }

// lock locks and returns the stripe of id; the caller unlocks it.
func (r *recent) lock(id string) *stripe {
	s := &r.stripes[maphash.String(r.seed, id)%numStripes]
	s.mu.Lock()
	return s
}

// verdict is what observe decides about a change.
type verdict uint8

const (
	stale     verdict = iota // not newer than a version seen: drop
	fresh                    // newer: apply, and spread
	uncertain                // unknown key at or below the eviction floor: apply as an invalidation only, do not spread
	refused                  // from the future or not signed by a trusted key: drop, do not relay
)

// holds reports whether a version at least v of id has been seen (and is
// still remembered): such a change is stale whatever its signature.
func (r *recent) holds(id string, v record.Version) bool {
	s := r.lock(id)
	defer s.mu.Unlock()
	el, ok := s.byKey[id]
	return ok && v <= el.Value.(*entry).c.rec.Version
}

// observe records c if it is newer than the version seen for its key. The
// stripe must be locked.
func (s *stripe) observe(r *recent, id string, c change) verdict {
	if el, ok := s.byKey[id]; ok {
		e := el.Value.(*entry)
		if c.rec.Version <= e.c.rec.Version {
			return stale
		}
		e.c, e.seq, e.relayed, e.reportTo = c, r.seq.Add(1), false, ""
		s.order.MoveToBack(el)
		return fresh
	}
	v := fresh
	if c.rec.Version <= s.floor {
		v = uncertain
	}
	e := &entry{id: id, c: c, seq: r.seq.Add(1)}
	s.byKey[id] = s.order.PushBack(e)
	for s.order.Len() > s.max {
		old := s.order.Remove(s.order.Front()).(*entry)
		delete(s.byKey, old.id)
		if old.c.rec.Version > s.floor {
			s.floor = old.c.rec.Version
		}
	}
	return v
}

// newest returns the most recently arrived changes, newest first, at most n.
func (r *recent) newest(n int) []change {
	type item struct {
		seq uint64
		c   change
	}
	var all []item
	for i := range r.stripes {
		s := &r.stripes[i]
		s.mu.Lock()
		// Copy under the lock: observe replaces e.c of a live entry.
		for el := s.order.Back(); el != nil; el = el.Prev() {
			e := el.Value.(*entry)
			all = append(all, item{e.seq, e.c})
		}
		s.mu.Unlock()
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq > all[j].seq })
	if len(all) > n {
		all = all[:n]
	}
	out := make([]change, len(all))
	for i, it := range all {
		out[i] = it.c
	}
	return out
}

// relayable reports whether version v of id is the one remembered and not
// yet relayed, without marking it (markRelayed does, atomically).
func (r *recent) relayable(id string, v record.Version) bool {
	s := r.lock(id)
	defer s.mu.Unlock()
	el, ok := s.byKey[id]
	if !ok {
		return false
	}
	e := el.Value.(*entry)
	return e.c.rec.Version == v && !e.relayed
}

// markRelayed reports whether version v of id is the newest seen and not
// yet relayed, and marks it relayed.
func (r *recent) markRelayed(id string, v record.Version) bool {
	s := r.lock(id)
	defer s.mu.Unlock()
	el, ok := s.byKey[id]
	if !ok {
		return false
	}
	e := el.Value.(*entry)
	if e.c.rec.Version != v || e.relayed {
		return false
	}
	e.relayed = true
	return true
}

// version returns the newest version seen of id, or 0.
func (r *recent) version(id string) record.Version {
	s := r.lock(id)
	defer s.mu.Unlock()
	if el, ok := s.byKey[id]; ok {
		return el.Value.(*entry).c.rec.Version
	}
	return 0
}

// setReportTo records to whom this node passes on the acks for its relay
// of version v of id.
func (r *recent) setReportTo(id string, v record.Version, to string) {
	s := r.lock(id)
	defer s.mu.Unlock()
	if el, ok := s.byKey[id]; ok {
		if e := el.Value.(*entry); e.c.rec.Version == v && e.relayed {
			e.reportTo = to
		}
	}
}

// reportTo returns to whom this node passes on acks for version v of id,
// if it relayed that version; "" if not.
func (r *recent) reportTo(id string, v record.Version) string {
	s := r.lock(id)
	defer s.mu.Unlock()
	if el, ok := s.byKey[id]; ok {
		if e := el.Value.(*entry); e.c.rec.Version == v {
			return e.reportTo
		}
	}
	return ""
}
