package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/record"
)

// versionCell holds the latest version written of one key.
type versionCell struct{ v atomic.Uint64 }

func (c *versionCell) raise(v record.Version) {
	for {
		cur := c.v.Load()
		if uint64(v) <= cur || c.v.CompareAndSwap(cur, uint64(v)) {
			return
		}
	}
}

func (c *versionCell) load() record.Version { return record.Version(c.v.Load()) }

func keyName(i int) string { return fmt.Sprintf("key-%05d", i) }

// valueGen draws value sizes from the configured distribution.
type valueGen struct {
	rng   *rand.Rand
	sizes []SizeWeight
	total int
}

func newValueGen(seed uint64, sizes []SizeWeight) *valueGen {
	g := &valueGen{rng: rand.New(rand.NewPCG(seed, 0xa5a5)), sizes: sizes}
	for _, s := range sizes {
		g.total += s.Weight
	}
	return g
}

// value returns a value for key i's n-th write, of a drawn size.
func (g *valueGen) value(i, n int) []byte {
	w := g.rng.IntN(g.total)
	size := g.sizes[len(g.sizes)-1].Size
	for _, s := range g.sizes {
		if w < s.Weight {
			size = s.Size
			break
		}
		w -= s.Weight
	}
	b := fmt.Appendf(make([]byte, 0, size), "%s#%d:", keyName(i), n)
	for len(b) < size {
		b = append(b, byte('a'+len(b)%26))
	}
	return b[:size]
}

// Phases of an option's run, in order.
const (
	phaseWarmup    = "warmup"
	phaseSteady    = "steady"
	phaseOutage    = "origin-outage"
	phasePartition = "region-partition"
	phaseLoss      = "gossip-loss"
	phaseRestart   = "node-restarts"
	phaseRecover   = "recover"
	phaseSettle    = "settle"
)

// FaultPhases are the fault windows, in schedule order.
var FaultPhases = []string{phaseOutage, phasePartition, phaseLoss, phaseRestart}

// readResult is the outcome of one read.
type readResult struct {
	phase    string
	latency  time.Duration
	cached   bool // the sentinel held the key before the read
	served   bool
	stale    bool
	behind   bool
	rerouted bool
}

// pendingWrite is a write whose propagation the prober watches.
type pendingWrite struct {
	key     int
	version record.Version
	start   time.Time
	phase   string
	waiting []int // slots that held the key and lack the version
	// serving are the holders not yet serving the version fresh; probed
	// holds when each was last read by the prober.
	serving []int
	probed  map[int]time.Time
	// propDone and servedDone: the two times were recorded.
	propDone, servedDone bool
}

// workload runs the readers, the writer and the propagation prober of one
// option until stopped.
type workload struct {
	cfg    *Config
	d      *deployment
	latest []versionCell

	phase atomic.Pointer[string]
	// writing is cleared when the settle period begins.
	writing atomic.Bool

	results chan readResult
	writes  chan pendingWrite
	// known[slot][key] is the highest version the slot's node was told of
	// by gossip or the change log (Node.Watch), invalidations included.
	known [][]versionCell

	mu         sync.Mutex // guards the fields below, written by the collector and prober
	stats      map[string]*PhaseStats
	latSteady  []float64
	latAll     []float64
	propSteady []float64
	propAll    []float64
	unfinished int
	// servedSteady: publish → the last holder serving the version fresh
	// (steady-phase writes); unserved counts those never seen so.
	servedSteady []float64
	unserved     int
	// freshBehind counts probes that found a holder told of a version
	// serving an older one as fresh (steady phase): must stay 0.
	freshBehind int
	lastWriteAt time.Time
}

func newWorkload(cfg *Config, d *deployment, latest []versionCell) *workload {
	w := &workload{
		cfg: cfg, d: d, latest: latest,
		results: make(chan readResult, 4096),
		writes:  make(chan pendingWrite, 1024),
		stats:   map[string]*PhaseStats{},
		known:   make([][]versionCell, len(d.slots)),
	}
	for i := range w.known {
		w.known[i] = make([]versionCell, cfg.Keys)
	}
	w.setPhase(phaseWarmup)
	w.writing.Store(true)
	return w
}

func (w *workload) setPhase(p string)    { w.phase.Store(&p) }
func (w *workload) currentPhase() string { return *w.phase.Load() }

// statsLocked returns the stats of phase p; w.mu must be held.
func (w *workload) statsLocked(p string) *PhaseStats {
	s := w.stats[p]
	if s == nil {
		s = &PhaseStats{}
		w.stats[p] = s
	}
	return s
}

