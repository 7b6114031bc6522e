// Package bench runs the RFC's options side by side: in one process on
// loopback, a simulated multi-region deployment (sentinels, optional cache
// nodes, a publisher, the origin in the first region, real S3 and DynamoDB
// servers), the same Zipf workload and fault schedule for each option, and
// a report of read latency, propagation time, origin load and cost,
// availability during faults and stale reads after convergence.
//
// Delays between regions apply to real traffic: gossip packets and streams
// go through gossip/netsim, origin and cache-tier requests through an
// http.RoundTripper that sends each request after the link's one-way delay
// and returns its answer after another. Faults act the same way: an origin
// outage refuses every origin request, a partition cuts one region's links
// (gossip and HTTP), gossip loss drops packets, restarts close sentinels and
// open them again.
//
// `dataplane bench` is the command-line front end; see its -help.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/internal/tick"
)

// Report is the outcome of a run.
type Report struct {
	// Config is the run's configuration.
	Config Config `json:"config"`
	// Backends says where each origin server was, or why it was
	// unavailable.
	Backends map[Backend]string `json:"backends"`
	// Links are the one-way delays between regions, in ms.
	Links map[string]float64 `json:"links_ms"`
	// Results has one entry per option, in the order run.
	Results []*Result `json:"results"`
	// Started is when the run began; Seconds how long it took.
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// Machine describes where it ran.
	Machine string `json:"machine"`
}

// Progress receives the run's progress; a nil Progress is ignored.
type Progress interface {
	// Phase reports that option number i (0-based) of n entered a phase
	// planned to last d.
	Phase(option string, i, n int, phase string, d time.Duration)
}

// Run runs every option of cfg against b's servers and returns the report.
// Options whose origin server is unavailable are reported as skipped. It
// returns an error only when ctx ends or nothing could run.
func Run(ctx context.Context, cfg Config, b *Backends, progress Progress) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{
		Config:   cfg,
		Backends: b.Describe(),
		Started:  time.Now().UTC(),
		Machine:  fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		Links:    map[string]float64{},
	}
	regions := regionNames[:cfg.Regions]
	probe := newNetwork(cfg.Seed, regions, cfg.MinDelay, cfg.MaxDelay, cfg.Jitter, lanLink(cfg))
	for i, a := range regions {
		for _, o := range regions[i+1:] {
			rep.Links[a+"-"+o] = ms(probe.link(a, o).Delay)
		}
	}
	for i, opt := range cfg.Options {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if why, missing := b.Missing[opt.Origin]; missing {
			rep.Results = append(rep.Results, &Result{Option: opt, Skipped: fmt.Sprintf("%s server unavailable: %s", opt.Origin, firstLine(why))})
			continue
		}
		if cfg.replicas() {
			opt.Name += fmt.Sprintf(", per-region replicas (lag %s)", cfg.ReplicaLag)
		}
		res := runOption(ctx, &cfg, opt, b, i, progress)
		rep.Results = append(rep.Results, res)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	return rep, nil
}

func lanLink(cfg Config) netsim.Link {
	return netsim.Link{Delay: cfg.LANDelay, Jitter: cfg.LANDelay / 2}
}

// snapshotTimeout bounds the snapshot a run takes before its restarts.
const snapshotTimeout = 2 * time.Minute

// settleFor is opt's convergence bound: how long after the last write
// every sentinel must serve the latest version. TTL options: the fresh
// window (twice with a cache tier, whose nodes have their own) plus a round
// trip; gossip options: one change-log interval, its settle window and a
// round trip, since the log is the backstop when gossip fails.
func settleFor(cfg *Config, opt Option) time.Duration {
	var b time.Duration
	if opt.Gossip {
		b = cfg.LogInterval + time.Second
	} else {
		b = cfg.TTL
		if opt.Tier {
			b *= 2
		}
	}
	b += 2*cfg.maxRTT() + time.Second
	return max(b, cfg.Settle)
}

// warmupFor is opt's unmeasured warm-up: at least two fresh windows plus
// a second for the TTL options, whose sentinels warm from a snapshot and
// so all refresh together one TTL after start (and whose cache nodes start
// cold), so that the steady phase measures the steady state, not that
// first wave.
func warmupFor(cfg *Config, opt Option) time.Duration {
	if opt.Gossip {
		return cfg.Warmup
	}
	return max(cfg.Warmup, 2*cfg.TTL+time.Second)
}

