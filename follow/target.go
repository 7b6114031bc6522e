package gossip

import (
	"context"

	"github.com/dataplane/dataplane/record"
)

// Applier is what a node tells about changes: usually the local cache.
// During a Node's life, the versions it hands to Apply and Invalidate
// strictly increase per key (duplicates and older versions are filtered out
// before the call). A node restarted over an Applier that kept its state
// (Config.Resume) may repeat versions the Applier already holds, or older
// ones, so Apply and Invalidate must still ignore anything not newer than
// what they hold.
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

// Revalidator is an optional interface of an Applier. RevalidateAll is
// called when the node may have missed changes it cannot name (the origin's
// change log was trimmed past the node's position): everything the applier
// holds must be checked against the origin again. It must not block.
//
// An Applier without it is left as is, and the miss is only counted and
// logged.
type Revalidator interface {
	RevalidateAll()
}

// Recoverer is an optional interface of an Applier, preferred to
// Revalidator: when the change log was trimmed past the node's cursor,
// Recover reloads what the applier holds from the origin's snapshots (one
// read per namespace, never one per key) and returns the version from
// which the log must be read again (the oldest snapshot's). The node then
// reads the log from there. If Recover fails, the node falls back to
// RevalidateAll, if the applier has it.
type Recoverer interface {
	Recover(ctx context.Context) (record.Version, error)
}

// Follower is an optional interface of an Applier: CaughtUp is called after
// every read of the change log that succeeded, with the cursor the read
// started after and the cursor reached. Every change with a version in
// (from, to] has then been handed to the Applier (by gossip or by the log).
// It must be quick and must not call back into the Node.
type Follower interface {
	CaughtUp(from, to record.Version)
}

// Funcs adapts plain functions to an Applier (and a Revalidator). A nil
// field ignores the call; a nil ApplyFunc makes Apply fall back to
// InvalidateFunc so that no change is silently lost.
type Funcs struct {
	ApplyFunc         func(rec record.Record) bool
	InvalidateFunc    func(ns, key string, v record.Version)
	RevalidateAllFunc func()
}

var (
	_ Applier     = Funcs{}
	_ Revalidator = Funcs{}
)

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

// RevalidateAll implements Revalidator.
func (f Funcs) RevalidateAll() {
	if f.RevalidateAllFunc != nil {
		f.RevalidateAllFunc()
	}
}

// LogReader reads the origin's change log: the backstop that bounds
// staleness when gossip loses messages. origin.Store satisfies it.
type LogReader interface {
	// ReadLog returns up to limit changes with versions greater than after,
	// in ascending version order, or an error wrapping
	// origin.ErrLogTruncated if changes after `after` were trimmed.
	ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error)
}

// LogReaderFunc adapts a function to a LogReader.
type LogReaderFunc func(ctx context.Context, after record.Version, limit int) ([]record.Change, error)

var _ LogReader = LogReaderFunc(nil)

// ReadLog implements LogReader.
func (f LogReaderFunc) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	return f(ctx, after, limit)
}
