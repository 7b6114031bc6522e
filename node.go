// Package dataplane is the embeddable core of the dataplane: a Node serves
// records (routes, API keys, configs) from memory, keeps them fresh through
// gossip and the origin's change log, and keeps serving them when the origin
// is down.
//
// Every change reaches the node's cache through one ordering gate, the
// cache's version index: changes carried by gossip (package gossip, a
// transport only), changes read from the change log (package follow, the
// node's log follower, which runs with or without gossip), snapshots and
// origin reads. No method hands out the cache or the gossip member.
//
// Open a node with an origin and, optionally, a gossip cluster, then read:
//
//	store, _ := dir.Open("/var/lib/dataplane")
//	gcfg := gossip.DefaultLANConfig().Cluster
//	node, err := dataplane.Open(ctx, dataplane.Config{Origin: store, Gossip: &gcfg})
//	if err != nil { ... }
//	defer node.Close()
//	v, err := node.Get(ctx, "routes", "api.example.com")
//	changes, cancel := node.Watch("routes")
//
// Every binary of the project (sentinel, cache node, dev) is a thin wrapper
// over this API.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// ErrNotFound is returned by Get for a key that does not exist or was
// deleted. It is origin.ErrNotFound, so errors.Is works with either.
var ErrNotFound = origin.ErrNotFound

