package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// Node is one member of a gossip cluster. It spreads the changes handed to
// Publish to every other node, applies the changes it hears of to its
// Applier in version order, and repairs what it missed from push/pull
// digests; it asks the node's log follower to read the origin's change log
// when a member rejoins or a digest shows a gap.
//
// A Node is safe for concurrent use. Close it when done.
type Node struct {
	cfg     Config
	applier Applier
	log     LogFollower // nil: no log backstop
	logger  *slog.Logger
	m       *metrics

	ml      atomic.Pointer[memberlist.Memberlist] // set once Create returns
	queue   *memberlist.TransmitLimitedQueue
	seen    *recent
	reports *reporter           // applied-version reports (report.go)
	kr      *memberlist.Keyring // nil without SecretKeys

	highWater atomic.Uint64 // highest version seen by gossip

	jobs    chan job  // relays and acks for sendLoop
	acks    ackTable  // pushes awaiting acknowledgement
	rtt     rttTable  // push round trips by region, for retry timeouts
	garbage rateLimit // log lines about dropped garbage
	cps     cpState   // checkpoints: relay state, sends (checkpoint.go)

	// membersMu guards alive and lost: this node's view of membership, built
	// from copies taken in memberlist's event callbacks. (The *Node values
	// memberlist.Members returns are rewritten in place under memberlist's
	// lock, so reading them outside it is a data race.)
	membersMu sync.Mutex
	alive     map[string]*memberlist.Node // by name, this node included
	lost      map[string]lostMember
	numAlive  atomic.Int64 // len(alive), for the broadcast queue
	addr      string       // this node's advertised host:port

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// lostMember is a member that failed or left, kept for reconnect attempts.
type lostMember struct {
	addr  string
	since time.Time
}

// Member is a cluster member as this node sees it.
type Member struct {
	Name   string
	Addr   string // host:port
	Region string
}

var errUnexpectedDigest = errors.New("digest where a change message was expected")

// ErrNoKeyring is returned by the key methods of a node started without
// SecretKeys: encryption can only be turned on at start.
var ErrNoKeyring = errors.New("gossip: encryption not configured")

// New starts a node: it listens, joins the cluster through cfg.Seeds (or
// starts alone and keeps trying them), and begins applying changes to a.
// f is the node's follower of the origin's change log, the backstop (see
// package follow), asked to read when gossip sees a gap and reporting the
// cursor receipts count; nil means none (gossip alone then bounds
// nothing: do that in tests and for publishers only).
func New(cfg Config, a Applier, f LogFollower) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errors.New("gossip: nil Applier")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		applier: a,
		log:     f,
		logger:  cfg.Logger.With("node", cfg.Name),
		m:       m,
		seen:    newRecent(cfg.tune.RecentMax),
		jobs:    make(chan job, 4096),
		garbage: rateLimit{every: time.Second},
		alive:   make(map[string]*memberlist.Node),
		lost:    make(map[string]lostMember),
		stop:    make(chan struct{}),
	}
	n.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(n.numAlive.Load()) },
		RetransmitMult: cfg.Memberlist.RetransmitMult,
	}
	n.reports = newReporter(cfg.Name, cfg.Region, cfg.Observer, n.LogCursor())

	mc := *cfg.Memberlist // a copy: the caller's preset stays reusable
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = cfg.bindHost, cfg.bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.advHost, cfg.advPort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.bindPort
	}
	mc.Transport = cfg.Transport
	mc.SecretKey, mc.Keyring = nil, nil
	if len(cfg.SecretKeys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.SecretKeys[1:], cfg.SecretKeys[0])
		if err != nil {
			m.unregister()
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring, n.kr = kr, kr
	}
	mc.Delegate = delegate{n}
	mc.DelegateProtocolVersion, mc.DelegateProtocolMin, mc.DelegateProtocolMax = 1, 1, 1
	mc.Events = events{n}
	mc.Ping = pings{n}
	mc.LogOutput, mc.Logger = nil, memberlistLogger(n.logger)

	ml, err := memberlist.Create(&mc)
	if err != nil {
		m.unregister()
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	n.ml.Store(ml)
	n.addr = ml.LocalNode().Address() // nothing rewrites our own address
	n.logger.Info("gossip node started", "addr", n.addr, "region", cfg.Region, "encrypted", len(cfg.SecretKeys) > 0)

	n.wg.Add(3)
	go n.sendLoop()
	go n.reconnectLoop()
	go n.reportLoop()

	if len(cfg.Seeds) > 0 {
		if k, err := ml.Join(cfg.Seeds); err != nil {
			n.logger.Warn("gossip join failed; starting alone, will retry", "seeds", cfg.Seeds, "err", err)
		} else {
			n.logger.Info("gossip joined", "contacted", k)
		}
	}
	return n, nil
}

