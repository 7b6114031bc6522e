package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/maypok86/otter/v2"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// maxAttempts bounds the origin reads of one load: a read that returns an
// older version than an invalidation named (the origin, or a cache tier in
// front of it, had not caught up yet) is retried once before it is installed
// as stale.
const maxAttempts = 2

// load is the body of every flight of k: it brings k up to date from the
// loader and installs the result. It returns the entry to serve, or an error
// when the origin failed and nothing is held. It never panics.
func (c *Cache) load(k key, sp *space) (*entry, error) {
	// From here on, an Invalidate of k raises pending[k], which the
	// install below respects: registering before reading what is held
	// leaves no gap in which an invalidation could be missed.
	c.pendingMu.Lock()
	c.pending[k] = 0
	c.pendingMu.Unlock()

	// Check the cache again inside the flight. Singleflight merges only
	// calls that overlap: a reader that found k expired just before another
	// flight of k finished would otherwise start a second origin read for a
	// value that is now fresh (or whose load just failed and is backing
	// off). This is what makes concurrent misses cost one read.
	held := c.peek(k)
	if held != nil {
		if st := held.state(c.now()); st == fresh || st == backoff {
			c.pendingMu.Lock()
			delete(c.pending, k)
			c.pendingMu.Unlock()
			return held, nil
		}
	}

	ctx, cancel := context.WithTimeout(c.ctx, c.opts.RefreshTimeout)
	defer cancel()
	best := held // the newest answer so far; a new pointer once a read succeeded
	var err error
	for range maxAttempts {
		var got *entry
		got, err = c.fetch(ctx, k, sp, best)
		if err != nil {
			break
		}
		best = got
		if best.version >= c.floor(k, sp, held) {
			break
		}
	}
	if best != held {
		// At least one read succeeded: install what it brought, even if
		// a later attempt failed, unless it is older than a version this
		// node knows and nothing was served before (after an eviction, or
		// a not-found): serving it would go back in time.
		floor := c.floor(k, sp, held)
		staleBelow, refuseBelow := c.uncertain(k, sp)
		if best.version < max(floor, refuseBelow) && !best.tombstone && (held == nil || held.negative()) {
			sp.behind.Inc()
			err = fmt.Errorf("origin answered version %s of %s/%s, but version %s is known: %w", best.version, k.ns, k.key, max(floor, refuseBelow), origin.ErrUnavailable)
			return c.failed(k, held, err)
		}
		if best.version < staleBelow {
			// A floor of this key may have been forgotten: serve the
			// answer, but never as fresh (see Options.MaxFloors).
			best.freshUntil = best.checked
		}
		if best.version < floor {
			// The origin is behind a version this node knows (a replica
			// that has not caught up): the answer is served stale, and
			// the key is retried in the background after behindRetry
			// rather than by every read waiting on the origin again.
			best.setFailed(best.checked, true)
		}
		return c.install(k, best, true), nil
	}
	return c.failed(k, held, err)
}

// uncertain returns the conservative floors of k, a key of a partial
// namespace that the index no longer knows (see floors.uncertain); zeros
// for a key it knows or a complete namespace.
func (c *Cache) uncertain(k key, sp *space) (stale, deleted record.Version) {
	if sp.idx != nil {
		return 0, 0
	}
	if _, _, ok := c.known(k, sp); ok {
		return 0, 0
	}
	return c.floors.uncertain(k)
}

// peek returns the entry held for k (a value, a tombstone or a not-found),
// without side effects.
func (c *Cache) peek(k key) *entry {
	if e, ok := c.store.GetEntryQuietly(k); ok {
		return e.Value
	}
	if e, ok := c.neg.GetEntryQuietly(k); ok {
		return e.Value
	}
	return nil
}

// floor returns the highest version known to exist for k while it loads:
// named by an invalidation during the load, on the held entry, or in the
// version index.
func (c *Cache) floor(k key, sp *space, held *entry) record.Version {
	c.pendingMu.Lock()
	f := c.pending[k]
	c.pendingMu.Unlock()
	if held != nil {
		f = max(f, held.floor)
	}
	if v, _, ok := c.known(k, sp); ok {
		f = max(f, v)
	}
	return f
}