// Config configures a Node. Only Origin is required.
type Config struct {
	// Origin is where records live durably: a dir, s3, dynamodb or
	// httporigin (cache tier) store. Required.
	Origin origin.Store
	// Cache configures the memory cache (windows, negative TTL, size and
	// origin read bounds); the zero value means cache.DefaultConfig(). Its
	// clock, verifier, metrics, logs, future skew and complete namespaces
	// are this Config's Now, Verifier, Registerer, Logger,
	// Timing.MaxFutureSkew() and Namespaces.
	Cache cache.Config
	// Gossip, when set, joins a gossip cluster for invalidations carried in
	// seconds (start from gossip.DefaultLANConfig().Cluster, or the WAN or
	// Local preset); nil means TTL-only freshness (RFC options 1, 3, 4),
	// where the change log is the only path of changes. Its verifier,
	// clock, future skew, metrics and logs are this Config's Verifier, Now,
	// Timing.MaxFutureSkew(), Registerer and Logger.
	Gossip *gossip.Cluster
	// Timing holds the timing constants the node shares with the
	// publishers of its origin (give both the same value): how often it
	// reads the change log (LogInterval, with or without gossip) and how
	// far behind a complete read its cursor moves (LogSettle), and the
	// constants they must agree with (PublishBudget, ClockSkew,
	// ReplicaLag, LogTailTTL, CheckpointLifetime); ClockSkew also sets how
	// far ahead of Now a version may be before it is refused from every
	// path (Timing.MaxFutureSkew()). Open refuses a set that breaks a rule
	// (origin.Timing.Validate, and, for each namespace that fails closed,
	// the rules of Config.Validate) with one error naming the constants, their values
	// and the rule. The zero value means origin.DefaultTiming(); use
	// origin.WANTiming() across regions and origin.LocalTiming() on one
	// machine.
	Timing origin.Timing
	// Namespaces are held whole ("complete", DESIGN.md decision 7): loaded
	// at Open from their snapshots (one origin read each), and, with
	// Gossip set, kept complete from gossip and the change log, so that the
	// node knows every key's version whatever its cache holds. Once the
	// node has read the log from its snapshots' version, a read of a key
	// the namespace does not have is answered "not found" from memory,
	// with no origin read (strangers' random hosts and keys cost nothing).
	// Values may be evicted under Cache.MaxBytes; their versions stay
	// known. Other namespaces are cached key by key as they are read.
	// Without Gossip the node follows the log too (held keys learn of
	// changes, and the log reads prove the node current), but misses
	// still read the origin: a new key would otherwise wait for the next
	// log read. Default: routes, keys.
	Namespaces []string
	// DataDir, when set, holds local snapshot files the node writes every
	// LocalSnapshotInterval and loads at Open when the origin is down.
	DataDir string
	// Peers are other nodes to warm from when, at Open, the origin cannot
	// give a namespace's snapshot and there is no local snapshot file:
	// tried in order, the first that holds the namespace whole wins. An
	// httporigin.Store over the peers' SnapshotHandler URLs is one.
	Peers []SnapshotSource
	// LocalSnapshotInterval is how often local snapshot files are written.
	// Default 30s.
	LocalSnapshotInterval time.Duration
	// WarmTimeout bounds the warm-up's origin reads at Open: a snapshot the
	// origin can stream is abandoned when no record has arrived for this
	// long (so a namespace of millions of records loads however long it
	// takes), any other read when it takes longer in all; then the node
	// falls back to local snapshot files and peers. Default 10s.
	WarmTimeout time.Duration
	// Verifier, when set, makes the node accept only records and changes
	// signed by a trusted publisher key (DESIGN.md decision 8): it is
	// given to the cache (Apply, origin reads: snapshots, peers, local
	// files, gossip values), to gossip (every change message, checked
	// before it is remembered or spread) and to the log follower (every log
	// entry) unless those configs set their own. Refusals are counted in
	// dataplane_cache_signature_refused_total,
	// dataplane_gossip_messages_dropped_total and
	// dataplane_follow_changes_refused_total by reason. Versions a
	// snapshot lists without a value and without a Seal (Known entries of
	// a node's own snapshot: its version index holds no signatures) are
	// skipped; the change log restores them. Nil: signing is off and
	// everything is accepted, signed or not. See package sign.
	Verifier *sign.Verifier
	// RequireCheckpoints, with Verifier, makes every namespace of
	// Namespaces take its proofs from the publisher's signed checkpoints
	// from the start: only a checkpoint match proves it current, and a
	// snapshot loads only with a proof that verifies whole. Without it a
	// namespace does so from the first checkpoint the node verifies (kept
	// in DataDir across restarts), so that a publisher that issues no
	// checkpoints keeps working under the older rules (see freshness);
	// set it where publishers issue checkpoints, so that deleting them
	// from the bucket cannot turn the checks off for a node that never
	// saw one.
	RequireCheckpoints bool
	// Checkpoints is where checkpoints and snapshot proofs are read
	// (checkpoint.GetLatest, GetProof); nil: origin.CheckpointPartsOf(Origin)
	// (every origin store, and a cache tier through its nodes:
	// httporigin.Store.CheckpointParts).
	Checkpoints origin.SnapshotParts
	// Staleness is the policy of each namespace when the node cannot
	// confirm it is current (see Policy), merged over DefaultStaleness:
	// keys fails closed after 5 minutes, every other namespace serves
	// stale. Nil: the defaults.
	Staleness map[string]Policy
	// Logger receives the node's logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the node's metrics (cache and gossip included);
	// nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock of the cache, the gossip member and the log
	// follower (tests inject a fake one); nil means the wall clock.
	Now func() time.Time
}

// Value is what Get returns.
type Value struct {
	// Data is the value's bytes. It is shared and must not be modified.
	Data []byte
	// Version is the record's version.
	Version record.Version
	// Age is the time since the origin or a gossip message last confirmed
	// the value.
	Age time.Duration
	// Stale reports that the value could not be confirmed recently (past
	// its fresh window, origin unreachable, or a newer version announced
	// but not yet fetched).
	Stale bool
}

// Node serves records from memory. All methods are safe for concurrent use.
type Node struct {
	cfg      Config
	cache    *cache.Cache
	gossip   *gossip.Node     // nil in TTL-only mode
	follower *follow.Follower // reads the change log, in every mode
	log      *slog.Logger
	ready    atomic.Bool
	m        *nodeMetrics
	fresh    *freshness // when each namespace was last proven current
	trust    *trust     // checkpoints: state hashes, floors, matches

	watchMu  sync.Mutex // guards watchers
	watchers map[string]map[*watcher]struct{}

	// revalMu guards revalRunning and revalAgain: at most one full
	// revalidation runs at a time; a request during it makes it start over
	// with everything held once its pass ends.
	revalMu      sync.Mutex
	revalRunning bool
	revalAgain   bool

	// completeMu guards warmed and needFrom: the namespaces loaded whole,
	// and the log position the node must have read from before they are
	// complete (see CaughtUp).
	completeMu sync.Mutex
	warmed     map[string]bool
	needFrom   record.Version
	// progress counts the records loaded of each namespace by the warm-up
	// under way (or the last one); fixed keys, set at Open.
	progress map[string]*atomic.Int64

	// gossipVerified: the gossip layer checks signatures with the cache's
	// Verifier, so changes it applies are not checked again. Set before
	// gossip starts.
	gossipVerified bool
	// admitMu serializes, per stripe of keys, a change's admission by the
	// cache's version index and its delivery to watchers (see admit).
	admitMu [admitStripes]sync.Mutex

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	// newCache makes a cache like the one Open made (warmAtOpen's
	// fallback).
	newCache func() (*cache.Cache, error)
}

