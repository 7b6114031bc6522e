package statehash_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// BenchmarkChange is the hash CPU of one applied change: the old state of a
// key out, the new one in.
func BenchmarkChange(b *testing.B) {
	old := elem(1)
	next := old
	next.Version++
	var h statehash.Hash
	b.ReportAllocs()
	for b.Loop() {
		h.Replace(old, next)
	}
}

// BenchmarkAdd is the hash CPU of adding one element (a new key, or one
// record of a snapshot being loaded).
func BenchmarkAdd(b *testing.B) {
	e := elem(1)
	var h statehash.Hash
	b.ReportAllocs()
	for b.Loop() {
		h.Add(e)
	}
}

// BenchmarkNamespace hashes a whole namespace of n records (what a node
// loading a snapshot, or a publisher starting, pays), on one core and on
// every core (the hash is a sum, so parts hash in parallel and combine).
// Element building (the value digest) is included; the values are 200
// bytes, about a keys record. cpu-ns/record is CPU time (all threads),
// which a loaded machine does not inflate as it does wall time.
func BenchmarkNamespace(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		recs := make([]record.Record, n)
		val := make([]byte, 200)
		for i := range recs {
			recs[i] = record.Record{Namespace: "keys", Key: fmt.Sprintf("ks/%064x", i), Version: record.Version(1<<40 + i), Value: val}
		}
		b.Run(fmt.Sprintf("records=%d/cores=1", n), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				var h statehash.Hash
				for _, r := range recs {
					h.Add(statehash.ElementOf(r))
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/float64(n), "cpu-ns/record")
		})
		b.Run(fmt.Sprintf("records=%d/cores=%d", n, runtime.GOMAXPROCS(0)), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				hashParallel(recs)
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/float64(n), "cpu-ns/record")
		})
	}
}

func hashParallel(recs []record.Record) statehash.Hash {
	p := runtime.GOMAXPROCS(0)
	parts := make([]statehash.Hash, p)
	var wg sync.WaitGroup
	for w := range p {
		wg.Go(func() {
			for i := w; i < len(recs); i += p {
				parts[w].Add(statehash.ElementOf(recs[i]))
			}
		})
	}
	wg.Wait()
	var h statehash.Hash
	for i := range parts {
		h.Combine(&parts[i])
	}
	return h
}

// BenchmarkCombine is the lane arithmetic alone: adding one hash to
// another (1024 16-bit lanes, four to a 64-bit word).
func BenchmarkCombine(b *testing.B) {
	a, o := statehash.Of(elem(1)), statehash.Of(elem(2))
	for b.Loop() {
		a.Combine(&o)
	}
}
