package publisher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// BenchmarkSnapshotPerWrite measures one snapshot pass after `changed`
// writes into a namespace of n records of about 200 bytes held by an
// in-memory origin: the cost a write adds to the publisher's snapshots.
// Run the 1M case alone, once: -bench 'SnapshotPerWrite/n=1000000' -benchtime 1x.
func BenchmarkSnapshotPerWrite(b *testing.B) {
	const changed = 100
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ctx := context.Background()
			store := newCountingStore()
			base := record.MakeVersion(time.Now().Add(-time.Hour), 0)
			value := make([]byte, 170)
			for i := range value {
				value[i] = 'a' + byte(i%26)
			}
			snap := record.Snapshot{Namespace: "routes", Version: base, Records: make([]record.Record, 0, n)}
			key := func(i int) string { return fmt.Sprintf("host-%08d.example.com", i) }
			for i := 0; i < n; i++ {
				r := record.Record{Namespace: "routes", Key: key(i), Value: value, Version: base}
				if err := store.CompareAndSwap(ctx, r, 0); err != nil {
					b.Fatal(err)
				}
				snap.Records = append(snap.Records, r)
			}
			if err := store.PutSnapshot(ctx, snap); err != nil {
				b.Fatal(err)
			}
			snap = record.Snapshot{}
			cfg := publisher.DefaultConfig()
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			p, err := publisher.New(store, cfg)
			if err != nil {
				b.Fatal(err)
			}
			v := base
			store.written.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				b.StopTimer()
				for j := 0; j < changed; j++ {
					i := (it*changed*7919 + j*104729) % n
					v++
					r := record.Record{Namespace: "routes", Key: key(i), Value: value, Version: v}
					if _, err := origin.Publish(ctx, store, r); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := p.Snapshot(ctx, "routes"); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(store.written.Load())/float64(b.N), "snapB/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*changed), "ns/write")
		})
	}
}

// BenchmarkSnapshotNewBase measures the pass that rewrites a namespace's
// base (when the deltas outgrow Layout.DeltaRatio of it): read the base and
// deltas, merge, write new chunks. With the default ratio of 0.25 it comes
// once per 0.25·n changed records, so it adds newBase/(0.25·n) to a write.
func BenchmarkSnapshotNewBase(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ctx := context.Background()
			store := newCountingStore()
			base := record.MakeVersion(time.Now().Add(-time.Hour), 0)
			value := make([]byte, 170)
			for i := range value {
				value[i] = 'a' + byte(i%26)
			}
			key := func(i int) string { return fmt.Sprintf("host-%08d.example.com", i) }
			snap := record.Snapshot{Namespace: "routes", Version: base, Records: make([]record.Record, 0, n)}
			for i := 0; i < n; i++ {
				snap.Records = append(snap.Records, record.Record{Namespace: "routes", Key: key(i), Value: value, Version: base})
			}
			if err := store.PutSnapshot(ctx, snap); err != nil {
				b.Fatal(err)
			}
			snap = record.Snapshot{}
			rebase := origin.DefaultLayout()
			rebase.DeltaRatio = 1e-9
			v := base
			store.written.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				delta := record.Snapshot{Namespace: "routes"}
				for j := 0; j < 100; j++ {
					v++
					delta.Records = append(delta.Records, record.Record{Namespace: "routes", Key: key((it*100 + j) % n), Value: value, Version: v})
				}
				sort.Slice(delta.Records, func(i, j int) bool { return delta.Records[i].Key < delta.Records[j].Key })
				delta.Version = v
				if err := origin.AppendSnapshot(ctx, store, delta, 0, rebase); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(store.written.Load())/float64(b.N), "snapB/op")
		})
	}
}