// Open starts a node: it builds the cache, loads cfg.Namespaces from their
// snapshots (or from local snapshot files if the origin is down), starts
// following the change log from there, joins the gossip cluster if
// configured, and starts writing local snapshot files.
// It returns once the node is serving; Ready reports whether the warm-up
// succeeded (a node that could not warm keeps trying in the background).
func Open(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fc := follow.Config{Interval: cfg.Timing.LogInterval, Settle: cfg.Timing.LogSettle, Batch: followBatch, Now: cfg.Now}
	copts := cache.Options{
		Config: cfg.Cache, Complete: cfg.Namespaces, MaxFutureSkew: cfg.Timing.MaxFutureSkew(),
		Now: cfg.Now, Registerer: cfg.Registerer, Logger: cfg.Logger,
	}
	if cfg.Verifier != nil {
		copts.Verifier = cfg.Verifier
	}
	m, err := newNodeMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dataplane: metrics: %w", err)
	}
	if cfg.Checkpoints == nil {
		cfg.Checkpoints = origin.CheckpointPartsOf(cfg.Origin)
	}
	fresh := newFreshness(cfg, fc.Settle)
	tr := newTrust(cfg, fc.Settle)
	fresh.trust = tr
	if err := tr.register(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("dataplane: metrics: %w", err)
	}
	tr.loadPersisted()
	if fc.Checkpoints == nil {
		fc.Checkpoints = cfg.Checkpoints
	}
	if err := fresh.register(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("dataplane: metrics: %w", err)
	}
	c, err := cache.New(fresh.loader(cfg.Origin, cfg.Gossip == nil), copts)
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		cache:    c,
		log:      cfg.Logger,
		m:        m,
		fresh:    fresh,
		trust:    tr,
		watchers: make(map[string]map[*watcher]struct{}),
		warmed:   make(map[string]bool),
		progress: make(map[string]*atomic.Int64),
		stop:     make(chan struct{}),
	}
	for _, ns := range cfg.Namespaces {
		n.progress[ns] = new(atomic.Int64)
	}
	n.newCache = func() (*cache.Cache, error) { return cache.New(fresh.loader(cfg.Origin, cfg.Gossip == nil), copts) }
	resume, warmed, err := n.warmAtOpen(ctx)
	if err != nil {
		return nil, err
	}
	n.needFrom = resume
	if fc.Resume == 0 {
		fc.Resume = resume
	}
	if cfg.Verifier != nil {
		fc.Verifier = cfg.Verifier
	}
	fc.Logger, fc.Registerer = cfg.Logger, cfg.Registerer
	f, err := follow.New(fc, (*logTarget)(n), cfg.Origin)
	if err != nil {
		n.cache.Close()
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	n.follower = f
	n.trust.follower.Store(f)
	if cfg.Gossip != nil {
		g := gossip.Config{
			Cluster: *cfg.Gossip, MaxFutureSkew: cfg.Timing.MaxFutureSkew(),
			Now: cfg.Now, Registerer: cfg.Registerer, Logger: cfg.Logger,
			// Receipts ask each member whether it holds a version: its
			// version index answers, whichever path brought the version.
			Held: func(ns, key string) record.Version {
				k, _ := n.cache.Known(ns, key)
				return k.Version
			},
			// Checkpoints gossip carries go to the node, which decides
			// trust.
			OnCheckpoint: n.offerCheckpoint,
		}
		if cfg.Verifier != nil {
			g.Verifier = cfg.Verifier
		}
		// Gossip verifies every change with the cache's Verifier before
		// the Applier sees it: a second check would only cost time.
		n.gossipVerified = cfg.Verifier != nil
		gn, err := gossip.New(g, (*applier)(n), f)
		if err != nil {
			_ = f.Close()
			n.cache.Close()
			return nil, fmt.Errorf("dataplane: %w", err)
		}
		n.gossip = gn
	}
	n.ready.Store(warmed)
	if !warmed {
		n.wg.Add(1)
		go n.rewarm()
	}
	if cfg.DataDir != "" {
		n.wg.Add(1)
		go n.snapshotLoop()
	}
	n.wg.Add(1)
	go n.pressureLoop()
	n.fresh.update(nil)
	n.wg.Add(1)
	go n.freshLoop()
	return n, nil
}

