package dataplane

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/internal/atomicfile"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// trust is the node side of signed checkpoints (package checkpoint,
// DESIGN decision 11), on a node that verifies signatures
// (Config.Verifier), for each namespace it holds whole
// (Config.Namespaces): the node's own state hash, kept in O(1) per change
// it admits, the last checkpoint it verified (the rollback floor, kept
// beside the local snapshot file), and the last one its state matched
// (the only proof of freshness; see freshness).
//
// A namespace is enforced once the node has verified a checkpoint of it
// (or from the start with Config.RequireCheckpoints): from then on, only a
// match proves it current, and a snapshot (origin, local file or peer)
// needs a proof that verifies whole. Before that (a publisher that issues
// no checkpoints), the older rules hold: see freshness.
//
// Where checkpoints come from: the log follower reads the latest of each
// tracked namespace from the origin (checkpoint.GetLatest) before each
// read of the change log and hands it over after the read succeeded, so
// checkpoints travel "with the log" (there is no checkpoint entry in the
// log itself); gossip hands the ones it carries to offerCheckpoint. Both
// go through takeCheckpoint.
//
// What is proven where:
//   - A namespace held whole (Config.Namespaces) on a verifying node, with
//     or without gossip: a match proves the node held, at the checkpoint's
//     version V, exactly the publisher's state (every key, every delete,
//     nothing more), so it is current as of V's time. TTL-only nodes
//     (no gossip) follow the log and read checkpoints the same way and
//     keep their state from the log, so the same holds for them; their
//     misses still read the origin (the namespace is not answered from
//     memory without gossip), and once enforced, an origin read no longer
//     proves a key current either (a bucket writer can serve an old
//     signed record): only a match does.
//   - A namespace held in part (not in Config.Namespaces), on any node:
//     not tracked. A multiset hash proves a whole set, not one member, so
//     a checkpoint proves nothing there about the keys held, about absence
//     or about freshness; each key stays proven by its seal and its
//     version floor, freshness by the older rules (see freshness).
//   - A node without trusted keys: nothing is verified, the older rules
//     hold everywhere.
type trust struct {
	v       *checkpoint.Verifier
	require bool
	log     *slog.Logger
	dir     string // DataDir: where the last checkpoints are kept; "" none
	// spaces is fixed at Open: reads need no lock.
	spaces map[string]*nsTrust
	m      *trustMetrics
	// follower is the node's log follower, stored by Open once follow.New
	// returns it: the follower's loop may hand a checkpoint in before
	// (TakeCheckpoint), so trust reads it here, never Node.follower.
	follower atomic.Pointer[follow.Follower]
}

// nsTrust is one namespace's checkpoint state.
type nsTrust struct {
	ns string
	// enforced: the node verified a checkpoint of ns (or requires them);
	// read without mu by the freshness check.
	enforced atomic.Bool
	// matchedAt is the proof of freshness from the last match: the time
	// of the matched checkpoint's version (every change at or below it
	// is held), Unix ns; 0 never.
	matchedAt atomic.Int64

	// mu guards the fields below: the state is changed by every admitted
	// change of ns (under its key's admit stripe, then mu) and read by
	// checkpoint matches.
	mu sync.Mutex
	// st is the node's state of ns; nil until the namespace was loaded
	// (warm-up) or when it cannot be known (see rebuild).
	st *checkpoint.State
	// last is the newest checkpoint verified (persisted as the rollback
	// floor); matched the newest the state matched.
	last, matched *checkpoint.Checkpoint
	// pending is a verified checkpoint newer than matched, not matched
	// yet: waiting for the log to cover its version, or for the read a
	// mismatch asked for (retried set).
	pending *checkpoint.Checkpoint
	retried bool
	// gaveUp is the checkpoint still not matched after a log read: not
	// taken again from the log's rereads of the latest (no log line per
	// read), retried when the state is reloaded (setState).
	gaveUp *checkpoint.Checkpoint
	// lastResync is when the state was last reloaded after a mismatch
	// (see resync); resyncing says one is under way. resyncGap is the
	// least time from lastResync to the next reload (0: resyncRetry).
	lastResync time.Time
	resyncing  bool
	resyncGap  time.Duration
}