// run starts the workload's goroutines; they stop when ctx ends, and run
// returns a function that waits for them.
func (w *workload) run(ctx context.Context) (wait func()) {
	var wg, collect sync.WaitGroup
	collect.Add(1)
	go func() {
		defer collect.Done()
		w.collect()
	}()
	perSentinel := w.cfg.ReadRate / float64(len(w.d.slots))
	var readers sync.WaitGroup
	for i := range w.d.slots {
		readers.Add(1)
		go func() {
			defer readers.Done()
			w.reader(ctx, i, perSentinel)
		}()
	}
	if w.d.opt.Gossip {
		for i := range w.d.slots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.watch(ctx, i)
			}()
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.writer(ctx)
	}()
	go func() {
		defer wg.Done()
		w.prober(ctx)
	}()
	return func() {
		readers.Wait()
		close(w.results)
		collect.Wait()
		wg.Wait()
	}
}

// reader reads Zipf-distributed keys at sentinel i at rate per second,
// open loop: each read runs in its own goroutine, so a slow read does not
// delay the next (at most 256 in flight per sentinel).
func (w *workload) reader(ctx context.Context, i int, rate float64) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1000))
	zipf := rand.NewZipf(rng, w.cfg.ZipfS, 1, uint64(w.cfg.Keys-1))
	interval := time.Duration(float64(time.Second) / rate)
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, 256)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	s := w.d.slots[i]
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k := int(zipf.Uint64())
		select {
		case sem <- struct{}{}:
		default:
			continue // overloaded: drop this read
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			w.results <- w.read(ctx, s, k)
		}()
	}
}

// read makes one read of key k at slot s.
func (w *workload) read(ctx context.Context, s *slot, k int) readResult {
	res := readResult{phase: w.currentPhase()}
	if !s.mu.TryRLock() {
		res.rerouted = true
		return res
	}
	defer s.mu.RUnlock()
	key := keyName(k)
	want := w.latest[k].load()
	ent, held := s.node.Peek(ns, key)
	res.cached = held && ent.Record.Version > 0 && !ent.Record.Tombstone
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.ReadTimeout)
	start := time.Now()
	v, err := s.node.Get(rctx, ns, key)
	res.latency = time.Since(start)
	cancel()
	if err == nil {
		res.served = true
		res.stale = v.Stale
		res.behind = v.Version < want
	}
	return res
}

// collect aggregates read results until the channel closes.
func (w *workload) collect() {
	for r := range w.results {
		w.mu.Lock()
		st := w.statsLocked(r.phase)
		if r.rerouted {
			st.Rerouted++
			w.mu.Unlock()
			continue
		}
		st.Reads++
		if r.served {
			st.Served++
		}
		if r.cached {
			st.CachedReads++
			if r.served {
				st.CachedServed++
			}
		}
		if r.stale {
			st.StaleMarked++
		}
		if r.behind {
			st.Behind++
		}
		if r.phase != phaseWarmup {
			l := ms(r.latency)
			w.latAll = append(w.latAll, l)
			if r.phase == phaseSteady {
				w.latSteady = append(w.latSteady, l)
			}
		}
		w.mu.Unlock()
	}
}

// writer publishes Zipf-distributed keys at the write rate until the
// settle period, and hands each write to the prober.
func (w *workload) writer(ctx context.Context) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 7))
	zipf := rand.NewZipf(rng, w.cfg.ZipfS, 1, uint64(w.cfg.Keys-1))
	gen := newValueGen(w.cfg.Seed+1, w.cfg.ValueSizes)
	t := time.NewTicker(time.Duration(float64(time.Second) / w.cfg.WriteRate))
	defer t.Stop()
	defer close(w.writes)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !w.writing.Load() {
			continue
		}
		k := int(zipf.Uint64())
		n++
		value := gen.value(k, n)
		phase := w.currentPhase()
		var holders []int
		for i, s := range w.d.slots {
			if !s.mu.TryRLock() {
				continue
			}
			if e, ok := s.node.Peek(ns, keyName(k)); ok && e.Record.Version > 0 {
				holders = append(holders, i)
			}
			s.mu.RUnlock()
		}
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rec, err := w.d.publisher.Put(wctx, ns, keyName(k), value)
		cancel()
		w.mu.Lock()
		st := w.statsLocked(phase)
		if err != nil {
			st.FailedWrites++
			w.mu.Unlock()
			if errors.Is(err, context.Canceled) {
				return
			}
			continue
		}
		st.Writes++
		w.lastWriteAt = time.Now()
		w.mu.Unlock()
		w.latest[k].raise(rec.Version)
		select {
		case w.writes <- pendingWrite{key: k, version: rec.Version, start: start, phase: phase, waiting: holders, serving: slices.Clone(holders), probed: map[int]time.Time{}}:
		case <-ctx.Done():
			return
		}
	}
}

