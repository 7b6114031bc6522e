package follow

import (
	"context"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
)

// Target is what a Follower hands the changes it reads to: usually the
// node, which applies them to its cache's version index, the one ordering
// gate. The follower does not order or filter by version itself (beyond
// not handing on a change twice from rereads of its settle window): the
// Target must ignore anything not newer than what it holds, whatever path
// delivered it first.
//
// Methods are called from the follower's goroutine: they must not block on
// I/O for long and must not call back into the Follower. A panic in them is
// recovered, counted and logged.
type Target interface {
	// Apply installs rec, a tombstone (the log carries values only for
	// deletions), if it is newer than what the target holds, and reports
	// whether it did.
	Apply(rec record.Record) bool
	// Invalidate records that ns/key has a version v whose value did not
	// travel: anything older must not be served as current, and a refill
	// that returns an older version must not be installed.
	Invalidate(ns, key string, v record.Version)
}

// Revalidator is an optional interface of a Target. RevalidateAll is called
// when the follower may have missed changes it cannot name (the change log
// was trimmed past its cursor, and recovering from snapshots failed or is
// not offered): everything the target holds must be checked against the
// origin again. It must not block.
//
// A Target without it is left as is, and the miss is only counted and
// logged.
type Revalidator interface {
	RevalidateAll()
}

// Recoverer is an optional interface of a Target, preferred to Revalidator:
// when the change log was trimmed past the cursor, Recover reloads what the
// target holds from the origin's snapshots (one read per namespace, never
// one per key) and returns the version from which the log must be read
// again (the oldest snapshot's). The follower then reads the log from
// there. If Recover fails, the follower falls back to RevalidateAll, if the
// target has it.
type Recoverer interface {
	Recover(ctx context.Context) (record.Version, error)
}

// CaughtUpper is an optional interface of a Target: CaughtUp is called
// after every read of the change log that succeeded, with the cursor the
// read started after and the cursor reached. Every change with a version in
// (from, to] has then been handed to the Target (by the log, or before it
// by another path). It must be quick and must not call back into the
// Follower.
type CaughtUpper interface {
	CaughtUp(from, to record.Version)
}

// ChangeInvalidator is an optional interface of a Target, preferred to
// Invalidate: InvalidateChange is Invalidate with the whole change read
// from the log, its Seal included (a Target that keeps a state hash takes
// the value's digest from it).
type ChangeInvalidator interface {
	InvalidateChange(c record.Change)
}

// CheckpointTaker is an optional interface of a Target that checks the
// publisher's signed checkpoints (package checkpoint): before each read of
// the log the follower reads the latest checkpoint of each of
// CheckpointSpaces from Config.Checkpoints, and after the read succeeded
// (and CaughtUp was called) hands each to TakeCheckpoint, so that the
// checkpoint's version is usually covered by the read. Both must be quick
// and must not call back into the Follower, except CatchUp.
type CheckpointTaker interface {
	CheckpointSpaces() []string
	TakeCheckpoint(c *checkpoint.Checkpoint)
}

// Log reads the origin's change log. origin.Store satisfies it.
type Log interface {
	// ReadLog returns up to limit changes with versions greater than after,
	// in ascending version order, or an error wrapping
	// origin.ErrLogTruncated if changes after `after` were trimmed.
	ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error)
}

// LogFunc adapts a function to a Log.
type LogFunc func(ctx context.Context, after record.Version, limit int) ([]record.Change, error)

var _ Log = LogFunc(nil)

// ReadLog implements Log.
func (f LogFunc) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	return f(ctx, after, limit)
}

// Funcs adapts plain functions to a Target (and a Revalidator). A nil field
// ignores the call; a nil ApplyFunc makes Apply fall back to
// InvalidateFunc so that no change is silently lost.
type Funcs struct {
	ApplyFunc         func(rec record.Record) bool
	InvalidateFunc    func(ns, key string, v record.Version)
	RevalidateAllFunc func()
}

var (
	_ Target      = Funcs{}
	_ Revalidator = Funcs{}
)

// Apply implements Target.
func (f Funcs) Apply(rec record.Record) bool {
	if f.ApplyFunc == nil {
		f.Invalidate(rec.Namespace, rec.Key, rec.Version)
		return false
	}
	return f.ApplyFunc(rec)
}

// Invalidate implements Target.
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