// Peek returns what the node holds for ns/key without any origin read.
func (n *Node) Peek(ns, key string) (cache.Entry, bool) { return n.cache.Peek(ns, key) }

// Ready reports whether the node has warmed up: its namespaces were loaded
// from the origin's snapshots or from local snapshot files.
func (n *Node) Ready() bool { return n.ready.Load() }

// ErrNoGossip is returned by the methods that need a gossip cluster
// (Receipt) on a node opened without Config.Gossip.
var ErrNoGossip = errors.New("dataplane: no gossip cluster (TTL-only node)")

// Publish hands the node rec, which the caller has already written durably
// to the origin (a publisher in the same process; Node satisfies
// publisher.Notifier): the node applies it, through the same ordering gate
// as every other change, and spreads it by gossip if it has a cluster. An
// older or equal version is ignored.
func (n *Node) Publish(ctx context.Context, rec record.Record) error {
	if n.gossip != nil {
		return n.gossip.Publish(ctx, rec)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("dataplane: publish: %w", err)
	}
	(*applier)(n).Apply(rec)
	return nil
}

// Receipt waits until share of every region's gossip members hold version
// v of ns/key, or ctx ends (see gossip.Node.Receipt): with Publish, it
// makes the node a publisher.Receipter. ErrNoGossip without a cluster.
func (n *Node) Receipt(ctx context.Context, ns, key string, v record.Version, share float64) (gossip.Receipt, error) {
	if n.gossip == nil {
		return gossip.Receipt{}, ErrNoGossip
	}
	return n.gossip.Receipt(ctx, ns, key, v, share)
}

// GossipAddr returns the host:port other gossip members reach this node at
// (a seed for them), or "" without gossip.
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.Addr()
}

// Members returns the live gossip members, this node included, sorted by
// name; nil without gossip.
func (n *Node) Members() []gossip.Member {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.Members()
}

// Fleet returns this node's view of every gossip member's applied versions
// (see gossip.Node.Fleet); the zero FleetView without gossip.
func (n *Node) Fleet() gossip.FleetView {
	if n.gossip == nil {
		return gossip.FleetView{}
	}
	return n.gossip.Fleet()
}

// LogCursor returns the log follower's cursor: every change at or below it
// has been applied (as far as the node's reads of the change log can tell).
func (n *Node) LogCursor() record.Version { return n.follower.Cursor() }

// Known returns the newest version the node knows of ns/key, whether or
// not it holds the value, without any origin read.
func (n *Node) Known(ns, key string) (record.Change, bool) { return n.cache.Known(ns, key) }

// Complete reports whether ns is held whole (see Config.Namespaces): its
// misses are answered from memory.
func (n *Node) Complete(ns string) bool { return n.cache.IsComplete(ns) }

// Entry returns what Get returns, as the cache entry: with the version of
// a deleted key too (a tombstone, with an error wrapping ErrNotFound), and
// whether the value is stale. The namespace's Policy applies as for Get.
func (n *Node) Entry(ctx context.Context, ns, key string) (cache.Entry, error) {
	return n.read(ctx, ns, key)
}

