// Package fleetsim runs a fleet of real gossip nodes (package gossip over
// real hashicorp/memberlist) on an in-memory network with per-region
// delays, loss and partitions, for measuring what the protocol costs and
// how fast it spreads at hundreds to thousands of nodes on one machine.
//
// A Fleet must be started inside a testing/synctest bubble
// (synctest.Test): every timer, sleep and packet then runs in virtual
// time, so a figure measures the protocol, not the machine's scheduling,
// and a 1,000-node fleet fits on two cores. Everything it reports is in
// virtual time except CPU seconds.
//
// Shut a fleet down with Close and then sleep a little virtual time before
// the bubble ends: memberlist's in-flight probes outlive its Shutdown.
package fleetsim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/record"
)

// Config describes a fleet.
type Config struct {
	Nodes   int    // total, spread evenly over Regions
	Regions int    // at least 1
	Seed    uint64 // link delays, loss, publisher and restart choices

	// MinDelay and MaxDelay bound the one-way delay between two regions;
	// each pair gets a delay drawn between them (the first pair gets
	// MinDelay and the last MaxDelay, so both ends occur). LANDelay is the
	// one-way delay within a region.
	MinDelay, MaxDelay, LANDelay time.Duration

	// Gossip returns the base configuration of a node; Name, Region,
	// Transport, Seeds, Registerer, Logger and Resume are set by the fleet.
	// Nil: gossip.DefaultWANConfig with memberlist.DefaultWANConfig.
	Gossip func() gossip.Config

	// Encrypt turns on memberlist's AES-GCM with one shared key.
	Encrypt bool
}

// DefaultConfig returns 10 regions of n/10 nodes, 20-150 ms between
// regions, 1 ms within one.
func DefaultConfig(n int, seed uint64) Config {
	return Config{Nodes: n, Regions: 10, Seed: seed, MinDelay: 20 * time.Millisecond, MaxDelay: 150 * time.Millisecond, LANDelay: time.Millisecond}
}

// member is one node slot of the fleet, kept across restarts.
type member struct {
	idx        int
	name, addr string
	region     string
	c          netsim.Counters
	node       *gossip.Node // nil while down
	follower   *follow.Follower
	reg        *prometheus.Registry
	base       GossipCounts // counters of previous lives
	up         bool
	resume     record.Version
}

// Fleet is a running set of nodes. Its methods are not safe for concurrent
// use with each other (the fleet's own nodes run concurrently inside).
type Fleet struct {
	cfg     Config
	Net     *netsim.Network
	rng     *rand.Rand
	members []*member
	regions []string
	key     []byte
	obs     *observer

	// mu guards the change tracking and the log below.
	mu      sync.Mutex
	changes map[string]*tracked // by ns/key
	byName  map[string]int      // member index by name
	log     []record.Change
	seq     int
}

// tracked is a published change and when each node first held it.
type tracked struct {
	version   record.Version
	at        time.Time
	publisher int             // member index
	arrived   []time.Duration // by member index; 0: not yet
	path      []string        // by member index: the path that delivered it
	events    []event         // the nodes' traces of it
}

func (f *Fleet) newTracked(v record.Version, at time.Time, publisher int) *tracked {
	return &tracked{version: v, at: at, publisher: publisher, arrived: make([]time.Duration, len(f.members)), path: make([]string, len(f.members))}
}

