package checkpoint

import (
	"container/heap"
	"fmt"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// State is the state of one namespace as the state hash sees it: each
// key's newest (version, tombstone, digest), their hash and count, kept in
// O(1) per applied change. It also journals the changes it applies, so it
// can tell its hash as of an earlier version (At) for as far back as the
// journal reaches (Forget trims it): a node ahead of a checkpoint for some
// keys compares its state at the checkpoint's version, and an issuer signs
// the state at a snapshot's version after it moved on. Not safe for
// concurrent use.
type State struct {
	ns    string
	keys  map[string]entry
	hash  statehash.Hash
	count uint64
	floor record.Version // tombstones below are not hashed
	tombs tombHeap       // hashed tombstones, oldest first

	// journal lists the applied changes in the order applied; At undoes
	// those above the version asked for. from is the lowest version At
	// answers for.
	journal []journalEntry
	from    record.Version
}

type entry struct {
	version record.Version
	tomb    bool
	digest  [record.SealDigestLen]byte
}

type journalEntry struct {
	key      string
	old, new entry
	hadOld   bool
	// late marks an element that arrived after a newer one of its key (a
	// restamp pushed by gossip before the log brought the first attempt,
	// a snapshot record above the snapshot's version): it never was the
	// key's state here, but it was the key's state at the versions between
	// it and the newer one, which At must answer for. new holds it.
	late bool
}

// NewState returns the empty state of namespace ns.
func NewState(ns string) *State {
	return &State{ns: ns, keys: make(map[string]entry)}
}

// Namespace returns the namespace s holds.
func (s *State) Namespace() string { return s.ns }

func (s *State) element(key string, e entry) statehash.Element {
	return statehash.Element{Namespace: s.ns, Key: key, Version: e.version, Tombstone: e.tomb, Digest: e.digest}
}

// hashed reports whether e is in the hash: anything but a tombstone below
// the floor.
func (s *State) hashed(e entry) bool { return !(e.tomb && e.version < s.floor) }

// Apply makes e the state of its key if e is newer than what s holds, in
// O(1), and reports whether it did. An older e is not the key's state,
// but it is remembered (journaled) as what the key was at the versions
// from it up to the next one s holds, so that At answers for them as if
// the changes had arrived in version order. An element of another
// namespace is an error.
func (s *State) Apply(e statehash.Element) (bool, error) {
	if e.Namespace != s.ns {
		return false, fmt.Errorf("%w: state of %s given an element of %s", record.ErrInvalid, s.ns, e.Namespace)
	}
	old, had := s.keys[e.Key]
	ne := entry{version: e.Version, tomb: e.Tombstone, digest: e.Digest}
	if had && e.Version <= old.version {
		if e.Version < old.version && e.Version >= s.from {
			s.journal = append(s.journal, journalEntry{key: e.Key, new: ne, late: true})
		}
		return false, nil
	}
	s.keys[e.Key] = ne
	s.swap(e.Key, old, had, ne, true)
	s.journal = append(s.journal, journalEntry{key: e.Key, old: old, hadOld: had, new: ne})
	return true, nil
}

// swapIn moves the hash h and count n of a state from key's old state
// (had: there was one) to ne (present: there is one).
func (s *State) swapIn(h *statehash.Hash, n *uint64, key string, old entry, had bool, ne entry, present bool) {
	if had && s.hashed(old) {
		h.Remove(s.element(key, old))
		*n--
	}
	if present && s.hashed(ne) {
		h.Add(s.element(key, ne))
		*n++
	}
}

// swap is swapIn on s's own hash, keeping the tombstone heap.
func (s *State) swap(key string, old entry, had bool, ne entry, present bool) {
	s.swapIn(&s.hash, &s.count, key, old, had, ne, present)
	if present && ne.tomb && s.hashed(ne) {
		heap.Push(&s.tombs, tomb{version: ne.version, key: key})
	}
}

// Hash returns the hash of the state s holds now.
func (s *State) Hash() statehash.Hash { return s.hash }

// Count returns the number of elements in the hash.
func (s *State) Count() uint64 { return s.count }

// Len returns the number of keys s holds (hashed or not).
func (s *State) Len() int { return len(s.keys) }

// Floor returns the tombstone floor.
func (s *State) Floor() record.Version { return s.floor }

// SetFloor raises the tombstone floor to f (it never goes down): every
// tombstone below it leaves the hash, at O(log n) each, once.
func (s *State) SetFloor(f record.Version) {
	if f <= s.floor {
		return
	}
	s.floor = f
	for s.tombs.Len() > 0 && s.tombs[0].version < f {
		t := heap.Pop(&s.tombs).(tomb)
		if e, ok := s.keys[t.key]; ok && e.tomb && e.version == t.version {
			s.hash.Remove(s.element(t.key, e))
			s.count--
		}
	}
}

// Forget trims the journal: At answers only for versions at or above v
// from now on. Call it with the version of the last checkpoint a node
// verified (nothing older is ever asked for), or, after loading a
// snapshot whose records may be newer than its version, with the newest of
// them (the journal cannot undo what it did not see).
func (s *State) Forget(v record.Version) {
	if v <= s.from {
		return
	}
	s.from = v
	i := 0
	for i < len(s.journal) && s.journal[i].new.version <= v {
		i++
	}
	// Entries below v that follow a newer one (applied out of order) stay
	// until the next trim reaches them; At skips them.
	s.journal = append(s.journal[:0], s.journal[i:]...)
}

// JournalLen is the number of journaled changes (memory: a key and two
// states each).
func (s *State) JournalLen() int { return len(s.journal) }

// At returns the hash and count of the state as of version v: s's state
// with every journaled change above v undone, and late elements at or
// below v put back where they are newer than what the undoing left,
// O(journal). It fails for a v below what the journal reaches (see
// Forget).
func (s *State) At(v record.Version) (statehash.Hash, uint64, error) {
	at, err := s.statesAt(v, nil)
	if err != nil {
		return statehash.Hash{}, 0, err
	}
	h, n := s.hash, s.count
	for k, x := range at {
		cur, had := s.keys[k]
		s.swapIn(&h, &n, k, cur, had, x.e, x.present)
	}
	return h, n, nil
}

// ElementsAt returns the state as of version v of each of keys: its
// element, or nil for a key that had none (or only a tombstone below the
// floor). Same reach as At.
func (s *State) ElementsAt(v record.Version, keys []string) (map[string]*statehash.Element, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	at, err := s.statesAt(v, want)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*statehash.Element, len(keys))
	for _, k := range keys {
		x, changed := at[k]
		if !changed {
			x.e, x.present = s.keys[k]
		}
		if x.present && s.hashed(x.e) {
			e := s.element(k, x.e)
			out[k] = &e
		} else {
			out[k] = nil
		}
	}
	return out, nil
}

