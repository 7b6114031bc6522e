package tick_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/tick"
)

// TestEvery: f runs repeatedly until stop is closed, and Every returns
// then.
func TestEvery(t *testing.T) {
	stop := make(chan struct{})
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick.Every(stop, time.Millisecond, func() { calls.Add(1) })
	}()
	deadline := time.Now().Add(30 * time.Second)
	for calls.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("f called %d times in 30 s, want at least 3", calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Every did not return after stop was closed")
	}
}

// TestUntil: Until returns once f reports done, without stop.
func TestUntil(t *testing.T) {
	var calls int
	tick.Until(make(chan struct{}), time.Millisecond, func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("f called %d times, want 3 (the third reported done)", calls)
	}
}
