package gossip

import (
	"github.com/dataplane/dataplane/record"
)

// Applier is what a node tells about the changes gossip carries: usually
// the node's cache, whose version index is the one ordering gate. During
// a Node's life, the versions it hands to Apply and Invalidate strictly
// increase per key among those gossip carries (duplicates and older
// versions are filtered out before the call); other paths (the change log,
// origin reads) reach the Applier's state too, so Apply and Invalidate must
// still ignore anything not newer than what they hold.
//
// Methods may be called concurrently for different keys, from memberlist's
// packet loop among others: they must be quick, must not block on I/O, and
// must not call back into the Node. A panic in them is recovered, counted
// and logged.
type Applier interface {
	// Apply installs rec (its value carried inline, or a tombstone) if it is
	// newer than what the applier holds, and reports whether it did.
	Apply(rec record.Record) bool
	// Invalidate records that ns/key has a version v (whose value did not
	// travel with the message): anything older must not be served as
	// current, and a refill that returns an older version must not be
	// installed. The value is fetched from the origin on next use.
	Invalidate(ns, key string, v record.Version)
}

// Funcs adapts plain functions to an Applier. A nil field ignores the
// call; a nil ApplyFunc makes Apply fall back to InvalidateFunc so that no
// change is silently lost.
type Funcs struct {
	ApplyFunc      func(rec record.Record) bool
	InvalidateFunc func(ns, key string, v record.Version)
}

var _ Applier = Funcs{}

// Apply implements Applier.
func (f Funcs) Apply(rec record.Record) bool {
	if f.ApplyFunc == nil {
		f.Invalidate(rec.Namespace, rec.Key, rec.Version)
		return false
	}
	return f.ApplyFunc(rec)
}

// Invalidate implements Applier.
func (f Funcs) Invalidate(ns, key string, v record.Version) {
	if f.InvalidateFunc != nil {
		f.InvalidateFunc(ns, key, v)
	}
}

// LogFollower is what a gossip node needs of the node's follower of the
// origin's change log (package follow's Follower is one): its cursor, for
// the applied-version reports receipts count; its high water, so a digest
// from a peer that knows nothing newer triggers no read; and a way to ask
// for a read now (a member rejoining, a digest showing a gap). CatchUp must
// not block.
type LogFollower interface {
	Cursor() record.Version
	HighWater() record.Version
	CatchUp(why string)
}
