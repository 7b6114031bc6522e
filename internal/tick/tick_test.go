package tick_test

import (
	"context"
	"errors"
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

// TestSleep: Sleep returns nil once d has passed (at once for d <= 0, even
// with ctx ended), and ctx's error when ctx ends first, without waiting
// out d.
func TestSleep(t *testing.T) {
	if err := tick.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("1ms: %v, want nil", err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tick.Sleep(ended, 0); err != nil {
		t.Errorf("0 with an ended context: %v, want nil", err)
	}
	if err := tick.Sleep(ended, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("an hour with a canceled context: %v, want context.Canceled", err)
	}
	expiring, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	if err := tick.Sleep(expiring, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an hour with a 1ms deadline: %v, want context.DeadlineExceeded", err)
	}
}
