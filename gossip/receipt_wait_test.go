package gossip

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestReceiptWaitedIsTheWait: a receipt that is never met (a lone node
// waiting for a version it does not hold: nothing wakes it) reports as
// Waited the whole wait until its context ended, not the time of its last
// evaluation (at the start).
func TestReceiptWaitedIsTheWait(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 1})
	v := c.clock.Now() // never published
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	begin := time.Now()
	r, err := c.nodes[0].Receipt(ctx, "routes", "never.example.com", v, 1)
	total := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) || r.Met {
		t.Fatalf("Receipt = %+v, %v; want not met, DeadlineExceeded", r, err)
	}
	// Waited is measured inside the call: at most the call, and all of it
	// but the time to enter and leave.
	if r.Waited > total || r.Waited < total/2 {
		t.Fatalf("Waited %s for a call of %s", r.Waited, total)
	}
}
