package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/record"
)

// Errors that end a resumable watch (WatchStream.Err) or refuse one.
var (
	// ErrWatchLagged ends a watch whose reader fell a whole buffer
	// (WatchOptions.Buffer) of changes behind: nothing is dropped
	// silently; the reader resumes with WatchFrom from the Cursor of the
	// last event it took.
	ErrWatchLagged = errors.New("dataplane: watch reader fell behind its buffer; resume from its last cursor")
	// ErrWatchIncomplete refuses a resumable watch of a namespace the node
	// does not hold whole (Config.Namespaces), or not yet (still warming
	// or catching up with the change log: retry).
	ErrWatchIncomplete = errors.New("dataplane: namespace not held whole by this node (yet): cannot replay its history")
	// ErrClosed ends a watch when its node closes.
	ErrClosed = errors.New("dataplane: node closed")
	// ErrCursorAhead refuses a resumable watch from a cursor no node
	// could have reached: its time is further ahead of this node's clock
	// than the largest skew any version is accepted with (cache.Options
	// and gossip.Config MaxFutureSkew), so no change this node applies
	// could ever pass it and the watch would stay silent for good. The
	// client lost its cursor (or made one up): re-list from 0.
	ErrCursorAhead = errors.New("dataplane: watch cursor is ahead of any version a node accepts; re-list from 0")
	// ErrWatchTTLOnly refuses a resumable watch on a TTL-only node
	// (Config.Gossip nil): it follows the change log but never holds a
	// namespace whole, so it has no history to replay and retrying cannot
	// help; watch a node that gossips.
	ErrWatchTTLOnly = errors.New("dataplane: a TTL-only node holds no namespace whole: cannot watch from a cursor")
)

// WatchOptions tunes WatchFrom.
type WatchOptions struct {
	// Progress is how often a progress event (a heartbeat carrying the
	// current Cursor) is sent. Default 1s.
	Progress time.Duration
	// Buffer is how many live changes may wait for the reader before the
	// watch ends with ErrWatchLagged. Default 4096.
	Buffer int
}

// WatchEvent is one event of a resumable watch.
type WatchEvent struct {
	// Change is the change (no value travels: read it with Get). Empty in
	// a progress event.
	Change record.Change
	// Progress marks an event that carries only Cursor: a heartbeat.
	Progress bool
	// Cursor is where to resume after this event: every change of the
	// namespace with a version up to Cursor has been delivered, by this
	// watch (before this event) or before the cursor it resumed from.
	// Changes are not delivered in global version order (each key's are),
	// so resume from Cursor, not from the last change's version.
	Cursor record.Version
}

// WatchStream is a resumable watch; read C until it is closed, then Err
// says why.
type WatchStream struct {
	// C delivers the events. It is closed when the watch ends.
	C <-chan WatchEvent

	err    error // set before C is closed
	cancel context.CancelFunc
}

// Err returns why the watch ended: ErrWatchLagged, ErrClosed, or the
// context's error (context.Canceled after Stop). Call it after C is closed.
func (s *WatchStream) Err() error { return s.err }

// Stop ends the watch; C is closed soon after. Safe to call more than once.
func (s *WatchStream) Stop() { s.cancel() }

