package cache

import (
	"hash/maphash"
	"iter"
	"sync"
	"sync/atomic"

	"github.com/maypok86/otter/v2"

	"github.com/dataplane/dataplane/record"
)

// The version index: what the cache knows of every key's newest version,
// whether or not it holds the value (DESIGN.md, decision 7). Every path that
// learns a version (Apply from gossip, the log or a snapshot, Invalidate, an
// origin read) raises it; evicting a value never lowers it. A refill is
// compared with it, so an origin that lags behind what the node once knew
// (a replica, a cache node, a restored bucket) cannot bring back an older
// value or a deleted one, however long ago the value was evicted.
//
//   - A complete namespace (Options.Complete) is held whole: its index has
//     an entry for every key that exists or was deleted, for as long as the
//     cache lives. Once MarkComplete says the index is up to date, a miss is
//     answered from it: a key it does not know does not exist (no origin
//     read), and a tombstone is a delete (no origin read).
//   - Every other namespace is partial: its index is a bounded table of
//     floors (Options.MaxFloors). When the table must forget a floor, the
//     floor is folded into one of floorStripes conservative floors (the
//     highest forgotten version of the keys hashing there), which applies to
//     every key of the stripe that the table no longer knows: an origin
//     answer below it is served marked stale, never as fresh; and below a
//     forgotten delete it is not served at all (a deleted value never comes
//     back). A forgotten floor older than Options.MaxOriginLag is simply
//     dropped: an origin that lags by less than that already has its
//     version.

// tombBit marks a tombstone in a packed index entry. Versions hold
// milliseconds in 48 bits, so the top bit is free until the year 10889.
const tombBit = 1 << 63

func pack(v record.Version, tomb bool) uint64 {
	p := uint64(v) &^ tombBit
	if tomb {
		p |= tombBit
	}
	return p
}

func unpack(p uint64) (record.Version, bool) {
	return record.Version(p &^ tombBit), p&tombBit != 0
}

// nsIndex is the index of one complete namespace: every key's newest known
// version. It is sharded to keep writers of different keys apart.
type nsIndex struct {
	seed     maphash.Seed
	complete atomic.Bool // the index is up to date: misses are answered from it
	shards   [indexShards]indexShard
}

const indexShards = 64

type indexShard struct {
	mu sync.RWMutex
	m  map[string]uint64 // key -> pack(version, tombstone)
}

func newNSIndex() *nsIndex {
	x := &nsIndex{seed: maphash.MakeSeed()}
	for i := range x.shards {
		x.shards[i].m = make(map[string]uint64)
	}
	return x
}

func (x *nsIndex) shard(k string) *indexShard {
	return &x.shards[maphash.String(x.seed, k)%indexShards]
}

// get returns the newest version known of k, and whether it is a tombstone.
func (x *nsIndex) get(k string) (record.Version, bool, bool) {
	s := x.shard(k)
	s.mu.RLock()
	p, ok := s.m[k]
	s.mu.RUnlock()
	v, tomb := unpack(p)
	return v, tomb, ok
}

// raise records version v of k (a tombstone if tomb) unless a version at
// least as new is known; at an equal version a tombstone wins over an
// unknown state (an invalidation carries no tombstone flag). It reports
// whether the index changed.
func (x *nsIndex) raise(k string, v record.Version, tomb bool) bool {
	s := x.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.m[k]; ok {
		cur, curTomb := unpack(p)
		if v < cur || v == cur && (curTomb || !tomb) {
			return false
		}
	}
	s.m[k] = pack(v, tomb)
	return true
}

// all iterates over the index, one shard locked at a time.
func (x *nsIndex) all(ns string) iter.Seq[record.Change] {
	return func(yield func(record.Change) bool) {
		var buf []record.Change
		for i := range x.shards {
			s := &x.shards[i]
			buf = buf[:0]
			s.mu.RLock()
			for k, p := range s.m {
				v, tomb := unpack(p)
				buf = append(buf, record.Change{Namespace: ns, Key: k, Version: v, Tombstone: tomb})
			}
			s.mu.RUnlock()
			for _, c := range buf {
				if !yield(c) {
					return
				}
			}
		}
	}
}