func newTrust(cfg Config, settle time.Duration) *trust {
	if cfg.Verifier == nil {
		return &trust{}
	}
	// A checkpoint may be as far ahead of this node's clock as a change
	// it takes (Timing.MaxFutureSkew()): both come from the publisher's
	// clock, and a node that took the changes but refused every
	// checkpoint "from the future" would fail closed for as long as the
	// skew lasts (TestCheckpointSkewCoversRecordSkew).
	skew := cfg.Timing.MaxFutureSkew()
	t := &trust{
		v:       &checkpoint.Verifier{Keys: cfg.Verifier, MaxSkew: max(settle+time.Second, skew)},
		require: cfg.RequireCheckpoints,
		log:     cfg.Logger,
		dir:     cfg.DataDir,
		spaces:  make(map[string]*nsTrust),
	}
	for _, ns := range cfg.Namespaces {
		s := &nsTrust{ns: ns}
		s.enforced.Store(cfg.RequireCheckpoints)
		t.spaces[ns] = s
	}
	t.m = newTrustMetrics(t)
	return t
}

// space returns the tracked namespace ns, or nil.
func (t *trust) space(ns string) *nsTrust { return t.spaces[ns] }

// enforced reports whether ns takes its proofs from checkpoints only.
func (t *trust) enforced(ns string) bool {
	s := t.spaces[ns]
	return s != nil && s.enforced.Load()
}

// digestOf returns the digest of the element c makes: its Seal's, or the
// SHA-256 of the value of rec (nil: the change travelled without it).
func digestOf(c record.Change, rec *record.Record) ([record.SealDigestLen]byte, bool) {
	if c.Seal != nil {
		return c.Seal.Digest, true
	}
	if rec != nil {
		return sha256.Sum256(rec.Value), true
	}
	return [record.SealDigestLen]byte{}, false
}

// admitted applies change c, which the node's version index took or
// already held (by admit, under c's key's stripe), to the namespace's
// state: O(1). A change without its digest (a gossip invalidation
// carries no seal) is left out; the change log brings it with its seal.
func (t *trust) admitted(c record.Change, rec *record.Record) {
	s := t.spaces[c.Namespace]
	if s == nil {
		return
	}
	d, ok := digestOf(c, rec)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.st != nil {
		_, _ = s.st.Apply(statehash.Element{Namespace: c.Namespace, Key: c.Key, Version: c.Version, Tombstone: c.Tombstone, Digest: d})
		if l := s.st.JournalLen(); l > maxJournal && l%4096 == 0 {
			// No match trims it (no checkpoints, or none matching):
			// keep what a checkpoint still unexpired could ask for
			// (checked every 4096 changes: Forget copies the journal).
			s.st.Forget(record.MakeVersion(c.Version.Time().Add(-journalReach), 0))
		}
	}
	s.mu.Unlock()
}

// A state's journal is trimmed by matches (State.Forget at the matched
// version); past maxJournal changes without one, it keeps journalReach
// of them, twice the default checkpoint lifetime.
const (
	maxJournal   = 1 << 16
	journalReach = 10 * time.Minute
)

// errNotTracked names, in offerCheckpoint's refusals, a namespace the
// node does not check checkpoints of (held in part, or not verifying).
var errNotTracked = errors.New("dataplane: namespace not held whole by a verifying node")

// offerCheckpoint takes a checkpoint the node received (raw, as
// checkpoint.Marshal made it) from source (gossip, the log follower):
// verify it against the node's trusted keys and the last one verified for
// its namespace, persist it as the rollback floor, and match the node's
// state at its version. A match proves the namespace current as of the
// checkpoint's version; a mismatch makes the follower read the log at
// once and the match is tried again after that read; a checkpoint whose
// version the node's log reads have not reached is held until they do.
// It returns the refusal (wrapping the checkpoint package's errors), or
// nil for a checkpoint verified (matched or not: a mismatch is the node's
// own gap, not the checkpoint's fault).
func (n *Node) offerCheckpoint(raw []byte, source string) error {
	c, err := checkpoint.Unmarshal(raw)
	if err != nil {
		if n.trust.m != nil {
			n.trust.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
		}
		return fmt.Errorf("dataplane: checkpoint from %s: %w", source, err)
	}
	return n.takeCheckpoint(c, source)
}

