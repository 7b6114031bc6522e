package main

import (
	"math"
	"testing"
	"time"
)

func TestMedianOf(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{1.20}, 1.20},
		{[]float64{1.25, 0.88, 1.20}, 1.20},
		{[]float64{0.88, 0.95, 1.20, 1.25}, 1.075}, // the mean of the middle two, not the upper
		{[]float64{1.25, 1.20, 0.95, 0.88}, 1.075},
		{nil, 0},
	} {
		if got := medianOf(tc.xs); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("medianOf(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	rs := []result{{rps: 100, p99: 4 * time.Millisecond}, {rps: 300, p99: 2 * time.Millisecond}}
	if m := median(rs); m.rps != 200 || m.p99 != 3*time.Millisecond {
		t.Errorf("median of two rounds: %+v", m)
	}
}
