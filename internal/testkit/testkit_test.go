package testkit

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testscale"
)

// TestPollSeesTheCondition: Poll returns true as soon as the condition
// holds, having checked it again and again until then.
func TestPollSeesTheCondition(t *testing.T) {
	var calls atomic.Int32
	if !Poll(10*time.Second, func() bool { return calls.Add(1) >= 5 }) {
		t.Fatal("Poll gave up on a condition that came")
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("condition checked %d times, want 5 (stop at the first true)", n)
	}
}

// TestPollGivesUp: a condition that never holds makes Poll return false
// once the (scaled) timeout has passed, and not before.
func TestPollGivesUp(t *testing.T) {
	t.Setenv(testscale.Env, "2")
	start := time.Now()
	if Poll(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Fatalf("gave up after %s, before the timeout stretched by %s=2 (40ms)", took, testscale.Env)
	}
}
