package cache

import (
	"testing"
	"time"
)

// TestCoarseClockAdvancesAndStops: the cache's default clock moves on by
// itself while it runs, never goes back, and after Stop reads the precise
// time, still not going back.
func TestCoarseClockAdvancesAndStops(t *testing.T) {
	t.Parallel()
	c := newCoarseClock(time.Millisecond)
	first := c.NowNano()
	if first == 0 {
		t.Fatal("a running clock read 0")
	}
	deadline := time.Now().Add(10 * time.Second)
	last := first
	for last == first {
		if time.Now().After(deadline) {
			t.Fatal("the clock did not move in 10s")
		}
		time.Sleep(time.Millisecond) // waiting for the clock's own tick
		now := c.NowNano()
		if now < last {
			t.Fatalf("the clock went back from %d to %d", last, now)
		}
		last = now
	}
	c.Stop()
	c.Stop() // a second Stop is harmless
	if c.now.Load() != 0 {
		t.Fatal("a stopped clock still holds a coarse time")
	}
	a := c.NowNano()
	b := c.NowNano()
	if a < last || b < a {
		t.Fatalf("after Stop the clock read %d then %d, having read %d", a, b, last)
	}
}