// WatchFrom watches namespace ns from a version cursor, like an xDS or
// NATS KV watch: it first delivers every key whose latest known version is
// after `after` (0: the whole namespace), in ascending version order, then
// the live changes as the node applies them, each key's in increasing
// version order, never a (key, version) twice, and every WatchOptions.
// Progress a progress event whose Cursor the caller resumes from.
//
// History comes from the node's version index, so ns must be held whole
// (Config.Namespaces) and complete, or WatchFrom returns
// ErrWatchIncomplete. The replay is coalesced: a key changed several times
// after the cursor is delivered once, at its latest version (a deletion as
// a tombstone). Deletions whose tombstones were dropped (after the origin's
// tombstone horizon) are not replayed, so a cursor older than that horizon
// should re-list instead.
//
// The live subscription starts before the index is read, so a change
// applied during the replay is either in it or delivered after it, and
// duplicates are filtered by (key, version). A reader that falls
// WatchOptions.Buffer changes behind ends the watch with ErrWatchLagged,
// never a silent drop. The watch ends when ctx ends, on Stop, or when the
// node closes. It remembers the last version delivered of each key it has
// delivered, to filter duplicates.
//
// A cursor ahead of what this node has applied (one saved from a node
// further along, or a node that lags) is accepted: the watch delivers
// only changes after it, so it is silent, its progress events carrying
// the cursor unchanged, until the node reaches the cursor. A cursor no
// node could have reached, further ahead of this node's clock than
// MaxFutureSkew (the largest a node accepts a version with), is refused
// with ErrCursorAhead. On a TTL-only node, which never holds a namespace
// whole, WatchFrom returns ErrWatchTTLOnly.
//
// A progress Cursor is the node's change-log position (every change up to
// it has been applied: see Node.LogCursor) less LogSettle, so that a change
// still being applied by another path is never behind it.
func (n *Node) WatchFrom(ctx context.Context, ns string, after record.Version, opts WatchOptions) (*WatchStream, error) {
	if err := record.ValidateNamespace(ns); err != nil {
		return nil, fmt.Errorf("dataplane: watch: %w", err)
	}
	if opts.Progress <= 0 {
		opts.Progress = time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 4096
	}
	if limit := n.cursorLimit(); after > limit {
		return nil, fmt.Errorf("%w: cursor %s, this node accepts no version after %s", ErrCursorAhead, after, limit)
	}
	if !slices.Contains(n.cfg.Namespaces, ns) {
		return nil, fmt.Errorf("%w: %s", ErrWatchIncomplete, ns)
	}
	if !n.cache.IsComplete(ns) {
		if n.gossip == nil {
			return nil, fmt.Errorf("%w: %s", ErrWatchTTLOnly, ns)
		}
		return nil, fmt.Errorf("%w: %s", ErrWatchIncomplete, ns)
	}
	// Subscribe first, then read the index: a change applied in between is
	// in both, and filtered below.
	w := &watcher{ch: make(chan record.Change, opts.Buffer), lossless: true}
	n.watchMu.Lock()
	if n.watchers == nil {
		n.watchMu.Unlock()
		return nil, ErrClosed
	}
	if n.watchers[ns] == nil {
		n.watchers[ns] = make(map[*watcher]struct{})
	}
	n.watchers[ns][w] = struct{}{}
	n.watchMu.Unlock()

	var replay []record.Change
	for c := range n.cache.Index(ns) {
		if c.Version > after {
			replay = append(replay, c)
		}
	}
	slices.SortFunc(replay, func(a, b record.Change) int {
		return cmp.Or(cmp.Compare(a.Version, b.Version), cmp.Compare(a.Key, b.Key))
	})

	ctx, cancel := context.WithCancel(ctx)
	out := make(chan WatchEvent, 64)
	s := &WatchStream{C: out, cancel: cancel}
	go func() {
		defer close(out)
		defer cancel()
		defer n.unwatch(ns, w)
		s.err = n.forward(ctx, ns, w, after, replay, opts.Progress, out)
	}()
	return s, nil
}

// cursorLimit is the highest version this node (or one whose clock agrees
// with it) could ever have applied by now: its clock plus the largest
// future skew its cache or gossip accept a version with.
func (n *Node) cursorLimit() record.Version {
	skew := max(cache.DefaultMaxFutureSkew, n.cfg.Timing.MaxFutureSkew())
	now := time.Now
	if n.cfg.Now != nil {
		now = n.cfg.Now
	}
	return record.MakeVersion(now().Add(skew), 1<<16-1)
}

// forward runs a resumable watch: the replay, then live changes and
// progress events, until the watch ends; it returns why.
func (n *Node) forward(ctx context.Context, ns string, w *watcher, after record.Version, replay []record.Change, every time.Duration, out chan<- WatchEvent) error {
	cursor := after
	last := make(map[string]record.Version, len(replay))
	send := func(ev WatchEvent) error {
		select {
		case out <- ev:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return ErrClosed
		}
	}
	for _, c := range replay {
		last[c.Key] = c.Version
		if err := send(WatchEvent{Change: c, Cursor: cursor}); err != nil {
			return err
		}
	}
	n.mark(ns, w) // a first cursor right after the replay
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case c, ok := <-w.ch:
			if !ok {
				if w.lagged.Load() {
					return ErrWatchLagged
				}
				return ErrClosed
			}
			if c.Key == "" { // a progress mark
				cursor = max(cursor, c.Version)
				if err := send(WatchEvent{Progress: true, Cursor: cursor}); err != nil {
					return err
				}
				continue
			}
			if c.Version <= after || c.Version <= last[c.Key] {
				continue // replayed already, or older than the cursor
			}
			last[c.Key] = c.Version
			if err := send(WatchEvent{Change: c, Cursor: cursor}); err != nil {
				return err
			}
		case <-t.C:
			n.mark(ns, w)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return ErrClosed
		}
	}
}

// mark queues a progress mark (a change with no key) carrying the safe
// cursor behind every change w has been handed so far.
func (n *Node) mark(ns string, w *watcher) {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if _, ok := n.watchers[ns][w]; !ok {
		return
	}
	// Read under watchMu: every change applied before this point has been
	// handed to w (notify holds watchMu).
	cur := n.follower.Cursor()
	if cur == 0 {
		return
	}
	safe := record.MakeVersion(cur.Time().Add(-n.follower.Settle()), 0)
	n.sendLocked(w, record.Change{Namespace: ns, Version: safe})
}

// unwatch removes w, if still registered, and closes its channel.
func (n *Node) unwatch(ns string, w *watcher) {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if _, ok := n.watchers[ns][w]; ok {
		delete(n.watchers[ns], w)
		close(w.ch)
	}
}
