package fleetsim

import (
	"flag"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dataplane/dataplane/gossip"
)

var (
	receiptSizes   = flag.String("receipt.sizes", "9,100", "fleet sizes for TestFleetReceipts (9: 3 regions, else 10 regions)")
	receiptChanges = flag.Int("receipt.changes", 10, "publishes timed per fleet in TestFleetReceipts")
)

// TestFleetReceipts times fleet receipts in virtual time: publish on a
// random node, wait for its receipt that 100% of every region applied the
// change, next to the propagation to the last node; and measures the bytes
// the applied-version reports add, as idle traffic per node per second with
// reports against a twin fleet whose reports never update. Every receipt
// must be met, after (never before) the last node held the change.
//
//	go test ./gossip/fleetsim -run TestFleetReceipts -v -receipt.sizes=9,100
func TestFleetReceipts(t *testing.T) {
	var sizes []int
	for _, s := range splitInts(*receiptSizes) {
		sizes = append(sizes, s)
	}
	t.Log("| nodes | regions | receipts | receipt p50 ms | receipt p99 ms | receipt max ms | last node p50 ms | last node p99 ms | last node max ms | idle B/node/s: reports / none | B/node/change: reports / none | report updates per node per change |")
	t.Log("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range sizes {
		regions := 10
		if n < 20 {
			regions = 3
		}
		var row string
		synctest.Test(t, func(t *testing.T) {
			row = fleetReceipts(t, n, regions)
		})
		t.Log(row)
	}
}

func splitInts(s string) []int {
	var out []int
	var cur int
	var any bool
	for _, c := range s + "," {
		if c == ',' {
			if any {
				out = append(out, cur)
			}
			cur, any = 0, false
			continue
		}
		cur, any = cur*10+int(c-'0'), true
	}
	return out
}

func fleetReceipts(t *testing.T, n, regions int) string {
	idle := func(reports bool) (bytesPerSec, bytesPerChange, updatesPerMin float64) {
		cfg := DefaultConfig(n, 1)
		cfg.Regions = regions
		cfg.Gossip = func() gossip.Config {
			c := gossip.DefaultWANConfig()
			if !reports {
				c.ReportInterval = 24 * time.Hour
			}
			return c
		}
		f := New(cfg)
		defer func() { f.Close(); time.Sleep(time.Minute) }()
		if _, err := f.Start(10 * time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second) // settle after the joins
		r := DefaultRunner(f)
		rep := r.Idle(time.Minute)
		r.Changes = 10
		u0 := reportUpdates(f)
		steady, err := r.Steady(0)
		if err != nil {
			t.Fatal(err)
		}
		return rep.IdleBytesPerSec, steady.BytesPerChange, float64(reportUpdates(f)-u0) / float64(n) / 10
	}
	with, withC, upd := idle(true)
	without, withoutC, _ := idle(false)

	cfg := DefaultConfig(n, 1)
	cfg.Regions = regions
	f := New(cfg)
	defer func() { f.Close(); time.Sleep(time.Minute) }()
	if _, err := f.Start(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	var rec, last []time.Duration
	for range *receiptChanges {
		s, err := f.PublishReceipt(f.RandomUp(), []byte(`{"deployment":"d-1"}`), 1, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Met {
			t.Errorf("%d nodes: receipt not met within 30s: %+v", n, s.Regions)
			continue
		}
		if s.Last == 0 || s.Last > s.Receipt {
			t.Errorf("%d nodes: receipt after %s, but the last node held the change after %s", n, s.Receipt, s.Last)
		}
		rec, last = append(rec, s.Receipt), append(last, s.Last)
		time.Sleep(2 * time.Second)
	}
	r50, r99, rmax := Quantiles(rec)
	p50, p99, pmax := Quantiles(last)
	ms := func(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }
	return fmt.Sprintf("| %d | %d | %d | %s | %s | %s | %s | %s | %s | %.0f / %.0f | %.0f / %.0f | %.2f |", n, regions, len(rec),
		ms(r50), ms(r99), ms(rmax), ms(p50), ms(p99), ms(pmax), with, without, withC, withoutC, upd)
}

func reportUpdates(f *Fleet) int {
	total := 0
	for _, m := range f.members {
		if m.node != nil {
			total += m.node.Fleet().ReportUpdates
		}
	}
	return total
}