// takeCheckpoint is offerCheckpoint for a decoded checkpoint.
func (n *Node) takeCheckpoint(c *checkpoint.Checkpoint, source string) error {
	t := n.trust
	s := t.space(c.Namespace)
	if s == nil {
		// Not one this node matches, but gossip asks whether to relay
		// it on to members that may: a verifying node still checks that
		// it is signed by a trusted key and unexpired (so a forged one
		// is not spread, nor blocks real ones at this relay); a node
		// without trusted keys cannot tell and lets it pass.
		if t.v == nil {
			return nil
		}
		if err := t.v.Verify(c, nil); err != nil {
			return fmt.Errorf("dataplane: checkpoint of %s (%v) from %s: %w", c.Namespace, errNotTracked, source, err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.last; l != nil && same(l, c) && (s.matched == l || s.pending == l || s.gaveUp == l) {
		return nil // already taken (the follower rereads the latest every read)
	}
	if err := t.v.Verify(c, s.last); err != nil {
		t.m.refused.WithLabelValues(checkpoint.Reason(err)).Inc()
		t.log.Warn("checkpoint refused", "namespace", c.Namespace, "source", source, "reason", checkpoint.Reason(err), "err", err)
		return fmt.Errorf("dataplane: checkpoint from %s: %w", source, err)
	}
	s.last = c
	if s.enforced.CompareAndSwap(false, true) {
		t.log.Info("namespace checkpoints verified: from now on only a checkpoint match proves it current", "namespace", c.Namespace)
	}
	s.pending, s.retried, s.gaveUp = c, false, nil
	n.tryMatch(s, false)
	return nil
}

// tryMatch compares s's state at its pending checkpoint's version; s.mu
// held. afterRead: called after a log read completed.
func (n *Node) tryMatch(s *nsTrust, afterRead bool) {
	c := s.pending
	if c == nil {
		return
	}
	if s.st == nil {
		return // not loaded yet: the warm-up or a reload takes it
	}
	s.st.SetFloor(c.TombstoneFloor)
	h, cnt, err := s.st.At(c.Version)
	if err != nil {
		// The journal does not reach back to c (a newer state was
		// loaded): a later checkpoint is compared instead.
		s.pending = nil
		n.trust.m.mismatch.WithLabelValues(c.Namespace, "unreachable").Inc()
		return
	}
	if err := checkpoint.Match(c, &h, cnt); err == nil {
		n.matched(s, c)
		return
	}
	fl := n.trust.follower.Load()
	covered := fl != nil && fl.Cursor() >= c.Version
	switch {
	case !covered && !afterRead:
		// The log has not been read up to c's version: hold it.
		n.trust.m.mismatch.WithLabelValues(c.Namespace, "pending").Inc()
		if fl != nil {
			fl.CatchUp("checkpoint")
		}
	case !covered:
		// Still behind after a read (the read ended below c): keep
		// holding; the next read retries.
	case !s.retried:
		s.retried = true
		n.trust.m.mismatch.WithLabelValues(c.Namespace, "behind").Inc()
		n.log.Warn("state does not match a verified checkpoint: reading the change log at once", "namespace", c.Namespace, "checkpoint", c.String(), "held", cnt)
		fl.CatchUp("checkpoint")
	case afterRead:
		// Still different after the log was read past its version: the
		// node holds something the publisher does not, or lacks
		// something the log no longer names. It stays unproven (and fails
		// closed at D where the policy says so) until a later
		// checkpoint matches or a verified snapshot is reloaded.
		s.pending, s.gaveUp = nil, c
		n.trust.m.mismatch.WithLabelValues(c.Namespace, "after_read").Inc()
		n.log.Error("state still does not match a verified checkpoint after reading the log: namespace unproven; reloading it from the origin's proven snapshot", "namespace", c.Namespace, "checkpoint", c.String(), "held", cnt)
		n.resync(s)
	}
}

// resyncRetry is the least time between two reloads of a namespace after
// mismatches, doubling with each reload not followed by a match up to
// resyncEvery, and back to resyncRetry after a match or a reload that
// failed (the origin down or answering corrupt objects): a node whose
// state diverged during a fault proves itself current again soon after
// it ends (a chaos run saw keys fail closed 18 s past the last heal while
// a node waited out a fixed 30 s), and one that keeps diverging reloads
// its snapshot (O(keys)) at most every resyncEvery.
const (
	resyncEvery = 30 * time.Second
	resyncRetry = 2 * time.Second
)

// resync reloads s's namespace from the origin's snapshot, verified whole
// with its proof, in the background, and reads the log again from its
// version: for a state that diverged from the publisher's in a way the
// log no longer names (a version known without its seal from a local
// file, a change the log was trimmed past). At most one at a time, spaced
// as resyncRetry says; s.mu held.
func (n *Node) resync(s *nsTrust) {
	gap := max(s.resyncGap, resyncRetry)
	fl := n.trust.follower.Load()
	if s.resyncing || time.Since(s.lastResync) < gap || fl == nil {
		return
	}
	n.revalMu.Lock() // the fence Close passes before it waits for n.wg
	defer n.revalMu.Unlock()
	select {
	case <-n.stop:
		return
	default:
	}
	s.resyncing, s.lastResync, s.resyncGap = true, time.Now(), min(2*gap, resyncEvery)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			s.mu.Lock()
			s.resyncing = false
			s.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
		defer cancel()
		go func() {
			select {
			case <-n.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		snap, proof, err := n.trustedOriginSnapshot(ctx, s.ns, s, 0)
		if err == nil && proof == nil {
			err = errNoProof
		}
		if err != nil {
			n.log.Warn("reloading a mismatched namespace from its snapshot failed; it stays unproven until a checkpoint matches or a retry succeeds", "namespace", s.ns, "err", err, "retry_after", resyncRetry)
			s.mu.Lock()
			s.lastResync, s.resyncGap = time.Now(), resyncRetry
			s.mu.Unlock()
			return
		}
		for _, c := range n.cache.Reload(snap) {
			n.notify(c)
		}
		n.installState(s, snap, proof)
		fl.Rewind(snap.Version)
		n.log.Info("namespace reloaded from its proven snapshot after a mismatch", "namespace", s.ns, "version", snap.Version)
	}()
}

// matched records that s's state matched c; s.mu held.
func (n *Node) matched(s *nsTrust, c *checkpoint.Checkpoint) {
	if s.pending == c {
		s.pending, s.retried = nil, false
	}
	s.resyncGap = 0
	if s.matched == nil || c.Version >= s.matched.Version {
		s.matched = c
		s.st.Forget(c.Version)
	}
	n.trust.m.matches.WithLabelValues(c.Namespace).Inc()
	for {
		cur := s.matchedAt.Load()
		// Never a proof for later than now: a checkpoint from a publisher
		// whose clock runs ahead must not stretch D.
		v := min(c.Version.Time().UnixNano(), n.fresh.now().UnixNano())
		if v <= cur || s.matchedAt.CompareAndSwap(cur, v) {
			break
		}
	}
	if fs := n.fresh.spaces[c.Namespace]; fs != nil {
		n.fresh.update(fs)
	}
}

// retryCheckpoints retries the pending checkpoints after a log read.
func (n *Node) retryCheckpoints() {
	for _, s := range n.trust.spaces {
		s.mu.Lock()
		n.tryMatch(s, true)
		s.mu.Unlock()
	}
}

// checkpointSpaces lists the namespaces whose latest checkpoint the log
// follower reads from the origin.
func (n *Node) checkpointSpaces() []string {
	out := make([]string, 0, len(n.trust.spaces))
	for ns := range n.trust.spaces {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// floor returns the rollback floor of ns: the version of the newest
// checkpoint verified (0 none).
func (s *nsTrust) floor() record.Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return 0
	}
	return s.last.Version
}

// setState installs st (built from a snapshot loaded whole) as s's state,
// and, when proven by checkpoint c (nil: not proven), counts it as a
// match if c is no older than the last verified and makes c the floor.
func (n *Node) setState(s *nsTrust, st *checkpoint.State, c *checkpoint.Checkpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = st
	if c == nil {
		return
	}
	if s.last == nil || c.Version > s.last.Version {
		// A verified proof is a verified checkpoint (if not expired, it
		// proves freshness too: see matched).
		s.last = c
		if s.enforced.CompareAndSwap(false, true) {
			n.log.Info("namespace checkpoints verified: from now on only a checkpoint match proves it current", "namespace", c.Namespace)
		}
	}
	if n.trust.v.Verify(c, nil) == nil { // unexpired: a live proof
		n.matched(s, c)
	} else {
		s.matched = c
	}
	if s.pending == nil && s.gaveUp != nil && s.gaveUp.Version >= c.Version {
		s.pending, s.retried, s.gaveUp = s.gaveUp, false, nil
	}
	n.tryMatch(s, false)
}

// checkpointPath is where the last verified checkpoint of ns is kept.
func (t *trust) checkpointPath(ns string) string {
	return filepath.Join(t.dir, ns+".checkpoint")
}

// persist writes c, s's last matched checkpoint taken before the local
// snapshot file was built, beside the local snapshot
// file just written (whose version is therefore at least c's: see
// Node.snapshots), as the rollback floor of the next start. Failures are
// logged: the floor then only holds in memory.
func (t *trust) persist(s *nsTrust, c *checkpoint.Checkpoint) {
	if t.dir == "" || c == nil {
		return
	}
	b, err := c.Marshal()
	if err == nil {
		if err = os.MkdirAll(t.dir, 0o755); err == nil {
			err = atomicfile.Write(t.checkpointPath(s.ns), b)
		}
	}
	if err != nil {
		t.log.Error("persisting the last verified checkpoint failed", "namespace", s.ns, "err", err)
	}
}

// loadPersisted reads the last verified checkpoints kept in DataDir, as
// each namespace's rollback floor, at Open. A file that does not verify
// (signature; expiry does not matter) is ignored with a warning.
func (t *trust) loadPersisted() {
	if t.dir == "" {
		return
	}
	for ns, s := range t.spaces {
		b, err := os.ReadFile(t.checkpointPath(ns))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				t.log.Warn("last verified checkpoint unreadable", "namespace", ns, "err", err)
			}
			continue
		}
		c, err := checkpoint.Unmarshal(b)
		if err == nil && c.Namespace != ns {
			err = fmt.Errorf("holds a checkpoint of %s", c.Namespace)
		}
		if err == nil {
			err = t.v.VerifyProof(c, 0)
		}
		if err != nil {
			t.log.Warn("last verified checkpoint refused", "namespace", ns, "err", err)
			continue
		}
		s.last = c
		s.enforced.Store(true)
	}
}

// stateFromSnapshot builds the state of snap's namespace: with proof, at
// exactly the proof's version (records at or below it, the proof's state
// at it for records above), journal forgotten there, then the records
// above applied as changes; without, every record (held reports whether
// the node took it) and the journal forgotten at the newest record.
func stateFromSnapshot(snap record.Snapshot, proof *checkpoint.SnapshotProof, held func(r record.Record) bool) *checkpoint.State {
	st := checkpoint.NewState(snap.Namespace)
	if proof == nil {
		// The journal starts at the newest record: the snapshot claims
		// every change up to its version, so the state at any version
		// from the newest record up to it is these records (a change
		// between the two would be in the snapshot, newer).
		var newest record.Version
		for _, r := range snap.Records {
			if r.Namespace == snap.Namespace && held(r) {
				_, _ = st.Apply(statehash.ElementOf(r))
				newest = max(newest, r.Version)
			}
		}
		st.Forget(newest)
		return st
	}
	c := proof.Checkpoint
	st.SetFloor(c.TombstoneFloor)
	above := make(map[string]*statehash.Element, len(proof.Above))
	for _, a := range proof.Above {
		above[a.Key] = a.Element
	}
	for _, r := range snap.Records {
		if r.Version <= c.Version {
			_, _ = st.Apply(statehash.ElementOf(r))
		} else if e := above[r.Key]; e != nil {
			_, _ = st.Apply(*e)
		}
	}
	st.Forget(c.Version)
	for _, r := range snap.Records {
		if r.Version > c.Version {
			_, _ = st.Apply(statehash.ElementOf(r))
		}
	}
	return st
}

// trustMetrics are dataplane_node_checkpoint_*.
type trustMetrics struct {
	matches  *prometheus.CounterVec
	mismatch *prometheus.CounterVec
	refused  *prometheus.CounterVec
	cols     []prometheus.Collector
}

func newTrustMetrics(t *trust) *trustMetrics {
	m := &trustMetrics{
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "checkpoint_matches_total",
			Help: "Verified checkpoints (or snapshot proofs) the node's state of the namespace matched: the only proof that it is current.",
		}, []string{"namespace"}),
		mismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "checkpoint_mismatches_total",
			Help: "Verified checkpoints the node's state did not match, by reason: pending (log not read up to its version yet), behind (log read asked for), after_read (still different after the log was read), unreachable (older than the state's journal).",
		}, []string{"namespace", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "checkpoint_refusals_total",
			Help: "Checkpoints, snapshot proofs and snapshots refused, by reason (checkpoint.Reason, or no_proof).",
		}, []string{"reason"}),
	}
	for _, r := range checkpoint.Reasons {
		m.refused.WithLabelValues(r)
	}
	m.cols = []prometheus.Collector{m.matches, m.mismatch, m.refused}
	for ns, s := range t.spaces {
		m.cols = append(m.cols, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "checkpoint_match_age_seconds",
			Help:        "Seconds since the version of the newest checkpoint the node's state of the namespace matched; -1 if never.",
			ConstLabels: prometheus.Labels{"namespace": ns},
		}, func() float64 {
			v := s.matchedAt.Load()
			if v == 0 {
				return -1
			}
			return time.Since(time.Unix(0, v)).Seconds()
		}))
	}
	return m
}

func (t *trust) register(reg prometheus.Registerer) error {
	if reg == nil || t.m == nil {
		return nil
	}
	for _, c := range t.m.cols {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// matchedNow returns s's last matched checkpoint.
func (s *nsTrust) matchedNow() *checkpoint.Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.matched
}

// same reports whether a and b are the same checkpoint.
func same(a, b *checkpoint.Checkpoint) bool {
	return a.Version == b.Version && a.IssuedAt.Equal(b.IssuedAt) && a.Hash.Equal(&b.Hash) && a.Count == b.Count
}
