package dataplane

import (
	"sync/atomic"

	"github.com/dataplane/dataplane/record"
)

// watchBuffer is how many changes a Watch channel holds before changes are
// dropped (and counted) for a slow reader.
const watchBuffer = 1024

type watcher struct {
	ch chan record.Change
	// lossless watchers (WatchFrom) are ended, not dropped from, when
	// their buffer is full: lagged is set and ch closed.
	lossless bool
	lagged   atomic.Bool
}

// Watch returns a channel of the changes this node learns of in namespace
// ns, by gossip or from the change log, in the order it applies them (per
// key, versions never decrease; a version that two paths deliver may come
// twice). A change with an empty value may only
// announce a version: read the key with Get for its value. Callers that
// rebuild state on change (a routing table) read the channel; if they fall
// more than 1024 changes behind, changes are dropped and counted in
// dataplane_node_watch_dropped_total, so a reader that must see everything
// should also re-read periodically. Call cancel to stop; the channel is
// closed then, and when the node closes.
func (n *Node) Watch(ns string) (<-chan record.Change, func()) {
	w := &watcher{ch: make(chan record.Change, watchBuffer)}
	n.watchMu.Lock()
	if n.watchers == nil { // closed
		n.watchMu.Unlock()
		close(w.ch)
		return w.ch, func() {}
	}
	if n.watchers[ns] == nil {
		n.watchers[ns] = make(map[*watcher]struct{})
	}
	n.watchers[ns][w] = struct{}{}
	n.watchMu.Unlock()
	return w.ch, func() { n.unwatch(ns, w) }
}

// notify hands c to the watchers of its namespace without blocking.
func (n *Node) notify(c record.Change) {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	for w := range n.watchers[c.Namespace] {
		n.sendLocked(w, c)
	}
}

// sendLocked hands c to w without blocking; watchMu must be held. A full
// buffer drops c for a plain watcher and ends a lossless one.
func (n *Node) sendLocked(w *watcher, c record.Change) {
	select {
	case w.ch <- c:
		return
	default:
	}
	if !w.lossless {
		n.m.watchDrops.Inc()
		return
	}
	n.m.watchLagged.Inc()
	w.lagged.Store(true)
	delete(n.watchers[c.Namespace], w)
	close(w.ch)
}

func (n *Node) closeWatchers() {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	for _, ws := range n.watchers {
		for w := range ws {
			close(w.ch)
		}
	}
	n.watchers = nil
}
