package cache

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Entry is a cached answer.
type Entry struct {
	// Record is the record served. For a deleted key it is the tombstone;
	// for a key the origin has never seen it is a tombstone of version 0.
	// Its Value is shared by every reader and must not be modified.
	Record record.Record
	// Stale reports that the value is past its fresh window, or that a newer
	// version is known to exist, or that the origin could not confirm it.
	Stale bool
	// Age is the time since the origin (or Apply) last confirmed the value.
	Age time.Duration
}

// key addresses an entry. A struct of the two strings keeps lookups free of
// allocation.
type key struct{ ns, key string }

// flightKey names k's loads in the singleflight group.
func (k key) flightKey() string { return k.ns + "\x00" + k.key }

// entry is what the cache holds for a key. It is immutable once stored,
// except refreshing: every change stores a new entry, so readers need no lock.
//
// It is 128 bytes, a size class whose objects sit 128-byte aligned, and
// its first 64 bytes, one cache line, hold everything a fresh hit of a
// value reads (hitUntil, space, checked and the record's value, version
// and seal; the namespace and key are the ones asked for): a hit reads one
// line of the entry, not two (measured under callgrind's cache simulation:
// 4.24 L1 misses a hit against 5.00 with the record in one piece, a bare
// otter read 3.46; see BENCHMARKS.md). The record's parts are fields of
// their own for that; record returns them as one. What only failures and
// not-founds need lives in cold.
type entry struct {
	// hitUntil is freshUntil when the entry is a fresh value until then
	// by the fields of this line alone: not a tombstone or a not-found, no
	// newer version known (floor), no load failed since it was confirmed
	// (cold is nil). Otherwise noHit, and a read looks at the rest. It is
	// set by ready, just before the entry is stored.
	hitUntil int64
	space    *space
	// checked is when the origin or Apply last confirmed the record (Unix
	// ns); the windows of its namespace run from it to freshUntil and
	// staleUntil() (computed, to keep entries small: every byte here is
	// paid once per key held).
	checked int64
	// value, version and seal are the record's (ns, key and tombstone
	// below): a tombstone of version 0 for not-found.
	value   []byte
	version record.Version
	seal    *record.Seal

	ns, key    string
	freshUntil int64
	// floor is the highest version known to exist; above version it means
	// the record is outdated (see Invalidate).
	floor record.Version
	// cold is nil for a value confirmed without failure, the usual case;
	// it is never modified once e is stored (setFailed replaces it).
	cold *entryCold
	// refreshing is set while a background refresh of this entry runs.
	refreshing atomic.Bool
	tombstone  bool
}

// noHit is the hitUntil of an entry that a read does not take for fresh by
// hitUntil alone.
const noHit = math.MinInt64

// record returns the record e holds.
func (e *entry) record() record.Record {
	return record.Record{Namespace: e.ns, Key: e.key, Value: e.value, Version: e.version, Tombstone: e.tombstone, Seal: e.seal}
}

// ready sets e.hitUntil from the rest of e, which is final: it is called
// when e is about to be stored, and returns e.
func (e *entry) ready() *entry {
	e.hitUntil = noHit
	if !e.tombstone && e.cold == nil && e.floor <= e.version {
		e.hitUntil = e.freshUntil
	}
	return e
}

// entryCold is the part of an entry that only tombstones, not-founds and
// failed loads have.
type entryCold struct {
	// notFound is returned for tombstones and not-founds, built once so the
	// hit path does not allocate.
	notFound *notFoundError
	// failed is when a load of this key last failed (Unix ns), 0 if none
	// since checked; the origin is not asked again before a fresh window
	// has passed since, so an outage does not make every read wait.
	failed int64
	// behind says the last "failure" was an origin answer older than a
	// known version (a lagging replica), retried after behindRetry
	// rather than outdatedRetry.
	behind bool
}

// notFound returns e's not-found error, nil for a value.
func (e *entry) notFound() *notFoundError {
	if e.cold == nil {
		return nil
	}
	return e.cold.notFound
}

// failed returns when a load of e's key last failed, 0 if none since
// checked.
func (e *entry) failed() int64 {
	if e.cold == nil {
		return 0
	}
	return e.cold.failed
}

// behind reports whether e's last failure was a lagging origin's answer.
func (e *entry) behind() bool { return e.cold != nil && e.cold.behind }

// setFailed sets failed and behind; it may be called only before e is
// stored (entries share cold, so it is replaced, never modified).
func (e *entry) setFailed(failed int64, behind bool) {
	nf := e.notFound()
	if nf == nil && failed == 0 && !behind {
		e.cold = nil
		return
	}
	e.cold = &entryCold{notFound: nf, failed: failed, behind: behind}
}