// Close leaves the gossip cluster, writes a last local snapshot file and
// stops the node. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		close(n.stop)
		// Gossip runs until below and may ask for a revalidation; once
		// this fence is passed, RevalidateAll sees stop and starts
		// nothing, so no wg.Add races the Wait.
		n.revalMu.Lock()
		n.revalMu.Unlock()
		n.wg.Wait()
		if n.gossip != nil {
			_ = n.gossip.Leave(time.Second)
			err = n.gossip.Close()
		}
		_ = n.follower.Close()
		if n.cfg.DataDir != "" {
			n.writeLocalSnapshots()
		}
		n.cache.Close()
		n.closeWatchers()
	})
	return err
}

// applier is the node seen by gossip: changes go into the cache and out to
// watchers.
type applier Node

var _ gossip.Applier = (*applier)(nil)

// Apply implements gossip.Applier.
func (a *applier) Apply(rec record.Record) bool {
	n := (*Node)(a)
	return n.admit(rec.Change(), &rec, func() bool {
		if n.gossipVerified {
			return n.cache.ApplyVerified(rec)
		}
		return n.cache.Apply(rec)
	})
}

// Invalidate implements gossip.Applier.
func (a *applier) Invalidate(ns, key string, v record.Version) {
	n := (*Node)(a)
	n.admit(record.Change{Namespace: ns, Key: key, Version: v}, nil, func() bool { return n.cache.Invalidate(ns, key, v) })
}

// admitStripes is how many locks admit spreads keys over.
const admitStripes = 64

// admitSeed hashes keys onto admit's stripes.
var admitSeed = maphash.MakeSeed()

// admit puts change c through the node's one ordering gate, the cache's
// version index (apply is the cache call, reporting whether the index took
// c), whichever path brought it (gossip, the change log, a revalidation),
// and tells watchers: all under c's key's stripe lock, so that watchers see
// each key's versions in the order the index took them, never an older
// one after a newer. Watchers are told when the index took c, or already
// held exactly c's version (learned by an origin read, or by another path
// first: a version may then be delivered twice, never out of order).
// Only a change the index took proves the node current: a refused one (a
// bad signature, a version from the future) must not (and on a namespace
// whose checkpoints the node checks, no change proves it current: only a
// checkpoint match does).
//
// The namespace's state hash (trust) takes c when the index took it or
// holds c's version or a newer one (the state keeps its own order, and a
// version the index learned without its digest, from a gossip
// invalidation, reaches the state when the log brings it with its seal).
// rec is the record when c travelled with its value (nil: without).
func (n *Node) admit(c record.Change, rec *record.Record, apply func() bool) bool {
	mu := &n.admitMu[maphash.String(admitSeed, c.Namespace+"/"+c.Key)%admitStripes]
	mu.Lock()
	defer mu.Unlock()
	took := apply()
	if took {
		n.fresh.heardChange(c.Namespace, c.Version)
	}
	k, ok := n.cache.Known(c.Namespace, c.Key)
	if took || (ok && k.Version == c.Version) {
		n.notify(c)
	}
	if took || (ok && k.Version >= c.Version) {
		n.trust.admitted(c, rec)
	}
	return took
}

// logTarget is the node seen by its log follower: changes go through
// admit, as gossip's do (the follower keeps no per-key order of its own).
type logTarget Node

var (
	_ follow.Target      = (*logTarget)(nil)
	_ follow.Revalidator = (*logTarget)(nil)
	_ follow.Recoverer   = (*logTarget)(nil)
	_ follow.CaughtUpper = (*logTarget)(nil)

	_ follow.ChangeInvalidator = (*logTarget)(nil)
	_ follow.CheckpointTaker   = (*logTarget)(nil)
)

// InvalidateChange implements follow.ChangeInvalidator: a version read
// from the log, with its seal (the state hash's digest).
func (t *logTarget) InvalidateChange(c record.Change) {
	n := (*Node)(t)
	n.admit(c, nil, func() bool { return n.cache.Invalidate(c.Namespace, c.Key, c.Version) })
}

// CheckpointSpaces implements follow.CheckpointTaker: the namespaces whose
// checkpoints the node checks.
func (t *logTarget) CheckpointSpaces() []string { return (*Node)(t).checkpointSpaces() }