// New builds the network of a fleet; Start starts its nodes.
func New(cfg Config) *Fleet {
	if cfg.Regions < 1 {
		cfg.Regions = 1
	}
	f := &Fleet{
		cfg:     cfg,
		Net:     netsim.New(cfg.Seed),
		rng:     rand.New(rand.NewPCG(cfg.Seed, 0xf1ee7)),
		changes: make(map[string]*tracked),
		byName:  make(map[string]int),
	}
	f.obs = newObserver(f)
	for r := range cfg.Regions {
		f.regions = append(f.regions, fmt.Sprintf("r%02d", r))
	}
	// Region-pair delays: spread between MinDelay and MaxDelay.
	var pairs [][2]string
	for a := range f.regions {
		f.Net.SetLink(f.regions[a], f.regions[a], netsim.Link{Delay: cfg.LANDelay})
		for b := a + 1; b < len(f.regions); b++ {
			pairs = append(pairs, [2]string{f.regions[a], f.regions[b]})
		}
	}
	f.rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	for i, p := range pairs {
		d := cfg.MinDelay
		if len(pairs) > 1 {
			d += time.Duration(int64(cfg.MaxDelay-cfg.MinDelay) * int64(i) / int64(len(pairs)-1))
		}
		f.Net.SetLink(p[0], p[1], netsim.Link{Delay: d.Round(time.Millisecond)})
	}
	for i := range cfg.Nodes {
		r := i % cfg.Regions
		k := i / cfg.Regions
		f.members = append(f.members, &member{
			idx:    i,
			name:   fmt.Sprintf("%s-n%04d", f.regions[r], k),
			addr:   fmt.Sprintf("10.%d.%d.%d:7946", r, k/250, k%250+1),
			region: f.regions[r],
		})
		f.byName[f.members[i].name] = i
	}
	if cfg.Encrypt {
		f.key = make([]byte, 32)
		for i := range f.key {
			f.key[i] = byte(f.rng.IntN(256))
		}
	}
	return f
}

// Regions returns the region names.
func (f *Fleet) Regions() []string { return f.regions }

// Size returns the number of node slots.
func (f *Fleet) Size() int { return len(f.members) }

// originRegion is where the origin (and its change log) lives: a region cut
// from it cannot read the log either.
func (f *Fleet) originRegion() string { return f.regions[0] }

func (f *Fleet) gossipConfig(m *member, seeds []string) (gossip.Config, error) {
	var c gossip.Config
	if f.cfg.Gossip != nil {
		c = f.cfg.Gossip()
	} else {
		c = gossip.DefaultWANConfig()
		c.Memberlist = memberlist.DefaultWANConfig()
	}
	t, err := f.Net.ListenMemory(m.addr, m.region, &m.c)
	if err != nil {
		return c, err
	}
	c.Name, c.Region, c.Transport, c.Seeds = m.name, m.region, t, seeds
	c.BindAddr = ":7946"
	m.reg = prometheus.NewRegistry()
	c.Registerer = m.reg
	c.Logger = slog.New(f.obs.handler(m.idx))
	if f.key != nil {
		c.SecretKeys = [][]byte{f.key}
	} else {
		c.Insecure = true // an in-memory network: plaintext unless Encrypt
	}
	return c, nil
}

func (f *Fleet) start(m *member, seeds []string) error {
	c, err := f.gossipConfig(m, seeds)
	if err != nil {
		return err
	}
	a := nodeApplier{f, m.idx}
	if c.Held == nil {
		c.Held = func(ns, key string) record.Version { return f.held(m.idx, ns, key) }
	}
	fc := follow.WANConfig()
	fc.Resume, fc.Logger = m.resume, c.Logger
	fl, err := follow.New(fc, logApplier{a}, follow.LogFunc(func(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
		return f.readLog(m.region, after, limit)
	}))
	if err != nil {
		return err
	}
	n, err := gossip.New(c, a, fl)
	if err != nil {
		_ = fl.Close()
		return err
	}
	m.node, m.follower, m.up = n, fl, true
	f.obs.setUp(m.idx, true)
	return nil
}

// Start starts every node: the first of each region joins the first of
// region 0, the others join the first of their region. It returns once
// every node sees every other, or fails after timeout (virtual).
func (f *Fleet) Start(timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	firsts := map[string]string{}
	for _, m := range f.members[:f.cfg.Regions] {
		var seeds []string
		if m.idx > 0 {
			seeds = []string{f.members[0].addr}
		}
		if err := f.start(m, seeds); err != nil {
			return 0, err
		}
		firsts[m.region] = m.addr
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(f.members))
	for _, m := range f.members[f.cfg.Regions:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.start(m, []string{firsts[m.region]}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if err := f.WaitMembership(timeout); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// WaitMembership waits until every up node sees exactly the up nodes.
func (f *Fleet) WaitMembership(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		bad := f.membershipLag()
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("membership not converged after %s: %s", timeout, bad)
		}
		time.Sleep(5 * time.Second)
	}
}

// membershipLag returns "" when every up node sees every up node, else a
// description of the first that does not.
func (f *Fleet) membershipLag() string {
	up := 0
	for _, m := range f.members {
		if m.up {
			up++
		}
	}
	for _, m := range f.members {
		if !m.up {
			continue
		}
		if k := len(m.node.Members()); k != up {
			return fmt.Sprintf("%s sees %d of %d", m.name, k, up)
		}
	}
	return ""
}

// Close stops every node.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, m := range f.members {
		if m.node != nil {
			wg.Add(1)
			go func() { defer wg.Done(); f.stop(m) }()
		}
	}
	wg.Wait()
}

