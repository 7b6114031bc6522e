// Package tick runs a function on a fixed interval until told to stop: the
// loop that a node's background tasks, a gossip member's reconnects and a
// progress bar each wrote out by hand (a ticker, a select on the stop
// channel, a call); and Sleep, the pause that ends early with a context,
// which the DynamoDB store and the bench's network each wrote out too.
package tick

import (
	"context"
	"time"
)

// Every calls f every d until stop is closed, then returns. The first call
// comes d after Every starts; f runs on the caller's goroutine, so calls
// never overlap, and a call that outlasts d delays the next one instead of
// queueing more.
func Every(stop <-chan struct{}, d time.Duration, f func()) {
	Until(stop, d, func() bool { f(); return false })
}

// Until is Every for a task that can finish: it returns as soon as f
// reports true (or stop is closed).
func Until(stop <-chan struct{}, d time.Duration, f func() (done bool)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if f() {
				return
			}
		}
	}
}

// Sleep waits d or until ctx ends, whichever comes first, and returns
// ctx.Err() in the second case: the pause between a client's retries. A d
// of zero or less returns nil at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