// TakeCheckpoint implements follow.CheckpointTaker: a checkpoint read from
// the origin after a log read.
func (t *logTarget) TakeCheckpoint(c *checkpoint.Checkpoint) {
	_ = (*Node)(t).takeCheckpoint(c, "log") // refusals are counted and logged
}

// Apply implements follow.Target: a tombstone read from the log.
func (t *logTarget) Apply(rec record.Record) bool {
	n := (*Node)(t)
	return n.admit(rec.Change(), &rec, func() bool { return n.cache.Apply(rec) })
}

// Invalidate implements follow.Target: a version read from the log.
func (t *logTarget) Invalidate(ns, key string, v record.Version) {
	n := (*Node)(t)
	n.admit(record.Change{Namespace: ns, Key: key, Version: v}, nil, func() bool { return n.cache.Invalidate(ns, key, v) })
}

// RevalidateAll implements follow.Revalidator: every held record is checked
// against the origin again, in the background, a few at a time. A request
// while a revalidation runs (it may be retrying failed reads for a long
// outage) is folded into it: it starts over with everything held.
func (t *logTarget) RevalidateAll() {
	n := (*Node)(t)
	n.m.revalidations.Inc()
	n.revalMu.Lock()
	defer n.revalMu.Unlock()
	select {
	case <-n.stop: // closing: Close no longer waits for new goroutines
		return
	default:
	}
	if n.revalRunning {
		n.revalAgain = true
		return
	}
	n.revalRunning = true
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.revalidateAll()
	}()
}

// CaughtUp implements follow.CaughtUpper: the read proves the node current
// up to to; and once the node has read the change log from the version its
// namespaces were loaded at, they are complete (misses are answered from
// memory) if gossip carries new keys between reads (see
// Config.Namespaces).
func (t *logTarget) CaughtUp(from, to record.Version) {
	n := (*Node)(t)
	n.fresh.heardLog(to)
	n.retryCheckpoints()
	if n.cfg.Gossip == nil {
		return
	}
	n.completeMu.Lock()
	defer n.completeMu.Unlock()
	if from > n.needFrom {
		return
	}
	for ns := range n.warmed {
		if !n.cache.IsComplete(ns) && n.cache.MarkComplete(ns) {
			n.log.Info("namespace complete: misses answered from memory", "namespace", ns)
		}
	}
}

// recoverTimeout bounds a reload of every namespace from its snapshot.
const recoverTimeout = 5 * time.Minute

// Recover implements follow.Recoverer: after the change log was trimmed
// past this node (an absence longer than the log's retention), every
// namespace the node holds anything of is reloaded from its snapshot, one
// origin read each, never one per key; keys the snapshot lacks are
// deleted. It returns the oldest snapshot's version, from which the log is
// read again.
func (t *logTarget) Recover(ctx context.Context) (record.Version, error) {
	n := (*Node)(t)
	n.m.revalidations.Inc()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	spaces := slices.Clone(n.cfg.Namespaces)
	for e := range n.cache.All() {
		if !slices.Contains(spaces, e.Record.Namespace) {
			spaces = append(spaces, e.Record.Namespace)
		}
	}
	resume := record.Version(math.MaxUint64)
	for _, ns := range spaces {
		ts := n.trust.space(ns)
		var snap record.Snapshot
		var proof *checkpoint.SnapshotProof
		var err error
		if ts != nil {
			// Verified whole, and never older than the state the node
			// has matched (rollback): refused, the node keeps what it
			// serves and the follower revalidates instead.
			var floor record.Version
			if m := ts.matchedNow(); m != nil && ts.enforced.Load() {
				floor = m.Version
			}
			snap, proof, err = n.trustedOriginSnapshot(ctx, ns, ts, floor)
		} else {
			snap, err = n.cfg.Origin.GetSnapshot(ctx, ns)
		}
		if errors.Is(err, origin.ErrNotFound) {
			// Never snapshotted: the publisher trims the log only once
			// every namespace it names has a snapshot, so all of this
			// one's changes are still in the log.
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("dataplane: recover %s from its snapshot: %w", ns, err)
		}
		news := n.cache.Reload(snap)
		for _, c := range news {
			n.notify(c)
		}
		if ts != nil {
			n.installState(ts, snap, proof)
		}
		n.log.Info("namespace reloaded from its snapshot", "namespace", ns, "records", len(snap.Records), "changed", len(news), "version", snap.Version)
		n.fresh.heardSnapshot(ns, snap.Version)
		resume = min(resume, snap.Version)
	}
	if resume == math.MaxUint64 {
		return 0, errors.New("dataplane: nothing to recover")
	}
	return resume, nil
}

