package sentinel

import "time"

// SetMissWait sets how long g's lookups of keys not held wait for a slot
// (missWait otherwise), so that a test's flood is answered 503 quickly. Call
// it before g serves.
func SetMissWait(g *Gateway, d time.Duration) { g.gate.wait = d }

// StartReadHeaderTimeout is Start with d as the time to read a request's
// headers (10 s otherwise), so that a test's slow client is cut off soon.
func StartReadHeaderTimeout(cfg ServerConfig, d time.Duration) (*Server, error) {
	return start(cfg, d)
}
