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
// An answer is at most ttl older than the request, as if the origin's log
// trailed by ttl: readers count ttl in origin.Timing.ReplicaLag.
type logTail struct {
	ttl  time.Duration // <= 0: every request reads the origin itself
	span time.Duration // how far below now a shared read starts
	page int           // changes asked of the origin per shared read
	wait time.Duration // bounds each shared read (Config.OriginTimeout)
	now  func() time.Time
	read func(ctx context.Context, after record.Version, limit int) ([]record.Change, error)

	mu  sync.Mutex
	cur *logRead // the last shared read; nil after a write through the node

	origin atomic.Int64 // origin log reads made
	shared atomic.Int64 // requests answered by another request's read
}

// logRead is one origin log read that requests may share.
type logRead struct {
	after record.Version
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
		from := after
		if floor := record.MakeVersion(now.Add(-t.span), 0); floor < from {
			from = floor
		}
		r = &logRead{after: from, start: now, done: make(chan struct{})}
		t.cur = r
		go t.fill(r) // not bound to this request: others may wait for it
	}
	t.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if r.err != nil {
		if errors.Is(r.err, origin.ErrLogTruncated) && r.after < after {
			// Trimmed below the shared read's start, which may not
			// concern this request's range.
			return t.direct(ctx, after, limit)
		}
		return nil, joined, r.err
	}
	// The changes above `after`, contiguous in r.cs.
	i := 0
	for i < len(r.cs) && r.cs[i].Version <= after {
		i++
	}
	cs := r.cs[i:]
	complete := len(r.cs) < t.page // r read to the end of the log
	if !complete && len(cs) < limit {
		// The shared page ended before this request's page would: its
		// answer would be short, which a reader takes for the log's end.
		return t.direct(ctx, after, limit)
	}
	if len(cs) > limit {
		cs = cs[:limit]
	}
	if joined {
		t.shared.Add(1)
	}
	return cs, joined, nil
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