func (f *Fleet) stop(m *member) {
	if m.node == nil {
		return
	}
	f.obs.setUp(m.idx, false)
	m.base = m.base.Add(gatherCounts(m.reg))
	m.resume = m.follower.Cursor()
	_ = m.node.Close()
	_ = m.follower.Close()
	m.node, m.follower, m.up = nil, nil, false
}

// Publish publishes a new version of a fresh key from member idx (which
// must be up), as a publisher would after writing the origin and its log.
func (f *Fleet) Publish(idx int, value []byte) error {
	m := f.members[idx]
	f.mu.Lock()
	f.seq++
	rec := record.Record{Namespace: "routes", Key: fmt.Sprintf("k%06d", f.seq), Value: value, Version: record.MakeVersion(time.Now(), uint16(f.seq))}
	id := rec.Namespace + "/" + rec.Key
	tr := f.newTracked(rec.Version, time.Now(), idx)
	f.changes[id] = tr
	f.log = append(f.log, rec.Change())
	f.mu.Unlock()
	return m.node.Publish(context.Background(), rec)
}

func (f *Fleet) arrived(idx int, ns, key string, v record.Version) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	tr := f.changes[ns+"/"+key]
	if tr == nil || v < tr.version || tr.arrived[idx] != 0 {
		return
	}
	tr.arrived[idx] = max(now.Sub(tr.at), time.Nanosecond)
}

