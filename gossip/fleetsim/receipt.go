package fleetsim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// ReceiptSample is one publish timed to its fleet receipt.
type ReceiptSample struct {
	// Receipt is from publish to Receipt returning (met or not).
	Receipt time.Duration
	// Last is from publish to the last up node holding the change (the
	// propagation the receipt certifies); zero if some node never did.
	Last    time.Duration
	Met     bool
	Regions []gossip.RegionReceipt
}

// PublishReceipt publishes a fresh key from member idx (which must be up),
// as Publish does, and waits on that member's gossip node for the receipt
// that share of every region applied it, up to limit.
func (f *Fleet) PublishReceipt(idx int, value []byte, share float64, limit time.Duration) (ReceiptSample, error) {
	m := f.members[idx]
	f.mu.Lock()
	f.seq++
	rec := record.Record{Namespace: "routes", Key: fmt.Sprintf("k%06d", f.seq), Value: value, Version: record.MakeVersion(time.Now(), uint16(f.seq))}
	t0 := time.Now()
	tr := f.newTracked(rec.Version, t0, idx)
	f.changes[rec.Namespace+"/"+rec.Key] = tr
	f.log = append(f.log, rec.Change())
	f.mu.Unlock()
	if err := m.node.Publish(context.Background(), rec); err != nil {
		return ReceiptSample{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	r, err := m.node.Receipt(ctx, rec.Namespace, rec.Key, rec.Version, share)
	s := ReceiptSample{Receipt: time.Since(t0), Met: r.Met, Regions: r.Regions}
	if err != nil && ctx.Err() == nil {
		return s, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, mm := range f.members {
		if !mm.up {
			continue
		}
		if tr.arrived[i] == 0 && i != idx {
			return s, nil // not everywhere (yet)
		}
		s.Last = max(s.Last, tr.arrived[i])
	}
	return s, nil
}

// Quantiles returns the p50, p99 and max of ds.
func Quantiles(ds []time.Duration) (p50, p99, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1)+0.5)] }
	return q(0.5), q(0.99), s[len(s)-1]
}

// held is what member idx holds of ns/key, as its cache would answer a
// receipt's query: the tracked version once it arrived there.
func (f *Fleet) held(idx int, ns, key string) record.Version {
	f.mu.Lock()
	defer f.mu.Unlock()
	tr := f.changes[ns+"/"+key]
	if tr == nil || (tr.arrived[idx] == 0 && tr.publisher != idx) {
		return 0
	}
	return tr.version
}