// keyAt is a key's state as of some version.
type keyAt struct {
	e       entry
	present bool
}

// statesAt returns, for each key (of want; nil: all) whose state as of
// version v differs from its state now, its state as of v.
func (s *State) statesAt(v record.Version, want map[string]bool) (map[string]keyAt, error) {
	if v < s.from {
		return nil, fmt.Errorf("%w: state of %s: version %s is before the journal's start %s", record.ErrInvalid, s.ns, v, s.from)
	}
	at := make(map[string]keyAt)
	// Undo, newest first, what was applied above v: each key ends at the
	// state before its oldest change above v.
	for i := len(s.journal) - 1; i >= 0; i-- {
		j := &s.journal[i]
		if j.late || j.new.version <= v || (want != nil && !want[j.key]) {
			continue
		}
		at[j.key] = keyAt{j.old, j.hadOld}
	}
	// A late element at or below v that is newer than that state was
	// the key's state at v.
	for i := range s.journal {
		j := &s.journal[i]
		if !j.late || j.new.version > v {
			continue
		}
		if x, ok := at[j.key]; ok && (!x.present || j.new.version > x.e.version) {
			at[j.key] = keyAt{j.new, true}
		}
	}
	return at, nil
}

// tomb is a hashed tombstone, for SetFloor.
type tomb struct {
	version record.Version
	key     string
}

// tombHeap orders tombstones oldest first (container/heap).
type tombHeap []tomb

func (h tombHeap) Len() int           { return len(h) }
func (h tombHeap) Less(i, j int) bool { return h[i].version < h[j].version }
func (h tombHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tombHeap) Push(x any)        { *h = append(*h, x.(tomb)) }
func (h *tombHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