// size returns the number of keys indexed.
func (x *nsIndex) size() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// floorStripes is the number of conservative floors that forgotten floors
// of partial namespaces fold into.
const floorStripes = 1 << 12

// floors is the bounded index of the partial namespaces.
type floors struct {
	table   *otter.Cache[key, uint64] // pack(version, tombstone)
	seed    maphash.Seed
	stripes [floorStripes]atomic.Uint64 // forgotten versions
	deletes [floorStripes]atomic.Uint64 // forgotten tombstones
	maxLag  int64                       // Options.MaxOriginLag, ns
	now     func() int64
	// forgotten counts floors folded into a stripe.
	forgotten atomic.Uint64
}

func newFloors(max int, maxLag int64, now func() int64) (*floors, error) {
	f := &floors{seed: maphash.MakeSeed(), maxLag: maxLag, now: now}
	t, err := otter.New(&otter.Options[key, uint64]{
		MaximumSize: max,
		OnAtomicDeletion: func(ev otter.DeletionEvent[key, uint64]) {
			if ev.WasEvicted() {
				f.forget(ev.Key, ev.Value)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	f.table = t
	return f, nil
}

func (f *floors) stripe(k key) int {
	h := maphash.String(f.seed, k.ns) ^ maphash.String(f.seed, k.key)
	return int(h % floorStripes)
}

// raiseTo raises a to at least v.
func raiseTo(a *atomic.Uint64, v record.Version) {
	for {
		cur := a.Load()
		if uint64(v) <= cur || a.CompareAndSwap(cur, uint64(v)) {
			return
		}
	}
}

// forget folds an evicted floor into its stripe, unless it is older than
// MaxOriginLag (every origin has it by now).
func (f *floors) forget(k key, p uint64) {
	v, tomb := unpack(p)
	if f.now()-v.Time().UnixNano() > f.maxLag {
		return
	}
	f.forgotten.Add(1)
	i := f.stripe(k)
	raiseTo(&f.stripes[i], v)
	if tomb {
		raiseTo(&f.deletes[i], v)
	}
}

// get returns the floor known for k, and whether it is a tombstone.
func (f *floors) get(k key) (record.Version, bool, bool) {
	p, ok := f.table.GetIfPresent(k)
	v, tomb := unpack(p)
	return v, tomb, ok
}

// uncertain returns the stripe floors that apply to k, which the table does
// not know (0 for none): an origin answer below stale may be older than a
// version this cache forgot; one below deleted may be a value deleted since.
func (f *floors) uncertain(k key) (stale, deleted record.Version) {
	i := f.stripe(k)
	young := func(a *atomic.Uint64) record.Version {
		v := record.Version(a.Load())
		if v == 0 || f.now()-v.Time().UnixNano() > f.maxLag {
			return 0
		}
		return v
	}
	return young(&f.stripes[i]), young(&f.deletes[i])
}

// raise records version v of k, as nsIndex.raise does.
func (f *floors) raise(k key, v record.Version, tomb bool) bool {
	changed := false
	f.table.Compute(k, func(p uint64, found bool) (uint64, otter.ComputeOp) {
		if found {
			cur, curTomb := unpack(p)
			if v < cur || v == cur && (curTomb || !tomb) {
				return p, otter.CancelOp
			}
		}
		changed = true
		return pack(v, tomb), otter.WriteOp
	})
	return changed
}

// known returns the newest version the index knows of k, and whether it is
// a tombstone.
func (c *Cache) known(k key, sp *space) (v record.Version, tomb, ok bool) {
	if sp.idx != nil {
		return sp.idx.get(k.key)
	}
	return c.floors.get(k)
}

// learn raises the index entry of k to version v and reports whether it
// changed.
func (c *Cache) learn(k key, sp *space, v record.Version, tomb bool) bool {
	if v == 0 {
		return false
	}
	if sp.idx != nil {
		return sp.idx.raise(k.key, v, tomb)
	}
	return c.floors.raise(k, v, tomb)
}
