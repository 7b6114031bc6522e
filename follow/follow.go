package gossip

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

var errUnexpectedDigest = errors.New("digest where a change message was expected")

// logLoop reads the origin's change log every LogInterval and whenever a
// trigger asks (start with Resume, a member rejoining, a digest showing a
// gap).
func (n *Node) logLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.LogInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.catchUp("interval")
		case why := <-n.catchup:
			n.catchUp(why)
		}
	}
}

// catchUp reads every change appended to the log after the node's cursor
// and applies those it lacks (as invalidations: the log carries no values;
// tombstones are complete and applied as such).
//
// The cursor means "every change at or below this version is known". A read
// at wall time T that returned everything after the cursor proves that for
// versions up to T-LogSettle: anything older was appended by then (LogSettle
// bounds how long a publisher takes from taking a version to appending it,
// clock skew included). So the cursor advances to T-LogSettle, never to the
// newest version read, and rereads of the settle window are filtered as
// duplicates.
//
// If the log was trimmed past the cursor, the node cannot name what it
// missed: it asks the Applier to revalidate everything, and restarts from T.
func (n *Node) catchUp(trigger string) {
	ctx, cancel := context.WithTimeout(context.Background(), logReadTimeout)
	defer cancel()
	go func() { // stop a read in flight on Close
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	readAt := n.cfg.Now()
	after := n.LogCursor()
	start := after
	recovered := false
	repaired := 0
	for {
		cs, err := n.log.ReadLog(ctx, after, n.cfg.LogBatch)
		if errors.Is(err, origin.ErrLogTruncated) {
			n.m.catchups.WithLabelValues(trigger, "truncated").Inc()
			if n.revalidatedAt != 0 && after == n.revalidatedAt {
				// Truncated again right after a revalidation: the log was
				// trimmed within LogSettle of now. Everything was just
				// revalidated, so jump to now rather than loop.
				n.logger.Warn("gossip change log trimmed within LogSettle of now; trim less aggressively", "after", after, "settle", n.cfg.LogSettle)
				n.advanceCursor(record.MakeVersion(readAt, 0))
				return
			}
			if !recovered {
				if v, ok := n.recover(ctx, after, err); ok {
					// Reloaded from snapshots: read the log from there
					// (once: a log trimmed past the snapshots too is
					// revalidated below).
					recovered = true
					n.advanceCursor(v)
					start, after = v, v
					continue
				}
			}
			n.revalidateAll(after, err)
			n.revalidatedAt = record.MakeVersion(readAt.Add(-n.cfg.LogSettle), 0)
			n.advanceCursor(n.revalidatedAt)
			return
		}
		if err != nil {
			n.m.catchups.WithLabelValues(trigger, "error").Inc()
			n.logger.Warn("gossip log catch-up failed; will retry", "trigger", trigger, "after", after, "err", err)
			return
		}
		for _, ch := range cs {
			c := change{
				rec:    record.Record{Namespace: ch.Namespace, Key: ch.Key, Version: ch.Version, Tombstone: ch.Tombstone, Seal: ch.Seal},
				inline: ch.Tombstone,
				path:   pathLog,
			}
			if c.rec.Validate() != nil { // a store bug; never let it reach the cache
				n.m.dropped.WithLabelValues("malformed").Inc()
				continue
			}
			if n.receive(c) == fresh {
				repaired++
			}
		}
		if len(cs) < n.cfg.LogBatch {
			break
		}
		// Next page. Step back one version unless the whole page is one
		// version, so that other keys sharing the last version are not
		// skipped; the repeats are filtered as duplicates.
		last := cs[len(cs)-1].Version
		if cs[0].Version != last {
			last--
		}
		after = last
	}
	n.m.catchups.WithLabelValues(trigger, "ok").Inc()
	if repaired > 0 {
		n.m.repairs.WithLabelValues("log").Add(float64(repaired))
		n.logger.Info("gossip log catch-up repaired missed changes", "trigger", trigger, "changes", repaired)
	}
	n.advanceCursor(record.MakeVersion(readAt.Add(-n.cfg.LogSettle), 0))
	if f, ok := n.applier.(Follower); ok {
		f.CaughtUp(start, n.LogCursor())
	}
}

// recover asks a Recoverer applier to reload from snapshots after the log
// was trimmed past after; ok reports that it did, and v is where to read
// the log from.
func (n *Node) recover(ctx context.Context, after record.Version, cause error) (v record.Version, ok bool) {
	rc, isRC := n.applier.(Recoverer)
	if !isRC {
		return 0, false
	}
	defer func() {
		if r := recover(); r != nil {
			n.m.panics.Inc()
			n.logger.Error("gossip applier panicked in Recover", "panic", r)
			ok = false
		}
	}()
	n.logger.Warn("gossip missed more changes than the log holds; reloading from snapshots", "after", after, "err", cause)
	v, err := rc.Recover(ctx)
	if err != nil {
		n.logger.Warn("reload from snapshots failed; revalidating instead", "err", err)
		return 0, false
	}
	if v <= after {
		// A snapshot no newer than the cursor cannot cover the gap.
		n.logger.Warn("snapshots older than the log position; revalidating instead", "snapshot", v, "after", after)
		return 0, false
	}
	n.m.catchups.WithLabelValues("recover", "ok").Inc()
	return v, true
}

// Rewind moves the log cursor back to v, if it is past it, and reads the log
// from there at once: for an Applier that (re)loaded its state as of v
// after the node started (a warm-up that succeeded late).
func (n *Node) Rewind(v record.Version) {
	for {
		cur := n.cursor.Load()
		if uint64(v) >= cur || n.cursor.CompareAndSwap(cur, uint64(v)) {
			break
		}
	}
	n.triggerCatchUp("rewind")
}

func (n *Node) advanceCursor(v record.Version) {
	for {
		cur := n.cursor.Load()
		if uint64(v) <= cur || n.cursor.CompareAndSwap(cur, uint64(v)) {
			return
		}
	}
}

// revalidateAll handles a log trimmed past the cursor.
func (n *Node) revalidateAll(after record.Version, err error) {
	n.m.revalid.Inc()
	rv, ok := n.applier.(Revalidator)
	if !ok {
		n.logger.Error("gossip missed more changes than the log holds, and the applier cannot revalidate", "after", after, "err", err)
		return
	}
	n.logger.Warn("gossip missed more changes than the log holds; revalidating everything", "after", after, "err", err)
	defer func() {
		if r := recover(); r != nil {
			n.m.panics.Inc()
			n.logger.Error("gossip applier panicked in RevalidateAll", "panic", r)
		}
	}()
	rv.RevalidateAll()
}

// reconnectLoop retries the seeds while the node is alone, and a random lost
// member each ReconnectInterval, so that a healed partition rejoins even
// after memberlist stopped gossiping to the dead.
func (n *Node) reconnectLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.reconnect()
		}
	}
}

func (n *Node) reconnect() {
	ml := n.ml.Load()
	if n.numAlive.Load() <= 1 && len(n.cfg.Seeds) > 0 {
		n.tryJoin(n.cfg.Seeds)
		return
	}
	now := n.cfg.Now()
	var addrs []string
	n.membersMu.Lock()
	for name, l := range n.lost {
		if now.Sub(l.since) > n.cfg.ReconnectTimeout {
			delete(n.lost, name)
			continue
		}
		addrs = append(addrs, l.addr)
	}
	n.updateMembersLocked()
	n.membersMu.Unlock()
	if len(addrs) == 0 || ml == nil {
		return
	}
	n.tryJoin([]string{addrs[rand.IntN(len(addrs))]})
}

func (n *Node) tryJoin(addrs []string) {
	select {
	case <-n.stop:
		return
	default:
	}
	if _, err := n.ml.Load().Join(addrs); err != nil {
		n.m.reconnect.WithLabelValues("error").Inc()
		n.logger.Debug("gossip reconnect failed", "addrs", addrs, "err", err)
		return
	}
	n.m.reconnect.WithLabelValues("ok").Inc()
}
