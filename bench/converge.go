package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// checkConvergence reads, at every sentinel, every key it holds and
// compares the version served with the origin's latest. A read that
// returns an older version marked stale is a stale-while-revalidate answer:
// it started a refresh, so the key is read again once refreshes have had
// time to finish (a few round trips), and only if that second read is
// still behind is it a stale read. A read that returns an older version
// without marking it stale is a stale read at once.
func (d *deployment) checkConvergence(ctx context.Context, keys int) (Convergence, error) {
	var conv Convergence
	truth, err := d.originVersions(ctx, keys)
	if err != nil {
		return conv, err
	}
	type pair struct{ slot, key int }
	var again []pair
	read := func(s *slot, k int) (record.Version, bool, error) {
		rctx, cancel := context.WithTimeout(ctx, d.cfg.ReadTimeout)
		defer cancel()
		v, err := s.node.Get(rctx, ns, keyName(k))
		if err != nil {
			return 0, false, err
		}
		return v.Version, v.Stale, nil
	}
	for i, s := range d.slots {
		s.mu.RLock()
		for k := range keys {
			e, held := s.node.Peek(ns, keyName(k))
			if !held || e.Record.Version == 0 {
				continue
			}
			conv.Checked++
			v, stale, err := read(s, k)
			switch {
			case err == nil && v >= truth[k]:
			case err != nil || stale:
				again = append(again, pair{i, k})
			default:
				conv.Stale++
				conv.note(d, i, k, v, truth[k], "served as fresh")
			}
		}
		s.mu.RUnlock()
	}
	if len(again) == 0 {
		return conv, nil
	}
	// Give the refreshes the first reads started time to land.
	deadline := time.Now().Add(d.cfg.ReadTimeout + 2*d.cfg.maxRTT() + time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, p := range again {
			s := d.slots[p.slot]
			s.mu.RLock()
			e, ok := s.node.Peek(ns, keyName(p.key))
			s.mu.RUnlock()
			if !ok || e.Record.Version < truth[p.key] {
				done = false
				break
			}
		}
		if done {
			break
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return conv, err
		}
	}
	for _, p := range again {
		s := d.slots[p.slot]
		s.mu.RLock()
		v, _, err := read(s, p.key)
		s.mu.RUnlock()
		if err == nil && v >= truth[p.key] {
			conv.Revalidated++
			continue
		}
		conv.Stale++
		conv.note(d, p.slot, p.key, v, truth[p.key], fmt.Sprintf("after revalidation (err %v)", err))
	}
	return conv, nil
}

func (c *Convergence) note(d *deployment, slot, key int, got, want record.Version, how string) {
	if len(c.Examples) < 5 {
		s := d.slots[slot]
		c.Examples = append(c.Examples, fmt.Sprintf("sentinel %s-%d %s: version %s, origin has %s, %s",
			d.regions[s.region], s.index, keyName(key), got, want, how))
	}
}

// originVersions reads every key's version from the origin directly.
func (d *deployment) originVersions(ctx context.Context, keys int) ([]record.Version, error) {
	out := make([]record.Version, keys)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				rec, err := d.direct.Get(ctx, ns, keyName(k), 0)
				if err != nil && !errors.Is(err, origin.ErrNotFound) {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				out[k] = rec.Version
			}
		}()
	}
	for k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	return out, errors.Join(errs...)
}
