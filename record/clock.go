package record

import (
	"sync"
	"time"
)

// Clock hands out hybrid logical clock versions. Every call to Now returns a
// version strictly greater than every version it returned or observed before,
// even when the wall clock steps back or many goroutines call at once; the
// physical part follows the wall clock whenever the wall clock is ahead.
//
// A Clock is safe for concurrent use. The zero value is not usable; call
// NewClock.
type Clock struct {
	wall func() time.Time

	mu   sync.Mutex // guards last
	last Version
}

// NewClock returns a Clock reading the wall clock from now, or from time.Now
// when now is nil.
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{wall: now}
}

// Now returns a fresh version, strictly greater than any before it.
func (c *Clock) Now() Version {
	phys := MakeVersion(c.wall(), 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if phys > c.last {
		c.last = phys
	} else {
		// Same millisecond, or the wall clock stepped back: count up the
		// logical part, which carries into the physical part on overflow and
		// so stays strictly increasing.
		c.last++
	}
	return c.last
}

// Wall returns the wall-clock time this clock reads (its physical part
// follows it).
func (c *Clock) Wall() time.Time { return c.wall() }

// Observe folds a version seen elsewhere into the clock, so that later calls
// to Now return versions greater than v.
func (c *Clock) Observe(v Version) {
	c.mu.Lock()
	if v > c.last {
		c.last = v
	}
	c.mu.Unlock()
}
