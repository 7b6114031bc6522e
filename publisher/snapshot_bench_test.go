package publisher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// countingStore counts the snapshot bytes written through it.
type countingStore struct {
	origin.Store
	written atomic.Int64
}

func (s *countingStore) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	b, err := record.MarshalSnapshot(snap)
	if err != nil {
		return err
	}
	s.written.Add(int64(len(b)))
	return s.Store.PutSnapshot(ctx, snap)
}

// BenchmarkSnapshotPerWrite measures one snapshot pass after `changed`
// writes into a namespace of n records of about 200 bytes held by an
// in-memory origin: the cost a write adds to the publisher's snapshots.
// Run the 1M case alone, once: -bench 'SnapshotPerWrite/n=1000000' -benchtime 1x.
func BenchmarkSnapshotPerWrite(b *testing.B) {
	const changed = 100
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ctx := context.Background()
			store := &countingStore{Store: mem.New()}
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
