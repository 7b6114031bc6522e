package dataplane

import (
	"time"

	"github.com/dataplane/dataplane/internal/tick"
)

// NamespaceStatus is what Status reports of one namespace the node holds
// whole (Config.Namespaces).
type NamespaceStatus struct {
	Namespace string `json:"namespace"`
	// Warmed: loaded from a snapshot (origin, local file or peer), or known
	// never to have had one.
	Warmed bool `json:"warmed"`
	// Complete: the version index is up to date, so misses are answered
	// from memory with no origin read.
	Complete bool `json:"complete"`
	// Indexed is the number of keys whose version the node knows.
	Indexed int `json:"indexed"`
	// Loaded is the number of records the warm-up under way (or the last
	// one) has loaded from the origin's snapshot: progress for /readyz.
	Loaded int64 `json:"loaded"`
	// Policy is the namespace's staleness policy: "serve-stale" or
	// "fail-closed after D" (Config.Staleness).
	Policy string `json:"policy,omitempty"`
	// Heard is when the node was last proven current for the namespace
	// (a change-log read's cursor, an applied change's version, a
	// snapshot's version, or in TTL-only mode an origin read); zero if
	// never. HeardAgo is its age, for people.
	Heard    time.Time `json:"heard,omitzero"`
	HeardAgo string    `json:"heard_ago,omitempty"`
	// FailingClosed: the policy fails closed and Heard is older than its
	// D, so reads of the namespace answer ErrUnavailable.
	FailingClosed bool `json:"failing_closed,omitempty"`
}

// Status is a node's state for readiness probes and operators.
type Status struct {
	Ready      bool              `json:"ready"`
	Namespaces []NamespaceStatus `json:"namespaces"`
	// CacheBytes and CacheMaxBytes are the values' estimated size and the
	// bound; NearBound is set from 90%: values are being evicted (their
	// versions stay known) and re-read from the origin when used.
	CacheBytes    uint64 `json:"cache_bytes"`
	CacheMaxBytes uint64 `json:"cache_max_bytes"`
	NearBound     bool   `json:"near_bound"`
}

// nearBound is the share of Cache.MaxBytes from which a node warns.
const nearBound = 0.9

// Status reports the node's readiness, per-namespace progress and memory.
// It never blocks on the origin and is safe for concurrent use.
func (n *Node) Status() Status {
	bytes, maxBytes := n.cache.Usage()
	st := Status{Ready: n.Ready(), CacheBytes: bytes, CacheMaxBytes: maxBytes}
	st.NearBound = float64(bytes) >= nearBound*float64(maxBytes)
	n.completeMu.Lock()
	defer n.completeMu.Unlock()
	for _, ns := range n.cfg.Namespaces {
		nst := NamespaceStatus{
			Namespace: ns,
			Warmed:    n.warmed[ns],
			Complete:  n.cache.IsComplete(ns),
			Indexed:   n.cache.IndexLen(ns),
			Loaded:    n.progress[ns].Load(),
		}
		n.heardStatus(&nst)
		st.Namespaces = append(st.Namespaces, nst)
	}
	return st
}

// pressureLoop warns, at most every pressureWarnEvery, while the cache is
// near its size bound: a node that silently evicts part of a namespace
// reads the origin far more than its operator expects.
func (n *Node) pressureLoop() {
	defer n.wg.Done()
	var warned time.Time
	tick.Every(n.stop, 10*time.Second, func() {
		if st := n.Status(); st.NearBound && time.Since(warned) > pressureWarnEvery {
			warned = time.Now()
			n.log.Warn("cache near its size bound: values are evicted and read from the origin again when used (their versions stay known); raise the cache bound (Config.Cache.MaxBytes, -cache-bytes)",
				"bytes", st.CacheBytes, "max_bytes", st.CacheMaxBytes)
		}
	})
}

// pressureWarnEvery spaces the warnings of pressureLoop.
const pressureWarnEvery = 10 * time.Minute
