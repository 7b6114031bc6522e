package cache

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/dataplane/dataplane/internal/pairbench"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

const benchKeys = 10_000

// zipfKeys returns benchKeys keys and a long Zipf-distributed sequence of
// indexes into them (s=1.01: a few hot keys, a long tail).
func zipfKeys() ([]key, []int) {
	keys := make([]key, benchKeys)
	for i := range keys {
		keys[i] = key{"keys", fmt.Sprintf("ks/%064x", i)}
	}
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, 1.01, 1, benchKeys-1)
	seq := make([]int, 1<<16)
	for i := range seq {
		seq[i] = int(z.Uint64())
	}
	return keys, seq
}

// BenchmarkHit compares a fresh hit through Cache.Get with a bare otter
// GetIfPresent on the same keys, the floor any otter-based cache pays.
func BenchmarkHit(b *testing.B) {
	keys, seq := zipfKeys()
	var next atomic.Uint64 // spreads goroutines over the sequence

	b.Run("cache", func(b *testing.B) {
		o := DefaultOptions()
		o.Default.Fresh = time.Hour
		o.Logger = slog.New(slog.DiscardHandler)
		o.Complete = []string{"keys"} // Apply installs every key, as on a node
		c, err := New(mem.New(), o)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for _, k := range keys {
			c.Apply(record.Record{Namespace: k.ns, Key: k.key, Value: make([]byte, 200), Version: 1})
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				k := keys[seq[i&(len(seq)-1)]]
				i++
				if _, err := c.Get(ctx, k.ns, k.key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("otter", func(b *testing.B) {
		c := otter.Must(&otter.Options[key, []byte]{MaximumSize: 1 << 20})
		defer c.StopAllGoroutines()
		for _, k := range keys {
			c.Set(k, make([]byte, 200))
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				k := keys[seq[i&(len(seq)-1)]]
				i++
				if _, ok := c.GetIfPresent(k); !ok {
					b.Error("miss")
					return
				}
			}
		})
	})

	// The same two with the keys held as copies of the strings looked up
	// (see BenchmarkHitPairedCopiedKeys).
	b.Run("cache-copies", func(b *testing.B) {
		c := hitCache(b, keys, true)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				k := keys[seq[i&(len(seq)-1)]]
				i++
				if _, err := c.Get(ctx, k.ns, k.key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("otter-copies", func(b *testing.B) {
		c := hitOtter(b, keys, true)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				k := keys[seq[i&(len(seq)-1)]]
				i++
				if _, ok := c.GetIfPresent(k); !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
}

// hitCache returns a cache holding every key of keys, fresh for an hour,
// as a node's cache holds a complete namespace; with copies, under copies
// of the key strings, as records decoded from a snapshot or a gossip
// message are.
func hitCache(b *testing.B, keys []key, copies bool) *Cache {
	o := DefaultOptions()
	o.Default.Fresh = time.Hour
	o.Logger = slog.New(slog.DiscardHandler)
	o.Complete = []string{"keys"}
	c, err := New(mem.New(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	for _, k := range keys {
		if copies {
			k = key{strings.Clone(k.ns), strings.Clone(k.key)}
		}
		c.Apply(record.Record{Namespace: k.ns, Key: k.key, Value: make([]byte, 200), Version: 1})
	}
	return c
}

// hitOtter returns a bare otter cache holding a 200-byte value for every
// key of keys, under copies of the key strings with copies.
func hitOtter(b *testing.B, keys []key, copies bool) *otter.Cache[key, []byte] {
	c := otter.Must(&otter.Options[key, []byte]{MaximumSize: 1 << 20})
	b.Cleanup(func() { c.StopAllGoroutines() })
	for _, k := range keys {
		if copies {
			k = key{strings.Clone(k.ns), strings.Clone(k.key)}
		}
		c.Set(k, make([]byte, 200))
	}
	return c
}

// BenchmarkHitPaired is BenchmarkHit measured so that it holds on a busy
// machine: rounds of 4,096 reads through Cache.Get and 4,096 through a bare
// otter GetIfPresent on the same keys alternate on every core, each timed
// by its thread's CPU time (see pairbench). Its ratio metrics are the
// per-round Cache.Get/otter ratio (median, 10th and 90th percentiles);
// ns/op is per round.
//
// Both look up the very strings they hold, so that otter's comparison of
// the key found ends at the pointers; BenchmarkHitPairedCopiedKeys is the
// same with the keys held as copies.
//
//	go test -run '^$' -bench 'BenchmarkHitPaired$' -benchtime 400x ./cache/
func BenchmarkHitPaired(b *testing.B) { hitPaired(b, false) }

// BenchmarkHitPairedCopiedKeys is BenchmarkHitPaired with both caches
// holding copies of the key strings that are looked up, as a node's cache
// holds keys decoded from a snapshot or a gossip message and is asked for
// keys taken from requests: otter then compares the key found byte by
// byte, on both sides (BenchmarkNodeGetHit's baseline does the same).
//
//	go test -run '^$' -bench BenchmarkHitPairedCopiedKeys -benchtime 400x ./cache/
func BenchmarkHitPairedCopiedKeys(b *testing.B) { hitPaired(b, true) }

func hitPaired(b *testing.B, copies bool) {
	keys, seq := zipfKeys()
	c := hitCache(b, keys, copies)
	ot := hitOtter(b, keys, copies)
	ctx := context.Background()
	pairbench.Run(b, 4096, func(from, n int) {
		for i := from; i < from+n; i++ {
			k := keys[seq[i&(len(seq)-1)]]
			if _, err := c.Get(ctx, k.ns, k.key); err != nil {
				b.Error(err)
				return
			}
		}
	}, func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, ok := ot.GetIfPresent(keys[seq[i&(len(seq)-1)]]); !ok {
				b.Error("miss")
				return
			}
		}
	})
}

// BenchmarkOtterValueShape measures what a value larger than four words
// costs otter's own read, the reason the store holds a pointer to the entry
// rather than the entry's hot fields (BENCHMARKS.md, "Holding the hit's
// fields in otter's node"): rounds of 4,096 GetIfPresent of a cache whose
// values are structs of the given size alternate with rounds of one whose
// values are byte slices (three words, the baseline of BenchmarkHit), on
// the same keys, timed by thread CPU time (see pairbench). The 56-byte
// struct is the seven words a fresh hit reads of an entry (entry, space,
// the value's data and length, version, seal, end of the fresh window);
// Go keeps a struct of at most four words and four fields in registers
// and copies a larger one through the stack at each level of otter's
// generic lookup, the 32-byte struct is the contrast.
//
//	go test -run '^$' -bench BenchmarkOtterValueShape -benchtime 400x ./cache/
func BenchmarkOtterValueShape(b *testing.B) {
	keys, seq := zipfKeys()
	base := otterReads(keys, seq, func() []byte { return make([]byte, 200) })
	b.Run("32B", func(b *testing.B) {
		type v4 struct {
			a     *byte
			value []byte
		}
		pairbench.Run(b, 4096, otterReads(keys, seq, func() v4 { return v4{value: make([]byte, 200)} }), base)
	})
	b.Run("56B", func(b *testing.B) {
		type v7 struct {
			a, b, c *byte
			d, e, f int64
			g       *byte
		}
		pairbench.Run(b, 4096, otterReads(keys, seq, func() v7 { return v7{} }), base)
	})
}

// otterReads returns a pairbench.Op reading keys, in the order of seq, from
// a weighted otter cache holding newV() for each (as the store is
// configured); a miss fails the benchmark by a panic.
func otterReads[V any](keys []key, seq []int, newV func() V) pairbench.Op {
	c := otter.Must(&otter.Options[key, V]{MaximumWeight: 1 << 30, Weigher: func(key, V) uint32 { return 1 }})
	for _, k := range keys {
		c.Set(k, newV())
	}
	return func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, ok := c.GetIfPresent(keys[seq[i&(len(seq)-1)]]); !ok {
				panic("otterReads: miss")
			}
		}
	}
}

// BenchmarkConcurrentMisses makes 1000 goroutines miss one new key at once
// per iteration, and reports how many origin reads that cost.
func BenchmarkConcurrentMisses(b *testing.B) {
	const readers = 1000
	store := mem.New()
	var reads atomic.Int64
	var release atomic.Pointer[chan struct{}]
	l := LoaderFunc(func(ctx context.Context, ns, k string, ifNewer record.Version) (record.Record, error) {
		reads.Add(1)
		<-*release.Load() // hold the load until every reader has started
		return store.Get(ctx, ns, k, ifNewer)
	})
	o := DefaultOptions()
	o.Logger = slog.New(slog.DiscardHandler)
	c, err := New(l, o)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		k := fmt.Sprintf("k%d", i)
		if _, err := store.Get(ctx, "keys", k, 0); err != nil {
			if err := store.CompareAndSwap(ctx, record.Record{Namespace: "keys", Key: k, Version: 1, Value: []byte("v")}, 0); err != nil {
				b.Fatal(err)
			}
		}
		ch := make(chan struct{})
		release.Store(&ch)
		var started, done sync.WaitGroup
		started.Add(readers)
		b.StartTimer()
		for range readers {
			done.Go(func() {
				started.Done()
				if _, err := c.Get(ctx, "keys", k); err != nil {
					b.Error(err)
				}
			})
		}
		started.Wait()
		close(ch)
		done.Wait()
	}
	b.ReportMetric(float64(reads.Load())/float64(b.N), "origin-reads/1000-misses")
}
