package pairbench

import (
	"sync/atomic"
	"testing"
)

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {1, 5}, {0.1, 1}, {0.9, 5}} {
		if got := Quantile(xs, c.q); got != c.want {
			t.Errorf("Quantile(%v, %v) = %v, want %v", xs, c.q, got, c.want)
		}
	}
	if xs[0] != 5 {
		t.Error("Quantile sorted its argument")
	}
	if Median(nil) != 0 {
		t.Error("Median of nothing")
	}
}

var sink atomic.Uint64 // keeps the work from being optimized away

// spin does about work rounds of arithmetic n times.
func spin(work int) Op {
	return func(from, n int) {
		x := uint64(from)
		for range n * work {
			x = x*6364136223846793005 + 1442695040888963407
		}
		sink.Add(x)
	}
}

// TestRunRatio: an operation doing three times the work of the other
// measures about three times its CPU time, whatever else the machine runs
// (thread CPU time, not the wall clock).
func TestRunRatio(t *testing.T) {
	res := measure(20, 2_000, spin(300), spin(100))
	if len(res.Ratio) == 0 {
		t.Fatal("no rounds measured")
	}
	// Every round, whichever ran first: the 10th percentile too.
	if m, lo := Median(res.Ratio), Quantile(res.Ratio, 0.1); m < 2 || m > 4.5 || lo < 1.5 {
		t.Fatalf("ratio median %.2f, 10th percentile %.2f for 3 times the work (rounds %v)", m, lo, res.Ratio)
	}
}