// Close stops the node without telling the cluster (others detect its
// failure); call Leave first for a graceful exit. It is safe to call twice.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		err = n.ml.Load().Shutdown()
		n.cps.close()
		n.wg.Wait()
		n.m.unregister()
	})
	return err
}

// Leave tells the cluster this node is leaving, waiting up to timeout for
// the message to go out. The node keeps running until Close.
func (n *Node) Leave(timeout time.Duration) error {
	return n.ml.Load().Leave(timeout)
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr returns the host:port other nodes reach this node at, e.g. to use as
// a seed.
func (n *Node) Addr() string { return n.addr }

// Members returns the live members (alive or suspect), this node included,
// sorted by name.
func (n *Node) Members() []Member {
	n.membersMu.Lock()
	out := make([]Member, 0, len(n.alive))
	for _, m := range n.alive {
		out = append(out, Member{Name: m.Name, Addr: m.Address(), Region: decodeMeta(m.Meta)})
	}
	n.membersMu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// peers returns the other live members, split into those of this node's
// region and those of each other region.
func (n *Node) peers() (local []*memberlist.Node, remote map[string][]*memberlist.Node) {
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	for name, m := range n.alive {
		if name == n.cfg.Name {
			continue
		}
		if r := decodeMeta(m.Meta); r == n.cfg.Region {
			local = append(local, m)
		} else {
			if remote == nil {
				remote = make(map[string][]*memberlist.Node)
			}
			remote[r] = append(remote[r], m)
		}
	}
	return local, remote
}

// HighWater returns the highest version this node has seen, by gossip or
// by its log follower.
func (n *Node) HighWater() record.Version {
	hw := record.Version(n.highWater.Load())
	if n.log != nil {
		hw = max(hw, n.log.HighWater())
	}
	return hw
}

// LogCursor returns the log follower's cursor: the version up to which this
// node knows every change. 0 without a follower.
func (n *Node) LogCursor() record.Version {
	if n.log == nil {
		return 0
	}
	return n.log.Cursor()
}

// Publish spreads rec, which the caller has already written durably to the
// origin (see origin.Publish): the node applies it locally, pushes it at
// once to every member of its region and to RelaysPerRegion members of each
// other region (who split their region between them and forward it), and
// queues it for gossip repair if some target does not acknowledge it.
// A value larger than InlineValueMax travels as an invalidation only.
// Publishing a version the node already holds, or an older one, does
// nothing: apply by version makes every path idempotent.
func (n *Node) Publish(ctx context.Context, rec record.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("gossip publish: %w", err)
	}
	// Applied here with its value whatever its size; receive keeps only
	// values up to InlineValueMax, and only those travel.
	c := change{rec: rec, inline: true, path: pathLocal}
	c.rec.Value = append([]byte(nil), rec.Value...) // the caller may reuse its slice
	if v, why := n.receiveWhy(c); v != fresh {
		if v == refused {
			n.refuse(c, why, "")
		}
		return nil
	}
	if !rec.Tombstone && len(rec.Value) > n.cfg.InlineValueMax {
		c.rec.Value, c.inline = nil, false
	}
	// Track the key's acks (for Receipt) before any can arrive.
	n.reports.trackKey(recentID(rec.Namespace, rec.Key))
	n.push(c) // queues it for gossip repair too, unless every target acknowledges
	return nil
}

// send sends one message by UDP; loss is repaired by gossip and the log.
func (n *Node) send(ml *memberlist.Memberlist, to *memberlist.Node, msg []byte, p path) {
	if err := ml.SendBestEffort(to, msg); err != nil {
		n.logger.Debug("gossip send failed", "to", to.Name, "err", err)
		return
	}
	n.m.sent.WithLabelValues(p.String()).Inc()
}

// receive is the one place a change from any path meets the Applier. It
// applies c if it is newer than what the node has seen of its key, keeping
// the stripe locked across the check and the call so that the Applier sees
// strictly increasing versions per key.
func (n *Node) receive(c change) verdict {
	v, _ := n.receiveWhy(c)
	return v
}

// receiveWhy is receive, with the reason of a refusal (recorded for
// receipts and the fleet report, see refusal.go).
func (n *Node) receiveWhy(c change) (verdict, string) {
	if ahead := c.rec.Version.Time().Sub(n.cfg.Now()); ahead > n.maxFutureSkew() {
		n.m.dropped.WithLabelValues("future").Inc()
		if n.garbage.allow(n.cfg.Now()) {
			n.logger.Warn("gossip refused a version from the future", "ns", c.rec.Namespace, "key", c.rec.Key, "version", c.rec.Version, "ahead", ahead, "path", c.path.String())
		}
		return refused, "future"
	}
	id := recentID(c.rec.Namespace, c.rec.Key)
	if n.cfg.Verifier != nil && n.seen.holds(id, c.rec.Version) {
		// A duplicate or a replay: stale whatever its signature, so
		// not worth verifying (each change arrives by several paths).
		n.m.rejected.WithLabelValues(c.path.String()).Inc()
		return stale, ""
	}
	if err := n.verify(c); err != nil {
		n.m.dropped.WithLabelValues(sign.Reason(err)).Inc()
		if n.garbage.allow(n.cfg.Now()) {
			n.logger.Warn("gossip refused a change not signed by a trusted publisher key", "err", err, "path", c.path.String())
		}
		return refused, sign.Reason(err)
	}
	keep := c // what the node remembers (and puts in digests)
	if len(keep.rec.Value) > n.cfg.InlineValueMax {
		keep.rec.Value, keep.inline = nil, false
	}
	s := n.seen.lock(id)
	v := s.observe(n.seen, id, keep)
	n.traceReceived(c, v)
	if v == stale {
		s.mu.Unlock()
		n.m.rejected.WithLabelValues(c.path.String()).Inc()
		return v, ""
	}
	n.apply(c, v)
	s.mu.Unlock()
	n.reports.appliedLocal(c.rec.Namespace, c.rec.Key, c.rec.Version, c.path == pathLocal || c.path == pathPush || c.path == pathRelay, n.cfg.Now())

	for {
		hw := n.highWater.Load()
		if uint64(c.rec.Version) <= hw || n.highWater.CompareAndSwap(hw, uint64(c.rec.Version)) {
			break
		}
	}
	n.m.applied.WithLabelValues(c.path.String()).Inc()
	if c.path != pathLocal {
		lag := n.cfg.Now().Sub(c.rec.Version.Time())
		n.m.lag.WithLabelValues(c.path.String()).Observe(max(lag, 0).Seconds())
	}
	return v, ""
}

// verify checks c's signature with Config.Verifier, if any: with its value
// when the value travelled, else the Seal alone.
func (n *Node) verify(c change) error {
	if n.cfg.Verifier == nil {
		return nil
	}
	if c.inline {
		return n.cfg.Verifier.VerifyRecord(c.rec)
	}
	return n.cfg.Verifier.VerifyChange(c.rec.Change())
}

// apply hands c to the Applier, turning a panic into a metric and a log line.
func (n *Node) apply(c change, v verdict) {
	defer func() {
		if r := recover(); r != nil {
			n.m.panics.Inc()
			n.logger.Error("gossip applier panicked", "ns", c.rec.Namespace, "key", c.rec.Key, "version", c.rec.Version, "panic", r)
		}
	}()
	if c.inline && v == fresh {
		n.applier.Apply(c.rec)
		return
	}
	// A version floor only: the value did not travel, or the key is one
	// this node may have forgotten a newer version of.
	n.applier.Invalidate(c.rec.Namespace, c.rec.Key, c.rec.Version)
}

// handle processes a change message from the network: apply, then spread
// the first time a newer version arrives.
func (n *Node) handle(c change) {
	n.m.received.WithLabelValues(c.path.String()).Inc()
	from := c.from
	c.from = ""
	v, why := n.receiveWhy(c)
	if v == refused {
		// Neither acknowledged, spread nor relayed; the refusal and its
		// reason go to the sender, and into this node's report.
		n.refuse(c, why, from)
		return
	}
	if from != "" {
		// Acknowledge even a duplicate or an old version: the sender only
		// needs to know this node has it or something newer. Only after
		// the apply, so that an ack also proves the apply (fleet receipts
		// count acks); a refused change is not acknowledged.
		n.enqueue(job{ackTo: from, ack: ack{ns: c.rec.Namespace, key: c.rec.Key, version: c.rec.Version, from: n.cfg.Name}}, "ack")
	}
	if v == fresh && from == "" {
		// Gossip repair: a copy nobody confirmed delivering spreads on.
		// An acknowledged push needs no repair: its sender retries, and
		// repairs what stays unacknowledged.
		n.queueGossip(c)
	}
	// Relay once per version, even if this node already holds it: another
	// relay of its region may have pushed it here first, and this node's
	// share of the region still needs it. The acks of its share go back
	// to the sender too, for its receipts.
	// A stale relay may have skipped the signature check (receive does
	// not verify what it already holds): check it before forwarding, so a
	// forged copy of a held version is neither spread nor allowed to use
	// up this version's one relay; but only if the version is still to be
	// relayed, so duplicates and replays cost no verification.
	id := recentID(c.rec.Namespace, c.rec.Key)
	if c.path == pathRelay && n.seen.relayable(id, c.rec.Version) && (v != stale || n.verify(c) == nil) && n.seen.markRelayed(id, c.rec.Version) {
		n.enqueue(job{relay: &c, reportTo: from}, "relay")
	}
}

// dropGarbage counts and (rate-limited) logs a message that failed to decode.
func (n *Node) dropGarbage(what string, size int, err error) {
	n.m.dropped.WithLabelValues("malformed").Inc()
	if n.garbage.allow(n.cfg.Now()) {
		n.logger.Warn("gossip dropped malformed "+what, "bytes", size, "err", err)
	}
}

// broadcast is a change queued for gossip repair. A newer version of a key
// replaces an older one still in the queue (same Name).
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.name == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// queueGossip queues c for memberlist's gossip rounds. Only fresh versions
// are queued, so a queued message never replaces a newer one.
func (n *Node) queueGossip(c change) {
	c.path = pathGossip
	n.queue.QueueBroadcast(&broadcast{name: recentID(c.rec.Namespace, c.rec.Key), msg: encodeChange(c)})
	if q := n.queue.NumQueued(); q > n.cfg.tune.QueueMax {
		n.queue.Prune(n.cfg.tune.QueueMax)
		// Shed work, counted: the oldest messages go (the change log
		// still covers them).
		n.m.dropped.WithLabelValues("gossip_queue_full").Add(float64(max(q-n.queue.NumQueued(), 0)))
	}
}

// triggerCatchUp asks the log follower to read the log now; triggers
// coalesce there.
func (n *Node) triggerCatchUp(why string) {
	if n.log != nil {
		n.log.CatchUp(why)
	}
}

// Node metadata: a format byte, then the region (format 1), or the
// applied-version report (format 2, report.go).
const metaV1 = 1

func encodeMeta(region string) []byte { return append([]byte{metaV1}, region...) }

func decodeMeta(b []byte) string {
	if len(b) > 0 && b[0] == metaV2 {
		return metaRegion(b)
	}
	if len(b) < 2 || b[0] != metaV1 || validateRegion(string(b[1:])) != nil {
		return ""
	}
	return string(b[1:])
}

// SecretKeys returns copies of the keys on this node's keyring, the primary
// first.
func (n *Node) SecretKeys() [][]byte {
	kr := n.keyring()
	if kr == nil {
		return nil
	}
	var out [][]byte
	for _, k := range kr.GetKeys() {
		out = append(out, append([]byte(nil), k...))
	}
	return out
}

// InstallKey adds key to this node's keyring: it can now decrypt messages
// encrypted with it. The first step of a rotation (see the package docs).
func (n *Node) InstallKey(key []byte) error {
	kr := n.keyring()
	if kr == nil {
		return ErrNoKeyring
	}
	return kr.AddKey(append([]byte(nil), key...))
}

// UseKey makes an installed key the primary: this node now encrypts with
// it. The second step of a rotation, once every node has installed it.
func (n *Node) UseKey(key []byte) error {
	kr := n.keyring()
	if kr == nil {
		return ErrNoKeyring
	}
	return kr.UseKey(key)
}

// RemoveKey removes a key that is not the primary. The last step of a
// rotation, once every node uses the new key.
func (n *Node) RemoveKey(key []byte) error {
	kr := n.keyring()
	if kr == nil {
		return ErrNoKeyring
	}
	return kr.RemoveKey(key)
}

func (n *Node) keyring() *memberlist.Keyring { return n.kr }

// defaultMaxFutureSkew is Config.MaxFutureSkew when left zero.
const defaultMaxFutureSkew = 5 * time.Second

func (n *Node) maxFutureSkew() time.Duration {
	if n.cfg.MaxFutureSkew > 0 {
		return n.cfg.MaxFutureSkew
	}
	return defaultMaxFutureSkew
}
