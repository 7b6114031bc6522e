// Package pairbench times two operations against each other in a way that
// holds on a machine busy with other work: rounds alternate the two (the
// order flips every round), and each run is timed by the CPU time of the
// thread that ran it, not by the wall clock, so time the scheduler gives to
// other processes counts for neither. What load still does (caches and
// branch predictors shared with other work) it does to both alike, round
// after round; the spread of the per-round ratios says how much it did.
//
// It is for benchmarks: a benchmark calls Run with the two operations and
// gets the per-round ratio (median and spread) reported as metrics beside
// its ns/op, which is then per round.
package pairbench

import (
	"runtime"
	"slices"
	"sync"
	"testing"
)

// Op performs n operations, the first with index from: it runs the whole
// loop itself, so that the harness adds no call per operation.
type Op func(from, n int)

// Result is what Run measured: per round, ns of thread CPU time per
// operation of each Op and their ratio.
type Result struct {
	Ours, Base, Ratio []float64
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 { return Quantile(xs, 0.5) }

// Quantile returns the q-quantile of xs (nearest rank; 0 for none).
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[i]
}

// Run runs b.N rounds on each of GOMAXPROCS goroutines (each locked to its
// thread): a round performs chunk operations of ours and chunk of base, in
// an order that flips every round, and records their thread CPU times.
// It reports, as metrics, the median ns per operation of each, and the
// per-round ratio ours/base: its median, and its 10th and 90th
// percentiles as the spread. Goroutines start each round together, so
// that both run beside the same work of the others.
func Run(b *testing.B, chunk int, ours, base Op) Result {
	b.ResetTimer()
	res := measure(b.N, chunk, ours, base)
	b.StopTimer()
	b.ReportMetric(Median(res.Ours), "ours-cpu-ns/op")
	b.ReportMetric(Median(res.Base), "base-cpu-ns/op")
	b.ReportMetric(Median(res.Ratio), "ratio")
	b.ReportMetric(Quantile(res.Ratio, 0.1), "ratio-p10")
	b.ReportMetric(Quantile(res.Ratio, 0.9), "ratio-p90")
	return res
}

// measure is Run without the reporting.
func measure(rounds, chunk int, ours, base Op) Result {
	procs := runtime.GOMAXPROCS(0)
	var mu sync.Mutex
	var res Result
	barrier := newBarrier(procs)
	var wg sync.WaitGroup
	for g := range procs {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var r Result
			from := g * 7919
			for round := range rounds {
				barrier.wait()
				first, second := ours, base
				if round%2 == 1 {
					first, second = base, ours
				}
				t0 := threadCPU()
				first(from, chunk)
				t1 := threadCPU()
				second(from, chunk)
				t2 := threadCPU()
				a, c := float64(t1-t0)/float64(chunk), float64(t2-t1)/float64(chunk)
				if round%2 == 1 {
					a, c = c, a
				}
				if a > 0 && c > 0 {
					r.Ours = append(r.Ours, a)
					r.Base = append(r.Base, c)
					r.Ratio = append(r.Ratio, a/c)
				}
				from += chunk
			}
			mu.Lock()
			res.Ours = append(res.Ours, r.Ours...)
			res.Base = append(res.Base, r.Base...)
			res.Ratio = append(res.Ratio, r.Ratio...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return res
}

// barrier lets n goroutines wait for each other, again and again.
type barrier struct {
	mu    sync.Mutex
	cond  *sync.Cond
	n     int
	count int
	gen   int
}

func newBarrier(n int) *barrier {
	b := &barrier{n: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// wait returns once n goroutines have called it in this generation.
func (b *barrier) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	gen := b.gen
	b.count++
	if b.count == b.n {
		b.count = 0
		b.gen++
		b.cond.Broadcast()
		return
	}
	for gen == b.gen {
		b.cond.Wait()
	}
}