func (f *Fleet) readLog(region string, after record.Version, limit int) ([]record.Change, error) {
	if f.Net.IsCut(region, f.originRegion()) {
		return nil, fmt.Errorf("fleetsim: origin unreachable from %s: %w", region, netsim.ErrCut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := sort.Search(len(f.log), func(i int) bool { return f.log[i].Version > after })
	out := slices.Clone(f.log[i:min(len(f.log), i+limit)])
	return out, nil
}

// RandomUp returns the index of a random up member.
func (f *Fleet) RandomUp() int {
	for {
		i := f.rng.IntN(len(f.members))
		if f.members[i].up {
			return i
		}
	}
}

// Stop crashes member i (no Leave).
func (f *Fleet) Stop(i int) { f.stop(f.members[i]) }

// Restart starts member i again on its address, resuming from its log
// cursor, seeded by the first node of its region (or of region 0).
func (f *Fleet) Restart(i int) error {
	m := f.members[i]
	seed := f.members[0].addr
	for _, o := range f.members {
		if o.region == m.region && o.up && o != m {
			seed = o.addr
			break
		}
	}
	return f.start(m, []string{seed})
}

// Member names member i.
func (f *Fleet) Member(i int) (name, region string, up bool) {
	m := f.members[i]
	return m.name, m.region, m.up
}

// Traffic sums the traffic counters of every member.
func (f *Fleet) Traffic() netsim.Traffic {
	var t netsim.Traffic
	for _, m := range f.members {
		t = t.Add(m.c.Traffic())
	}
	return t
}

// GossipCounts are the gossip package's own counters, summed over nodes.
type GossipCounts struct {
	Received map[string]float64 // messages_received_total by path
	Sent     map[string]float64 // messages_sent_total by path
	Acks     float64            // push_acks_total
	Retries  float64            // push_retries_total
	Dropped  float64            // messages_dropped_total
}

// Add returns c plus o.
func (c GossipCounts) Add(o GossipCounts) GossipCounts {
	r := GossipCounts{Received: map[string]float64{}, Sent: map[string]float64{}, Acks: c.Acks + o.Acks, Retries: c.Retries + o.Retries, Dropped: c.Dropped + o.Dropped}
	for _, src := range []GossipCounts{c, o} {
		for k, v := range src.Received {
			r.Received[k] += v
		}
		for k, v := range src.Sent {
			r.Sent[k] += v
		}
	}
	return r
}

// Sub returns c minus o.
func (c GossipCounts) Sub(o GossipCounts) GossipCounts {
	neg := GossipCounts{Received: map[string]float64{}, Sent: map[string]float64{}, Acks: -o.Acks, Retries: -o.Retries, Dropped: -o.Dropped}
	for k, v := range o.Received {
		neg.Received[k] = -v
	}
	for k, v := range o.Sent {
		neg.Sent[k] = -v
	}
	return c.Add(neg)
}

// ChangeMessages is the change messages (push, relay, gossip) plus acks
// received.
func (c GossipCounts) ChangeMessages() float64 {
	return c.Received["push"] + c.Received["relay"] + c.Received["gossip"] + c.Acks
}

func gatherCounts(reg *prometheus.Registry) GossipCounts {
	c := GossipCounts{Received: map[string]float64{}, Sent: map[string]float64{}}
	if reg == nil {
		return c
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			switch name {
			case "dataplane_gossip_messages_received_total":
				c.Received[label(m, "path")] += v
			case "dataplane_gossip_messages_sent_total":
				c.Sent[label(m, "path")] += v
			case "dataplane_gossip_push_acks_total":
				c.Acks += v
			case "dataplane_gossip_push_retries_total":
				c.Retries += v
			case "dataplane_gossip_messages_dropped_total":
				c.Dropped += v
			}
		}
	}
	return c
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Gossip sums the gossip counters of every member, over all its lives.
func (f *Fleet) Gossip() GossipCounts {
	c := GossipCounts{}
	for _, m := range f.members {
		c = c.Add(m.base)
		if m.node != nil {
			c = c.Add(gatherCounts(m.reg))
		}
	}
	return c
}

// Delivery summarises the changes published since the last call to
// ResetChanges: per (node, change) the time from publish to the node first
// holding it, over nodes up at the end, and how many never arrived.
type Delivery struct {
	Changes   int
	Latencies []time.Duration // sorted
	Missing   int             // (node, change) pairs never delivered
}

// Quantile returns the q-quantile of the latencies (0 if none).
func (d Delivery) Quantile(q float64) time.Duration {
	if len(d.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(d.Latencies)-1) + 0.5)
	return d.Latencies[i]
}

// Delivery returns the delivery of the tracked changes to members up now,
// counting only arrivals; since restricts to changes published at or after
// it.
func (f *Fleet) Delivery(since time.Time) Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d Delivery
	for _, tr := range f.changes {
		if tr.at.Before(since) {
			continue
		}
		d.Changes++
		for i, m := range f.members {
			if !m.up {
				continue
			}
			if tr.arrived[i] == 0 {
				d.Missing++
				continue
			}
			d.Latencies = append(d.Latencies, tr.arrived[i])
		}
	}
	slices.Sort(d.Latencies)
	return d
}

// AllDelivered reports whether every up member holds every change
// published at or after since.
func (f *Fleet) AllDelivered(since time.Time) bool { return f.Delivery(since).Missing == 0 }

// joinedAt returns when the member at index obs last logged member name
// (re)joining.
func (f *Fleet) joinedAt(obs int, name string) (time.Time, bool) {
	o := f.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.joins[name][obs]
	return t, ok
}

// Wall returns the real time (not the bubble's virtual clock), for the
// wall time a scenario took on this machine.
func Wall() time.Time {
	var tv syscall.Timeval
	if err := syscall.Gettimeofday(&tv); err != nil {
		return time.Time{}
	}
	return time.Unix(tv.Sec, tv.Usec*1000)
}

// CPU returns the process's user+system CPU time.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// observer reads the nodes' logs for membership events: suspicions and
// failures declared by each node about each other, and rejoins.
type observer struct {
	f  *Fleet
	mu sync.Mutex // guards the fields below
	up map[string]bool
	// suspicions and failures of members that were up at the time and
	// reachable from the node that declared them (not across a cut).
	falseSuspicions, falseFailures int
	suspicions, failures           int
	// rejoins: by member name, when each observer last saw it (re)join;
	// losses: when each observer last declared it failed or left.
	joins, losses map[string]map[int]time.Time
	names         map[string]int
	// healed: when each region pair's last cut healed (Fleet.Heal).
	healed map[[2]string]time.Time
}

// suspectGrace is how long after a cut heals a suspicion across it still
// counts as one of a member unreachable when its probe went out: a probe
// interval plus a probe timeout of memberlist's WAN preset, rounded up.
const suspectGrace = 10 * time.Second

