package tick_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testkit"
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
	testkit.Eventually(t, 30*time.Second, "f called 3 times", func() bool { return calls.Load() >= 3 })
	close(stop)
	testkit.Eventually(t, 30*time.Second, "Every returning after stop was closed", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}

// TestUntil: Until returns once f reports done, without stop.
func TestUntil(t *testing.T) {
	var calls int
	tick.Until(make(chan struct{}), time.Millisecond, func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("f called %d times, want 3 (the third reported done)", calls)
	}
}
