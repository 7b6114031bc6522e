package cachenode

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// logTail shares the node's change-log reads among its readers: every
// sentinel of a region polls the log every LogInterval, each from its own
// cursor, and without sharing each poll is one origin log read.
//
// It keeps the last origin read (in flight or done): its `after`, when it
// started and what it returned. A request for changes after Y is answered
// from it when the read started at most ttl ago and Y >= its after (the
// changes above Y are then a contiguous part of what it read): a request
// arriving while the read is in flight waits for it (singleflight); one
// arriving after it is answered from memory. Otherwise the request starts a
// new origin read, from min(Y, now - span), so that readers whose cursors
// are a little behind Y are answered from it too.
//
// A read from below Y fills its page (wire.MaxLogPage changes) before Y's
// page would end when the span holds a page of changes below Y (after a
// burst, or at 100 changes/s with the default span). Two rules keep that
// from costing more than sharing saves (TestLogTailCost):
//   - The request it fell short for starts a read from its own cursor, which
//     answers it and those at or above it, instead of each of them reading
//     the origin alone.
//   - The floor is dense up to that page's last version: until now - span
//     passes it, reads start at the request's cursor, not the floor. A read
//     from the floor is thus wasted about once per page of changes (twice
//     when a floor read outlasts ttl and another starts).
//
// An answer is at most ttl older than the request, as if the origin's log
// trailed by ttl: readers count ttl in origin.Timing.ReplicaLag.
type logTail struct {
	ttl  time.Duration // <= 0: every request reads the origin itself
	span time.Duration // how far below now a shared read starts
	page int           // changes asked of the origin per shared read
	wait time.Duration // bounds each shared read (originTimeout)
	now  func() time.Time
	read func(ctx context.Context, after record.Version, limit int) ([]record.Change, error)

	mu    sync.Mutex
	cur   *logRead       // the last shared read; nil after a write through the node
	dense record.Version // the end of the last full page a floor read fell short with

	origin atomic.Int64 // origin log reads made
	shared atomic.Int64 // requests answered by another request's read
}

// logRead is one origin log read that requests may share.
type logRead struct {
	after record.Version
	floor bool // after is the span's floor, below the cursor that started it
	start time.Time
	done  chan struct{} // closed when changes and err are set
	cs    []record.Change
	err   error
}

// usable reports whether a request for changes after `after` at now may be
// answered by r.
func (t *logTail) usable(r *logRead, after record.Version, now time.Time) bool {
	return r != nil && after >= r.after && now.Sub(r.start) <= t.ttl
}

// get returns up to limit changes after `after`, in version order, and
// whether the answer came from a read another request made.
func (t *logTail) get(ctx context.Context, after record.Version, limit int) ([]record.Change, bool, error) {
	if t.ttl <= 0 {
		return t.direct(ctx, after, limit)
	}
	now := t.now()
	t.mu.Lock()
	r := t.cur
	joined := t.usable(r, after, now)
	if !joined {
		r = t.start(after, now, true)
	}
	t.mu.Unlock()
	cs, short, err := t.answer(ctx, r, after, limit)
	if short {
		// r's page ended before this request's would: its answer would be
		// short, which a reader takes for the log's end. Read from this
		// request's cursor, shared with requests at or above it (one may
		// have started that read already).
		now = t.now()
		t.mu.Lock()
		if r.floor {
			t.dense = max(t.dense, r.cs[len(r.cs)-1].Version)
		}
		prev := r
		r = t.cur
		joined = r != prev && t.usable(r, after, now) && !r.floor
		if !joined {
			r = t.start(after, now, false)
		}
		t.mu.Unlock()
		cs, short, err = t.answer(ctx, r, after, limit)
		if short { // only a joined read can be short here
			return t.direct(ctx, after, limit)
		}
	}
	if err != nil {
		if errors.Is(err, origin.ErrLogTruncated) && r.after < after {
			// Trimmed below the shared read's start, which may not
			// concern this request's range.
			return t.direct(ctx, after, limit)
		}
		return nil, joined, err
	}
	if joined {
		t.shared.Add(1)
	}
	return cs, joined, nil
}

// start begins a shared read for a request after `after` at now, from the
// span's floor when below `after`, allowed and not dense, and holds it as
// t.cur. t.mu is held.
func (t *logTail) start(after record.Version, now time.Time, fromFloor bool) *logRead {
	r := &logRead{after: after, start: now, done: make(chan struct{})}
	if floor := record.MakeVersion(now.Add(-t.span), 0); fromFloor && floor < after && floor >= t.dense {
		r.after, r.floor = floor, true
	}
	t.cur = r
	go t.fill(r) // not bound to this request: others may wait for it
	return r
}

// answer waits for r and returns its changes after `after`, at most limit,
// or short when r's page ended before this request's page would.
func (t *logTail) answer(ctx context.Context, r *logRead, after record.Version, limit int) (cs []record.Change, short bool, err error) {
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if r.err != nil {
		return nil, false, r.err
	}
	// The changes above `after`, contiguous in r.cs.
	i := 0
	for i < len(r.cs) && r.cs[i].Version <= after {
		i++
	}
	cs = r.cs[i:]
	complete := len(r.cs) < t.page // r read to the end of the log
	if !complete && len(cs) < limit {
		return nil, true, nil
	}
	if len(cs) > limit {
		cs = cs[:limit]
	}
	return cs, false, nil
}

// fill makes r's origin read. It is bounded by its own timeout, not by the
// request that started it.
func (t *logTail) fill(r *logRead) {
	ctx, cancel := context.WithTimeout(context.Background(), t.wait)
	defer cancel()
	t.origin.Add(1)
	r.cs, r.err = t.read(ctx, r.after, t.page)
	if r.err == nil && len(r.cs) > t.page { // a store that ignores limit
		r.cs = r.cs[:t.page]
	}
	if r.err != nil {
		// A failed read is shared with those already waiting, not with
		// later requests: they try the origin again.
		t.forget(r)
	}
	close(r.done)
}

// direct reads the origin for one request alone.
func (t *logTail) direct(ctx context.Context, after record.Version, limit int) ([]record.Change, bool, error) {
	t.origin.Add(1)
	cs, err := t.read(ctx, after, limit)
	return cs, false, err
}

// forget drops r (nil: whatever is held) so that the next request reads the
// origin: after an append or trim through this node, whose writer expects
// to read it back.
func (t *logTail) forget(r *logRead) {
	t.mu.Lock()
	if r == nil || t.cur == r {
		t.cur = nil
	}
	t.mu.Unlock()
}