func newObserver(f *Fleet) *observer {
	return &observer{f: f, up: map[string]bool{}, joins: map[string]map[int]time.Time{}, losses: map[string]map[int]time.Time{}, names: map[string]int{}, healed: map[[2]string]time.Time{}}
}

// reachable reports whether member name is up and not cut from the
// member at index idx: a suspicion of it by idx is false. The caller
// holds o.mu.
func (o *observer) reachable(idx int, name string) bool {
	j, ok := o.f.byName[name]
	if !ok || !o.up[name] {
		return false
	}
	a, b := o.f.members[idx].region, o.f.members[j].region
	return !o.f.Net.IsCut(a, b) && time.Since(o.healed[regionPair(a, b)]) >= suspectGrace
}

func regionPair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Heal ends the cut between regions a and b, and remembers when, so that a
// suspicion of a member across it logged shortly after (its probe went out
// during the cut) is not counted as false.
func (f *Fleet) Heal(a, b string) {
	f.Net.Heal(a, b)
	f.obs.mu.Lock()
	f.obs.healed[regionPair(a, b)] = time.Now()
	f.obs.mu.Unlock()
}

// aliveIn reports whether the member at index obs counted member name
// alive at t (since the fleet started), by its last join and loss log
// lines: known is false if it logged neither before t.
func (f *Fleet) aliveIn(obs int, name string, t time.Time) (alive, known bool) {
	o := f.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	j, jok := o.joins[name][obs]
	l, lok := o.losses[name][obs]
	jok = jok && !j.After(t)
	lok = lok && !l.After(t)
	switch {
	case jok && lok:
		return j.After(l), true
	case lok:
		return false, true
	}
	return jok, jok
}

func (o *observer) setUp(i int, up bool) {
	o.mu.Lock()
	o.up[o.f.members[i].name] = up
	o.names[o.f.members[i].name] = i
	o.mu.Unlock()
}

// Membership is what the observer counted. A suspicion or failure is
// false when the member was up and reachable from the node that declared
// it: suspecting a member across a partition is right, not false.
type Membership struct {
	Suspicions, FalseSuspicions int // "suspect" declarations
	Failures, FalseFailures     int // members declared failed
}

// Membership returns the counts so far.
func (f *Fleet) Membership() Membership {
	o := f.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	return Membership{o.suspicions, o.falseSuspicions, o.failures, o.falseFailures}
}

// SeenAt returns, for member name, the latest time each up observer saw it
// (re)join after t, and how many up observers (itself excluded) have not.
func (f *Fleet) SeenAt(idx int, t time.Time) (last time.Time, missing int) {
	o := f.obs
	name := f.members[idx].name
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, m := range f.members {
		if !m.up || i == idx {
			continue
		}
		at, ok := o.joins[name][i]
		if !ok || at.Before(t) {
			missing++
			continue
		}
		if at.After(last) {
			last = at
		}
	}
	return last, missing
}

func (o *observer) handler(idx int) slog.Handler { return &obsHandler{o: o, idx: idx} }

type obsHandler struct {
	o   *observer
	idx int
}

func (h *obsHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *obsHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *obsHandler) WithGroup(string) slog.Handler                { return h }

func (h *obsHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	member := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "member" {
			member = a.Value.String()
			return false
		}
		return true
	})
	o := h.o
	switch {
	case strings.HasPrefix(msg, "Suspect ") && strings.Contains(msg, "has failed"):
		name := strings.Fields(msg)[1]
		o.mu.Lock()
		o.suspicions++
		if o.reachable(h.idx, name) {
			o.falseSuspicions++
		}
		o.mu.Unlock()
	case msg == "gossip member failed or left":
		o.mu.Lock()
		o.failures++
		if o.reachable(h.idx, member) {
			o.falseFailures++
		}
		if o.losses[member] == nil {
			o.losses[member] = map[int]time.Time{}
		}
		o.losses[member][h.idx] = time.Now()
		o.mu.Unlock()
	case msg == "gossip member joined" || msg == "gossip member rejoined":
		o.mu.Lock()
		if o.joins[member] == nil {
			o.joins[member] = map[int]time.Time{}
		}
		o.joins[member][h.idx] = time.Now()
		o.mu.Unlock()
	}
	return nil
}