// revalidation is one held record to check against the origin.
type revalidation struct {
	ns, key string
	v       record.Version
}

// revalidateAll checks every held record against the origin. Reads that
// fail are retried, with a pause that doubles up to 30 s, until they succeed
// or the node closes: the change log no longer names what this node missed,
// so a record given up on would stay outdated until its fresh window ends
// (and, with a long window, past any convergence bound).
func (n *Node) revalidateAll() {
	defer func() {
		n.revalMu.Lock()
		n.revalRunning, n.revalAgain = false, false
		n.revalMu.Unlock()
	}()
	items := n.held()
	wait := time.Second
	for {
		items = n.revalidate(items)
		n.revalMu.Lock()
		again := n.revalAgain
		n.revalAgain = false
		n.revalMu.Unlock()
		if again {
			// Another gap in the log since this pass started: everything
			// held must be checked again, not only what failed.
			items, wait = n.held(), time.Second
			continue
		}
		if len(items) == 0 {
			return
		}
		n.log.Warn("revalidation: origin reads failed; retrying", "records", len(items), "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// held lists the records the cache holds (not-founds aside).
func (n *Node) held() []revalidation {
	var items []revalidation
	for e := range n.cache.All() {
		if e.Record.Version > 0 {
			items = append(items, revalidation{e.Record.Namespace, e.Record.Key, e.Record.Version})
		}
	}
	return items
}

// revalidate reads items from the origin, a few at a time, applies what is
// newer, and returns the items whose read failed (all those not tried when
// the node closes).
func (n *Node) revalidate(items []revalidation) (failed []revalidation) {
	work := make(chan revalidation)
	var mu sync.Mutex // guards failed
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				rec, err := n.cfg.Origin.Get(ctx, it.ns, it.key, it.v)
				cancel()
				switch {
				case err == nil:
					(*applier)(n).Apply(rec)
				case errors.Is(err, origin.ErrNotModified), errors.Is(err, origin.ErrNotFound):
					// Current, or unknown to the origin: nothing to learn.
				default:
					mu.Lock()
					failed = append(failed, it)
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for i, it := range items {
		select {
		case work <- it:
		case <-n.stop:
			mu.Lock()
			failed = append(failed, items[i:]...)
			mu.Unlock()
			break feed
		}
	}
	close(work)
	wg.Wait()
	return failed
}

type nodeMetrics struct {
	warmSource    *prometheus.CounterVec
	revalidations prometheus.Counter
	watchDrops    prometheus.Counter
	watchLagged   prometheus.Counter
	localSnapErrs prometheus.Counter
	knownRefused  prometheus.Counter
}

func newNodeMetrics(reg prometheus.Registerer) (*nodeMetrics, error) {
	m := &nodeMetrics{
		warmSource: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "warm_loads_total",
			Help: "Namespaces loaded at start, by source (origin snapshot, local file, peer) or failure.",
		}, []string{"source"}),
		revalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "full_revalidations_total",
			Help: "Times every cached record was checked again because the change log was truncated past this node.",
		}),
		watchDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "watch_dropped_total",
			Help: "Changes not delivered to a Watch channel because its buffer was full.",
		}),
		watchLagged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "watch_lagged_total",
			Help: "Resumable watches (WatchFrom) ended because their reader fell a whole buffer behind; the reader resumes from its last cursor.",
		}),
		localSnapErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "local_snapshot_errors_total",
			Help: "Failed writes of local snapshot files.",
		}),
		knownRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "node", Name: "known_signature_refused_total",
			Help: "Versions listed without a value in a loaded snapshot whose signature Config.Verifier refused.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.warmSource, m.revalidations, m.watchDrops, m.watchLagged, m.localSnapErrs, m.knownRefused} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