// watch records what slot i's node is told of, by gossip or the change
// log, through Node.Watch: an invalidation (a value too large to travel
// inline) leaves the old version in the cache, but the node will not serve
// it as fresh again, and its next read fetches the new one. A restarted
// node is watched afresh.
func (w *workload) watch(ctx context.Context, i int) {
	s := w.d.slots[i]
	known := w.known[i]
	for ctx.Err() == nil {
		s.mu.RLock()
		ch, cancel := s.node.Watch(ns)
		s.mu.RUnlock()
		func() {
			defer cancel()
			for {
				select {
				case <-ctx.Done():
					return
				case c, ok := <-ch:
					if !ok {
						return // the node closed: restarted, or the end
					}
					if k, err := strconv.Atoi(strings.TrimPrefix(c.Key, "key-")); err == nil && k >= 0 && k < len(known) {
						known[k].raise(c.Version)
					}
				}
			}
		}()
		if tick.Sleep(ctx, 10*time.Millisecond) != nil {
			return
		}
	}
}

// probeInterval is how often the prober looks at every sentinel: the
// resolution of the propagation times.
const probeInterval = 5 * time.Millisecond

// prober watches, through Node.Peek (which never reads the origin), each
// write until every sentinel that held the key holds its version.
func (w *workload) prober(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	var pending []*pendingWrite
	writes := w.writes
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			for _, p := range pending {
				if p.phase == phaseSteady && !p.propDone {
					w.unfinished++
				}
				if p.phase == phaseSteady && !p.servedDone {
					w.unserved++
				}
			}
			w.mu.Unlock()
			return
		case p, ok := <-writes:
			if !ok {
				writes = nil
				continue
			}
			pending = append(pending, &p)
			continue
		case <-t.C:
		}
		now := time.Now()
		keep := pending[:0]
		for _, p := range pending {
			left := p.waiting[:0]
			for _, i := range p.waiting {
				s := w.d.slots[i]
				if !s.mu.TryRLock() {
					left = append(left, i)
					continue
				}
				e, ok := s.node.Peek(ns, keyName(p.key))
				s.mu.RUnlock()
				told := w.known[i][p.key].load() >= p.version
				if !told && (!ok || e.Record.Version < p.version) {
					left = append(left, i)
				}
			}
			p.waiting = left
			if !p.propDone && len(left) == 0 {
				p.propDone = true
				d := ms(now.Sub(p.start))
				w.mu.Lock()
				w.propAll = append(w.propAll, d)
				if p.phase == phaseSteady {
					w.propSteady = append(w.propSteady, d)
				}
				w.mu.Unlock()
			}
			if !p.servedDone {
				p.serving = w.probeServing(ctx, p, now)
				if len(p.serving) == 0 {
					p.servedDone = true
					w.mu.Lock()
					if p.phase == phaseSteady {
						w.servedSteady = append(w.servedSteady, ms(now.Sub(p.start)))
					}
					w.mu.Unlock()
				}
			}
			if !p.propDone || !p.servedDone {
				keep = append(keep, p)
			}
		}
		pending = keep
	}
}

// servingProbeEvery is how often the prober reads a key on a holder that
// was told of a version it does not serve yet.
const servingProbeEvery = 250 * time.Millisecond

// probeServing returns the holders of p that do not yet serve its version
// fresh (Node.Peek). A holder told of the version (an invalidation: the
// value did not travel inline) fetches it only when the key is read, so the
// prober reads it, every servingProbeEvery, as a reader would: the read
// that a reader would make anyway, made early. With a lagging replica the
// node never serves the replica's older answer as fresh: a read waits for
// the replica and gets the old value marked stale, until the replica has
// the new one, which is what this measures.
func (w *workload) probeServing(ctx context.Context, p *pendingWrite, now time.Time) []int {
	left := p.serving[:0]
	for _, i := range p.serving {
		s := w.d.slots[i]
		if !s.mu.TryRLock() {
			left = append(left, i)
			continue
		}
		// told before the look: a change applied (and watched) between
		// the two would otherwise count an old fresh value as behind.
		told := w.known[i][p.key].load() >= p.version
		e, ok := s.node.Peek(ns, keyName(p.key))
		node := s.node
		s.mu.RUnlock()
		if ok && e.Record.Version >= p.version && !e.Stale {
			continue
		}
		left = append(left, i)
		if told && ok && !e.Stale && p.phase == phaseSteady && *w.phase.Load() == phaseSteady {
			// Told of the version (the cache applied the change before
			// Watch said so), yet serving an older one as fresh: what a
			// lagging replica must never cause.
			w.mu.Lock()
			w.freshBehind++
			w.mu.Unlock()
		}
		if !told || now.Sub(p.probed[i]) < servingProbeEvery {
			continue
		}
		p.probed[i] = now
		go func() {
			rctx, cancel := context.WithTimeout(ctx, w.cfg.ReadTimeout)
			defer cancel()
			_, _ = node.Get(rctx, ns, keyName(p.key))
		}()
	}
	return left
}
