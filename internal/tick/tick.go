// Package tick runs a function on a fixed interval until told to stop: the
// loop that a node's background tasks, a gossip member's reconnects and a
// progress bar each wrote out by hand (a ticker, a select on the stop
// channel, a call).
package tick

import "time"

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