// runOption deploys opt, runs the workload and the fault schedule, checks
// convergence and tears everything down.
func runOption(ctx context.Context, cfg *Config, opt Option, b *Backends, idx int, progress Progress) *Result {
	res := &Result{Option: opt, Phase: map[string]*PhaseStats{}}
	start := time.Now()
	defer func() { res.Duration = time.Since(start).Seconds() }()
	report := func(phase string, d time.Duration) {
		if progress != nil {
			progress.Phase(opt.ID, idx, len(cfg.Options), phase, d)
		}
	}
	report("start-up", 3*time.Second)

	dir, err := os.MkdirTemp("", "dataplane-bench-")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer os.RemoveAll(dir)
	nw := newNetwork(cfg.Seed, regionNames[:cfg.Regions], cfg.MinDelay, cfg.MaxDelay, cfg.Jitter, lanLink(*cfg))
	latest := make([]versionCell, cfg.Keys)
	tl := &timeline{start: start}
	d, err := deploy(ctx, cfg, opt, nw, b, dir, latest, tl)
	if err != nil {
		res.Error = fmt.Sprintf("deploy: %v", err)
		return res
	}
	res.SetupSeconds = time.Since(start).Seconds()
	defer func() {
		t := time.Now()
		d.close()
		res.TeardownSeconds = time.Since(t).Seconds()
	}()

	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	w := newWorkload(cfg, d, latest)
	wait := w.run(wctx)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopWork()
			wait()
		}
	}
	defer stop()

	phase := func(name string, dur time.Duration) error {
		w.setPhase(name)
		res.Phases = append(res.Phases, PhaseStart{Name: name, At: time.Since(start).Seconds()})
		report(name, dur)
		return tick.Sleep(ctx, dur)
	}
	err = func() error {
		if err := phase(phaseWarmup, warmupFor(cfg, opt)); err != nil {
			return err
		}
		c0, t0 := d.counts(), time.Now()
		if err := phase(phaseSteady, cfg.Steady); err != nil {
			return err
		}
		c1, t1 := d.counts(), time.Now()
		res.SteadySeconds = t1.Sub(t0).Seconds()
		res.Origin = map[string]OriginCounts{}
		for role, c := range c1 {
			o := c0[role]
			c.add(OriginCounts{
				Gets: -o.Gets, NotModified: -o.NotModified, NotFound: -o.NotFound, LogReads: -o.LogReads,
				SnapshotReads: -o.SnapshotReads, Writes: -o.Writes, LogAppends: -o.LogAppends,
				SnapshotWrites: -o.SnapshotWrites, Errors: -o.Errors, ReadBytes: -o.ReadBytes,
				SnapshotBytes: -o.SnapshotBytes, WriteBytes: -o.WriteBytes,
				ReadUnits4K: -o.ReadUnits4K, WriteUnits1K: -o.WriteUnits1K,
			})
			res.Origin[role] = c
		}

		nw.setOriginDown(true)
		err := phase(phaseOutage, cfg.Fault)
		nw.setOriginDown(false)
		if err != nil {
			return err
		}
		if err := phase(phaseRecover, cfg.Recover); err != nil {
			return err
		}

		nw.isolate(regionNames[cfg.Regions-1])
		err = phase(phasePartition, cfg.Fault)
		nw.healAll()
		if err != nil {
			return err
		}
		if err := phase(phaseRecover, cfg.Recover); err != nil {
			return err
		}

		nw.setGossipLoss(cfg.GossipLoss)
		err = phase(phaseLoss, cfg.Fault)
		nw.setGossipLoss(0)
		if err != nil {
			return err
		}
		// Restarted sentinels warm from a fresh snapshot, as in production
		// where the publisher snapshots every minute; it is taken while the
		// cluster recovers from the loss.
		snapDone := make(chan error, 1)
		go func() {
			// Bounded so a hung origin cannot stall the run, generously:
			// a snapshot reads every key, and a loaded machine's origin
			// server may take many seconds for that.
			sctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
			defer cancel()
			_, err := d.publisher.Snapshot(sctx, ns)
			snapDone <- err
		}()
		if err := phase(phaseRecover, cfg.Recover); err != nil {
			return err
		}
		if err := <-snapDone; err != nil {
			return fmt.Errorf("snapshot before restarts: %w", err)
		}
		restartDone := make(chan error, 1)
		w.setPhase(phaseRestart)
		res.Phases = append(res.Phases, PhaseStart{Name: phaseRestart, At: time.Since(start).Seconds()})
		report(phaseRestart, cfg.Fault)
		go func() { restartDone <- d.restartOnePerRegion(ctx) }()
		if err := tick.Sleep(ctx, cfg.Fault); err != nil {
			return err
		}
		if err := <-restartDone; err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		if err := phase(phaseRecover, cfg.Recover); err != nil {
			return err
		}

		w.writing.Store(false)
		settle := settleFor(cfg, opt)
		res.SettleSeconds = settle.Seconds()
		w.mu.Lock()
		last := w.lastWriteAt
		w.mu.Unlock()
		return phase(phaseSettle, max(0, settle-time.Since(last)))
	}()
	stop()
	if err != nil {
		res.Error = err.Error()
	}

	w.mu.Lock()
	res.ReadLatency = quantiles(w.latSteady)
	res.ReadLatencyAll = quantiles(w.latAll)
	res.Propagation = quantiles(w.propSteady)
	res.PropagationAll = quantiles(w.propAll)
	res.PropagationSamples = w.propSteady
	res.Unpropagated = w.unfinished
	res.Served = quantiles(w.servedSteady)
	res.Unserved = w.unserved
	res.FreshBehind = w.freshBehind
	res.Phase = w.stats
	w.mu.Unlock()
	if st := res.Phase[phaseSteady]; st != nil {
		res.SteadyWrites = st.Writes
	}
	if res.SteadySeconds > 0 {
		reads := res.Origin["sentinel"].Reads() + res.Origin["cachenode"].Reads()
		res.OriginReadsPerSec = float64(reads) / res.SteadySeconds
		if res.SteadyWrites > 0 {
			res.ReadsPerWrite = float64(reads) / float64(res.SteadyWrites)
		}
	}
	res.cost(cfg.Prices)
	res.OriginTotal = d.counts()
	res.ReplicaCopied, res.ReplicaLost = d.replicaCounts()
	res.Timeline = tl.values()

	if err == nil {
		report("convergence check", 5*time.Second)
		t := time.Now()
		res.Converge, err = d.checkConvergence(ctx, cfg.Keys)
		res.CheckSeconds = time.Since(t).Seconds()
		if err != nil {
			res.Error = "convergence check: " + err.Error()
		}
	}
	return res
}

// restartOnePerRegion restarts one sentinel in every region at once,
// never the first sentinel of the origin's region (the publisher's gossip
// entry point).
func (d *deployment) restartOnePerRegion(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(d.regions))
	for r := range d.regions {
		idx := -1
		for i, s := range d.slots {
			if s.region == r && i != 0 {
				idx = i
				break
			}
		}
		if idx < 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = d.restart(ctx, d.slots[idx])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
