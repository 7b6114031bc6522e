package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dataplane/dataplane/internal/tick"
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
	// Every sentinel is checked at once (a read that waits for the
	// origin must not hold up the others).
	type staleRead struct {
		pair
		got record.Version
	}
	var fresh []staleRead
	var mu sync.Mutex // guards conv, again and fresh
	d.eachSlot(func(i int, s *slot) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for k := range keys {
			e, held := s.node.Peek(ns, keyName(k))
			if !held || e.Record.Version == 0 {
				continue
			}
			v, stale, err := read(s, k)
			mu.Lock()
			conv.Checked++
			switch {
			case err == nil && v >= truth[k]:
			case err != nil || stale:
				again = append(again, pair{i, k})
			default:
				conv.Stale++
				fresh = append(fresh, staleRead{pair{i, k}, v})
			}
			mu.Unlock()
		}
	})
	for _, f := range fresh {
		conv.note(d, f.slot, f.key, f.got, truth[f.key], "served as fresh")
	}
	if len(again) == 0 {
		return conv, nil
	}
	// Read the behind pairs again until they catch up or the deadline
	// passes: each read of a value past its fresh window starts a refresh
	// (a cache sheds refreshes beyond its bound, so one read may not be
	// enough when hundreds of keys are behind at once).
	// The deadline is generous: it is not part of the convergence bound,
	// only room for a slow or overloaded machine (a cache node whose
	// origin reads time out answers with what it holds).
	deadline := time.Now().Add(revalidateWait)
	for len(again) > 0 {
		left := again[:0]
		for _, p := range again {
			s := d.slots[p.slot]
			s.mu.RLock()
			v, _, err := read(s, p.key)
			s.mu.RUnlock()
			if err == nil && v >= truth[p.key] {
				conv.Revalidated++
				continue
			}
			left = append(left, p)
		}
		again = left
		if len(again) == 0 || time.Now().After(deadline) {
			break
		}
		if err := tick.Sleep(ctx, 100*time.Millisecond); err != nil {
			return conv, err
		}
	}
	for _, p := range again {
		s := d.slots[p.slot]
		s.mu.RLock()
		v, _, err := read(s, p.key)
		s.mu.RUnlock()
		conv.Stale++
		conv.note(d, p.slot, p.key, v, truth[p.key], fmt.Sprintf("still behind after revalidating (err %v)", err))
	}
	return conv, nil
}

// revalidateWait bounds how long the convergence check keeps re-reading
// pairs that were behind.
const revalidateWait = 30 * time.Second

func (c *Convergence) note(d *deployment, slot, key int, got, want record.Version, how string) {
	if len(c.Examples) >= 5 {
		return
	}
	s := d.slots[slot]
	ex := fmt.Sprintf("sentinel %s-%d %s: version %s, origin has %s, %s", d.regions[s.region], s.index, keyName(key), got, want, how)
	s.mu.RLock()
	if e, ok := s.node.Peek(ns, keyName(key)); ok {
		ex += fmt.Sprintf("; sentinel holds %s stale=%v age=%s", e.Record.Version, e.Stale, e.Age.Round(time.Millisecond))
	}
	s.mu.RUnlock()
	for i, t := range d.tiers {
		if i/d.cfg.CacheNodes != s.region {
			continue
		}
		if e, ok := t.srv.Cache().Peek(ns, keyName(key)); ok {
			ex += fmt.Sprintf("; cache node %d holds %s stale=%v age=%s", i%d.cfg.CacheNodes, e.Record.Version, e.Stale, e.Age.Round(time.Millisecond))
		}
	}
	c.Examples = append(c.Examples, ex)
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