func newEntry(rec record.Record, sp *space, now int64) *entry {
	e := &entry{
		hitUntil: noHit, space: sp,
		value: rec.Value, version: rec.Version, seal: rec.Seal,
		ns: rec.Namespace, key: rec.Key, tombstone: rec.Tombstone,
	}
	e.confirm(now)
	if rec.Tombstone {
		nf := &notFoundError{fmt.Sprintf("%s/%s: deleted at version %s: %v", rec.Namespace, rec.Key, rec.Version, origin.ErrNotFound)}
		if rec.Version == 0 {
			nf = &notFoundError{fmt.Sprintf("%s/%s: %v", rec.Namespace, rec.Key, origin.ErrNotFound)}
		}
		e.cold = &entryCold{notFound: nf}
	}
	return e
}

// clone returns a copy of e that a change can modify before storing it.
func (e *entry) clone() *entry {
	return &entry{
		hitUntil: noHit, space: e.space, checked: e.checked,
		value: e.value, version: e.version, seal: e.seal,
		ns: e.ns, key: e.key, freshUntil: e.freshUntil, floor: e.floor,
		cold: e.cold, tombstone: e.tombstone,
	}
}

// confirm records that the origin (or Apply) vouched for e's record at now. It
// may be called only before e is stored.
func (e *entry) confirm(now int64) {
	freshFor, _ := e.space.window(e.negative())
	e.checked = now
	e.setFailed(0, false)
	e.freshUntil = now + freshFor
}

// staleUntil is when e's stale window ends (Unix ns): a whole stale window
// after its fresh window's full length, even when the fresh window was cut
// short (an answer below a forgotten floor).
func (e *entry) staleUntil() int64 {
	freshFor, staleFor := e.space.window(e.negative())
	return e.checked + freshFor + staleFor
}

// notFoundError is the error of a tombstone or not-found entry, built once
// per entry; a pointer keeps the entry 8 bytes smaller than an error value.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return origin.ErrNotFound }

// negative reports whether e caches a not-found.
func (e *entry) negative() bool { return e.tombstone && e.version == 0 }

// weight estimates e's memory for the size bound.
func weight(k key, e *entry) uint32 {
	const overhead = 256 // entry, otter node, error, key and record headers
	n := overhead + len(k.ns) + len(k.key) + len(e.value)
	if e.notFound() != nil {
		n += len(k.ns) + len(k.key) + 64
	}
	if e.seal != nil {
		n += record.SealLen
	}
	return uint32(n)
}

// outdatedRetry is how long after a failed load an entry known to be
// outdated (an invalidation named a newer version) is retried. Other
// entries back off for a whole fresh window after a failure; an outdated
// one is retried sooner, in the background (reads keep being answered at
// once), so that a node converges soon after the origin comes back even
// when no new invalidation arrives to wake it.
const outdatedRetry = time.Second

// behindRetry is how soon a key is asked again after the origin answered
// with a version older than one the node knows exists (a replica that has
// not caught up yet): sooner than after a failure, since the copy is on its
// way, yet not on every read. Measured with `dataplane bench -replica-lag
// 1s`: a 1 s retry left the last holder serving the new value up to 8 s
// late, 250 ms 1.6 s; blocking every read on the replica cost 2.2 times
// the origin reads per write (BENCHMARKS.md, "Per-region replicas").
const behindRetry = 250 * time.Millisecond

// state is what a read should do with a held entry.
type state int

const (
	fresh   state = iota // serve
	stale                // serve, marked stale, and refresh in the background
	backoff              // serve, marked stale: the last load failed recently
	expired              // load, and serve the result
)

func (e *entry) state(now int64) state {
	if now < e.freshUntil && e.floor <= e.version {
		return fresh
	}
	failed := e.failed()
	recentFailure := failed != 0 && now-failed < e.freshUntil-e.checked
	retry := outdatedRetry
	if e.behind() {
		retry = behindRetry
	}
	switch {
	case recentFailure && e.floor > e.version && now-failed >= int64(retry):
		return stale // known outdated: retry in the background, still answer at once
	case recentFailure:
		return backoff
	case e.floor > e.version:
		return expired // a newer version is known to exist: wait for it
	case now < e.staleUntil():
		return stale
	}
	return expired
}

// answer turns a held entry into what Get returns.
func (e *entry) answer(now int64, st state) (Entry, error) {
	ent := Entry{Record: e.record(), Stale: st != fresh, Age: time.Duration(now - e.checked)}
	if nf := e.notFound(); nf != nil {
		return ent, nf
	}
	return ent, nil
}
