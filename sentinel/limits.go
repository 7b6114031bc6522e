package sentinel

import (
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/dataplane/dataplane/record"
)

// Holder is an optional capability of a Source, detected at run time:
// Cached answers a lookup as Get would, but only when it can without an
// origin read and without blocking; ok false means Get would read the
// origin. The gateway bounds what such a lookup may cost (Proxy.MissRate,
// MaxConcurrentMisses); a Source without Cached is taken to hold
// every key and gets no such bounds.
type Holder interface {
	Cached(ns, key string) (rec record.Record, err error, ok bool)
}

// Errors a lookup of a key not held returns when a bound is reached.
var (
	// ErrRateLimited means the client spent its miss budget (429).
	ErrRateLimited = errors.New("sentinel: too many lookups of unknown hosts or keys from this client")
	// ErrBusy means MaxConcurrentMisses lookups were in flight for longer
	// than a lookup waits for a slot (250 ms, 503).
	ErrBusy = errors.New("sentinel: too many lookups in flight")
)

// clientBuckets is the most clients whose miss budget is remembered; the
// least used are forgotten first (and start again with a full bucket).
const clientBuckets = 1 << 16

// missGate bounds what lookups of keys a Source does not hold cost: a
// token bucket per client address and a limit on those in flight.
type missGate struct {
	rate, burst float64 // tokens per second and bucket size; rate 0: no per-client limit
	now         func() time.Time
	buckets     *otter.Cache[string, *bucket]
	slots       chan struct{} // nil: no concurrency limit
	wait        time.Duration
	metrics     *metrics
}

// bucket is one client's token bucket.
type bucket struct {
	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   time.Time
}

func newMissGate(cfg Config, m *metrics) (*missGate, error) {
	g := &missGate{now: cfg.Now, wait: missWait, metrics: m}
	if cfg.MissRate > 0 {
		g.rate, g.burst = cfg.MissRate, max(1, math.Ceil(missBurstPeriod*cfg.MissRate))
		var err error
		if g.buckets, err = otter.New(&otter.Options[string, *bucket]{MaximumSize: clientBuckets}); err != nil {
			return nil, err
		}
	}
	if cfg.MaxConcurrentMisses > 0 {
		g.slots = make(chan struct{}, cfg.MaxConcurrentMisses)
	}
	return g, nil
}

// admit takes a token of r's client and a slot; release gives the slot back.
func (g *missGate) admit(r *http.Request) (release func(), err error) {
	if g.buckets != nil && !g.allow(clientKey(r.RemoteAddr)) {
		g.metrics.refused.WithLabelValues("rate").Inc()
		return nil, ErrRateLimited
	}
	if g.slots == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
	default:
		t := time.NewTimer(g.wait)
		defer t.Stop()
		select {
		case g.slots <- struct{}{}:
		case <-t.C:
			g.metrics.refused.WithLabelValues("concurrency").Inc()
			return nil, ErrBusy
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return func() { <-g.slots }, nil
}

// allow takes one token from client's bucket, refilled at g.rate.
func (g *missGate) allow(client string) bool {
	b, ok := g.buckets.GetIfPresent(client)
	if !ok {
		b, _ = g.buckets.SetIfAbsent(client, &bucket{tokens: g.burst, last: g.now()})
	}
	now := g.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(g.burst, b.tokens+d.Seconds()*g.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientKey is the rate-limit key of a remote address: its IP, or for IPv6
// its /64 (one host usually holds a whole /64).
func clientKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		host, _, _ := net.SplitHostPort(remote)
		return host
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// memo remembers the parsed form of a route or key per version, so the
// request path parses JSON only when a record changes. It is a bounded
// otter cache: a large or hostile key set evicts the least valuable
// entries, never the whole memo.
type memo struct {
	c *otter.Cache[memoKey, memoEntry]
}

type memoKey struct{ ns, key string }

type memoEntry struct {
	version record.Version
	value   any
}

func newMemo(size int) (memo, error) {
	c, err := otter.New(&otter.Options[memoKey, memoEntry]{MaximumSize: size})
	return memo{c: c}, err
}

func (m memo) get(ns, key string, v record.Version) (any, bool) {
	e, ok := m.c.GetIfPresent(memoKey{ns, key})
	if !ok || e.version != v {
		return nil, false
	}
	return e.value, true
}

func (m memo) put(ns, key string, v record.Version, value any) {
	m.c.Set(memoKey{ns, key}, memoEntry{version: v, value: value})
}