// fetch makes one origin read of k, conditional on the version of have, and
// returns the entry it yields (not yet stored), or an error for a failed read.
func (c *Cache) fetch(ctx context.Context, k key, sp *space, have *entry) (*entry, error) {
	var ifNewer record.Version
	if have != nil {
		ifNewer = have.version
	}
	select {
	case c.loads <- struct{}{}:
	case <-ctx.Done():
		sp.originErrors.Inc()
		return nil, fmt.Errorf("waiting for one of %d origin read slots (Options.MaxLoads): %w", cap(c.loads), ctx.Err())
	}
	sp.originReads.Inc()
	rec, err := c.call(ctx, k, ifNewer)
	<-c.loads
	now := c.now()
	switch {
	case err == nil:
		if err = checkLoaded(k, rec); err != nil {
			break
		}
		if c.refuseFuture(k.ns, k.key, rec.Version) {
			err = fmt.Errorf("%w: origin answered %s/%s with version %s, more than %v ahead of this node's clock", record.ErrInvalid, k.ns, k.key, rec.Version, c.opts.MaxFutureSkew)
			break
		}
		if err = c.refuseUnsigned(rec); err != nil {
			err = fmt.Errorf("origin answered %s/%s with a record refused: %w", k.ns, k.key, err)
			break
		}
		if have == nil || rec.Version > have.version {
			return newEntry(rec, sp, now), nil
		}
		if rec.Version < have.version {
			err = fmt.Errorf("loader returned version %s of %s/%s when asked for one newer than %s", rec.Version, k.ns, k.key, have.version)
			break
		}
		// The same version again, from a loader that ignores ifNewer:
		// as good as not modified.
		fallthrough
	case errors.Is(err, origin.ErrNotModified):
		if have == nil {
			err = fmt.Errorf("loader answered %s/%s with %w to an unconditional read", k.ns, k.key, err)
			break
		}
		sp.revalidations.Inc()
		n := have.clone()
		n.confirm(now)
		return n, nil
	case errors.Is(err, origin.ErrNotFound):
		if have != nil && have.version > 0 {
			// Deletes are tombstones, so an origin that has never heard
			// of a version we hold is behind us (a cold cache tier, a
			// restored bucket): keep serving what we have, stale.
			err = fmt.Errorf("origin has no %s/%s but version %s is held: %w", k.ns, k.key, have.version, err)
			break
		}
		return newEntry(record.Record{Namespace: k.ns, Key: k.key, Tombstone: true}, sp, now), nil
	}
	sp.originErrors.Inc()
	return nil, err
}

// checkLoaded rejects a record the loader should not have returned, so a
// faulty origin cannot corrupt the cache.
func checkLoaded(k key, rec record.Record) error {
	if rec.Namespace != k.ns || rec.Key != k.key {
		return fmt.Errorf("%w: loader returned %s/%s for %s/%s", record.ErrInvalid, rec.Namespace, rec.Key, k.ns, k.key)
	}
	return rec.Validate()
}

// call runs the loader, turning a panic into an error.
func (c *Cache) call(ctx context.Context, k key, ifNewer record.Version) (rec record.Record, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s/%s: %v", ErrLoaderPanic, k.ns, k.key, p)
			c.log.Error("loader panicked", "namespace", k.ns, "key", k.key, "panic", p)
		}
	}()
	return c.loader.Get(ctx, k.ns, k.key, ifNewer)
}

// install stores n for k unless a newer version is held (an Apply or another
// load got there first), keeping the highest known floor, and returns the
// entry now held. An equal version replaces the held one only if
// replaceEqual (a confirmation from the origin). If done, it also ends k's
// load, in the same critical section, so an Invalidate sees either the load
// or its result.
func (c *Cache) install(k key, n *entry, done bool) *entry {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	floor, _ := c.pending[k]
	if done {
		delete(c.pending, k)
	}
	// n is not shared yet, so it may be modified until it is stored.
	n.floor = max(n.floor, floor)
	if kv, ktomb, ok := c.known(k, n.space); ok && !n.negative() {
		older := kv > n.version || kv == n.version && ktomb && !n.tombstone
		if older && !done {
			// An Apply of a version the index already knows to be
			// outdated (its value may have been evicted meanwhile).
			return c.peek(k)
		}
		n.floor = max(n.floor, kv)
	}
	keep := func(cur *entry, found bool) (*entry, otter.ComputeOp) {
		if found && (cur.version > n.version || cur.version == n.version && !done) {
			return cur, otter.CancelOp
		}
		if found {
			n.floor = max(n.floor, cur.floor)
		}
		return n.ready(), otter.WriteOp
	}
	if n.negative() {
		// Not-founds live apart, so that they push out only each other.
		if cur := c.peekValue(k); cur != nil {
			return cur // a value or tombstone arrived meanwhile
		}
		got, _ := c.neg.Compute(k, keep)
		return got
	}
	sp := n.space
	c.learn(k, sp, n.version, n.tombstone)
	got, _ := c.store.Compute(k, keep)
	c.neg.Invalidate(k)
	return got
}

// peekValue returns the value or tombstone held for k, if any.
func (c *Cache) peekValue(k key) *entry {
	if e, ok := c.store.GetEntryQuietly(k); ok {
		return e.Value
	}
	return nil
}

// failed ends k's load after the origin failed with err: it remembers the
// failure on the held entry (so reads back off instead of each waiting for
// the origin) and returns that entry to serve stale, or err if none is held.
func (c *Cache) failed(k key, held *entry, err error) (*entry, error) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	delete(c.pending, k)
	if held == nil {
		return nil, fmt.Errorf("cache: load %s/%s: %w", k.ns, k.key, err)
	}
	c.log.Warn("origin read failed; serving stale", "namespace", k.ns, "key", k.key, "version", held.version, "err", err)
	now := c.now()
	st := c.store
	if held.negative() {
		st = c.neg
	}
	got, ok := st.ComputeIfPresent(k, func(cur *entry) (*entry, otter.ComputeOp) {
		if cur != held {
			return cur, otter.CancelOp // changed meanwhile: keep the news
		}
		n := cur.clone()
		n.setFailed(now, false)
		return n.ready(), otter.WriteOp
	})
	if !ok {
		return held, nil // evicted meanwhile; serve it this once
	}
	return got, nil
}
