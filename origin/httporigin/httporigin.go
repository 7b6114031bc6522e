// Package httporigin is an origin.Store whose backend is a set of regional
// cache nodes (package cachenode), with the real origin as a fallback: the
// cache tier of RFC options 3 and 4B, seen by a sentinel as just another
// origin.
//
// # Routing
//
// Each record read goes to the node with the highest rendezvous
// (highest-random-weight) score for its ns/key, so every sentinel of a region
// sends a key to the same node and the region reads each key from the origin
// about once per cache window; adding or removing a node moves only the keys
// it gains or loses. A compare-and-swap goes to the same node, which applies
// the written record to its cache, so a write is visible to every reader of
// the region at once. Change log calls and snapshots go to the highest-scoring
// node of a fixed key, so every sentinel of the region polls the log on one
// node, which shares its origin log reads among them
// (cachenode.Config.Timing.LogTailTTL): a region's log polls cost about one origin
// read per LogTailTTL. Readers count that TTL in origin.Timing.ReplicaLag.
// A namespace's signed checkpoints and snapshot proofs (CheckpointParts)
// go to the node of its snapshot, which shares their origin reads too.
//
// When a node cannot be reached, times out, or answers outside the protocol
// (a 5xx without a cachenode error code, a redirect), it is marked down for
// Config.NodeBackoff and the next node in rendezvous order is tried; when no
// node answers, Config.Fallback (the real origin) serves the call, and
// without one the call fails with origin.ErrUnavailable. A node that answers
// "unavailable" (its origin failed) is not marked down, but the next node is
// still tried. A compare-and-swap moves to the next node only when it surely
// never reached the first (the connection was refused, or the node was
// marked down): after that its outcome is unknown, and it fails with
// origin.ErrUnavailable rather than risk applying it twice.
//
// # Conditional reads
//
// A version's ETag is the version itself ("<hex16>"), so Get with a non-zero
// ifNewer sends If-None-Match: "<ifNewer>" and a node holding nothing newer
// answers 304 with no body (origin.ErrNotModified). No per-key memory of
// ETags is needed.
//
// # Errors
//
// Node answers map back by their error code: not_found → origin.ErrNotFound,
// conflict → origin.ErrConflict, truncated → origin.ErrLogTruncated, invalid
// → record.ErrInvalid, corrupt (the origin's object does not decode) →
// record.ErrCorrupt, unavailable → origin.ErrUnavailable. A body that does not
// decode, or a record of another key, is record.ErrCorrupt naming the key.
// Input is validated before it travels (origin.CheckSwap, origin.CheckChange),
// so bad input fails with record.ErrInvalid without a request.
//
// # Limits
//
// A node that was unreachable for a while may hold an outdated copy of a key
// written meanwhile through another node or the Fallback, until its fresh
// window ends or gossip tells it (cache nodes join gossip for this).
package httporigin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/origin"
)

// Defaults for Config fields left zero.
const (
	// DefaultTimeout matches the cache's default RefreshTimeout: a node
	// waiting for a slow origin is not mistaken for a failed node.
	DefaultTimeout     = 5 * time.Second
	DefaultNodeBackoff = time.Second
	// dialTimeout bounds connecting to a node with the default client, so
	// a node whose host is gone fails over in a second, not in Timeout.
	dialTimeout = time.Second
)

// ErrUnauthorized means a cache node refused the request's token (401 or
// 403): a configuration error, not an outage.
var ErrUnauthorized = errors.New("cache node refused the token")

// HTTPClient sends the store's requests; *http.Client is one. Wrap one to
// inject latency or faults, or to count requests.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Config says which cache nodes a Store reads through.
type Config struct {
	// Nodes are the base URLs of the region's cache nodes, e.g.
	// "http://10.0.1.5:7080". Required, at least one. Every sentinel of a
	// region must list the same URLs (in any order): rendezvous hashing
	// scores the URL strings.
	Nodes []string
	// Fallback is the real origin, used when no node answers. Optional:
	// nil makes such calls fail with origin.ErrUnavailable.
	Fallback origin.Store
	// Token is the nodes' write token (cachenode.Config.WriteToken), sent
	// on writes, change log appends and trims, and snapshot puts.
	Token string
	// ReadToken is sent on reads when set (cachenode.Config.ReadToken).
	ReadToken string
	// HTTPClient sends requests; nil means a client with keep-alive
	// connections, a one-second connect timeout, that never follows
	// redirects.
	HTTPClient HTTPClient
	// TLS configures that default client for https:// nodes: the CAs to
	// trust (RootCAs) and the client certificate for nodes that require
	// mutual TLS (Certificates); see package internal/tlsconfig. Nil means
	// the system's roots and no client certificate. It is an error to set
	// both TLS and HTTPClient.
	TLS *tls.Config
	// Timeout bounds each attempt on one node; zero means DefaultTimeout.
	// The caller's context bounds the whole call. Keep it above the nodes'
	// cache RefreshTimeout, so that a slow origin read behind a node is not
	// taken for a failure of the node.
	Timeout time.Duration
	// NodeBackoff is how long a node that failed is skipped; zero means
	// DefaultNodeBackoff.
	NodeBackoff time.Duration
	// MaxSnapshotSize bounds a snapshot read or written, in bytes; zero
	// means wire.DefaultMaxSnapshotSize.
	MaxSnapshotSize int64
	// Logger receives node failures and recoveries; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Store is an origin.Store over a set of cache nodes. It is safe for
// concurrent use.
type Store struct {
	nodes    []*node
	fallback origin.Store
	token    string
	rtoken   string
	client   HTTPClient
	timeout  time.Duration
	backoff  time.Duration
	maxSnap  int64
	log      *slog.Logger
	now      func() time.Time
}

var _ origin.Store = (*Store)(nil)

// node is one cache node and its health mark.
type node struct {
	base string // URL without a trailing slash
	seed uint64 // hash of base: its identity in rendezvous scores
	// downUntil is when the node may be tried again after a failure (Unix
	// ns); 0 while it answers.
	downUntil atomic.Int64
}

// New returns a Store over cfg.Nodes. It fails on a malformed or duplicate
// node URL, naming it, or on a negative duration or size.
func New(cfg Config) (*Store, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("httporigin: Config.Nodes is empty: list at least one cache node URL, e.g. http://127.0.0.1:7080")
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("httporigin: Config.Timeout must not be negative, got %v", cfg.Timeout)
	case cfg.NodeBackoff < 0:
		return nil, fmt.Errorf("httporigin: Config.NodeBackoff must not be negative, got %v", cfg.NodeBackoff)
	case cfg.MaxSnapshotSize < 0:
		return nil, fmt.Errorf("httporigin: Config.MaxSnapshotSize must not be negative, got %d", cfg.MaxSnapshotSize)
	case cfg.TLS != nil && cfg.HTTPClient != nil:
		return nil, errors.New("httporigin: Config.TLS configures the default client: set it on Config.HTTPClient instead")
	}
	s := &Store{
		fallback: cfg.Fallback,
		token:    cfg.Token,
		rtoken:   cfg.ReadToken,
		client:   cfg.HTTPClient,
		timeout:  orDefault(cfg.Timeout, DefaultTimeout),
		backoff:  orDefault(cfg.NodeBackoff, DefaultNodeBackoff),
		maxSnap:  orDefault(cfg.MaxSnapshotSize, defaultMaxSnapshotSize),
		log:      cfg.Logger,
		now:      time.Now,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "httporigin")
	seen := make(map[string]int)
	for i, raw := range cfg.Nodes {
		base, err := checkNodeURL(raw)
		if err != nil {
			return nil, fmt.Errorf("httporigin: Config.Nodes[%d]: %w", i, err)
		}
		if j, dup := seen[base]; dup {
			return nil, fmt.Errorf("httporigin: Config.Nodes[%d] %q repeats Nodes[%d]", i, raw, j)
		}
		seen[base] = i
		s.nodes = append(s.nodes, &node{base: base, seed: hashString(base)})
	}
	if s.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		t.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
		if cfg.TLS != nil {
			t.TLSClientConfig = cfg.TLS.Clone()
		}
		s.client = &http.Client{
			Transport: t,
			// A redirect is not part of the protocol: it is answered as
			// a node failure rather than followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return s, nil
}

func orDefault[T int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// checkNodeURL accepts an absolute http(s) URL with a host, an optional
// path prefix and nothing else, and returns it without a trailing slash.
func checkNodeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: scheme must be http or https, e.g. http://127.0.0.1:7080", raw)
	case u.Hostname() == "":
		return "", fmt.Errorf("%q has no host, e.g. http://127.0.0.1:7080", raw)
	case u.User != nil:
		return "", fmt.Errorf("%q: credentials do not go in the URL; use Config.Token", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("%q: a node URL has no query or fragment", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strings.Trim(p, "0123456789") != "" {
			return "", fmt.Errorf("%q: bad port %q", raw, p)
		}
	}
	// Host names are case-insensitive: "http://Cache-A:7080" and
	// "http://cache-a:7080" are one node, with one rendezvous identity.
	return strings.TrimRight(u.Scheme+"://"+strings.ToLower(u.Host)+u.EscapedPath(), "/"), nil
}

// Owner returns the URL of the node that serves ns/key while every node is
// up: the highest rendezvous score.
func (s *Store) Owner(ns, key string) string {
	return s.order(keyHash(ns, key), false)[0].base
}

// order returns the nodes to try for a key hash: those not marked down by
// descending rendezvous score, then, if withDown, the marked-down ones in the
// same order (a last resort when there is no fallback).
func (s *Store) order(h uint64, withDown bool) []*node {
	type scored struct {
		n     *node
		score uint64
	}
	var buf [8]scored
	all := buf[:0]
	for _, n := range s.nodes {
		all = append(all, scored{n, mix(n.seed ^ h)})
	}
	for i := 1; i < len(all); i++ { // insertion sort: a handful of nodes
		for j := i; j > 0 && all[j].score > all[j-1].score; j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
	now := s.now().UnixNano()
	out := make([]*node, 0, len(all))
	for _, sc := range all {
		if sc.n.downUntil.Load() <= now {
			out = append(out, sc.n)
		}
	}
	if withDown {
		for _, sc := range all {
			if sc.n.downUntil.Load() > now {
				out = append(out, sc.n)
			}
		}
	}
	return out
}

// keyHash is the rendezvous input of ns/key: FNV-1a over ns, a zero byte and
// key. It must be the same in every process, so no seeded hash.
func keyHash(ns, key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(ns); i++ {
		h = (h ^ uint64(ns[i])) * 1099511628211
	}
	h *= 1099511628211 // the zero separator
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return h
}

func hashString(s string) uint64 { return keyHash("", s) }

// mix is splitmix64's finaliser: it spreads node ^ key into a score whose bits
// all depend on every input bit, so scores of different nodes for one key are
// independent.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// nodeError is an attempt that failed because of the node rather than with
// an answer about the data: the next node may be tried.
type nodeError struct {
	node string
	err  error // wraps origin.ErrUnavailable
	// sick: the node itself failed (unreachable, timed out, off-protocol),
	// so it is marked down. Otherwise it answered that its origin failed.
	sick bool
	// sent: the request may have reached the node, so a non-idempotent
	// call must not be repeated elsewhere.
	sent bool
}

func (e *nodeError) Error() string { return "cache node " + e.node + ": " + e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

// transportError classifies an error of HTTPClient.Do.
func transportError(n *node, err error) *nodeError {
	var op *net.OpError
	sent := !(errors.As(err, &op) && op.Op == "dial")
	return &nodeError{node: n.base, err: fmt.Errorf("%w: %v", origin.ErrUnavailable, err), sick: true, sent: sent}
}

// attempt is one call on one node, with a context bounded by Config.Timeout.
type attempt func(ctx context.Context, n *node) error

// call runs fn on the nodes in rendezvous order of h until one answers (an
// error that is not a nodeError is an answer, too). When no node answers, it
// hands the call to the fallback through fb, if there is a fallback: when
// every node failed, or, for a non-idempotent call, when the request reached
// none of them.
func (s *Store) call(ctx context.Context, h uint64, idempotent bool, fn attempt, fb func(origin.Store) error) error {
	var last error
	for _, n := range s.order(h, s.fallback == nil) {
		if err := ctx.Err(); err != nil {
			return ctxError(err, last)
		}
		actx, cancel := context.WithTimeout(ctx, s.timeout)
		err := fn(actx, n)
		cancel()
		var ne *nodeError
		if !errors.As(err, &ne) {
			s.markUp(n)
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return ctxError(cerr, err)
		}
		if ne.sick {
			s.markDown(n, err)
		}
		last = err
		if ne.sent && !idempotent {
			return err
		}
	}
	if s.fallback != nil {
		return fb(s.fallback)
	}
	if last == nil {
		last = fmt.Errorf("%w: every cache node is marked down", origin.ErrUnavailable)
	}
	return last
}

// ctxError is the error of a call whose context ended: it wraps the context's
// error and, for a deadline, origin.ErrUnavailable (no answer in time).
func ctxError(cerr, last error) error {
	if errors.Is(cerr, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w (last: %v)", origin.ErrUnavailable, cerr, last)
	}
	if last != nil {
		return fmt.Errorf("%w (last: %v)", cerr, last)
	}
	return cerr
}

func (s *Store) markDown(n *node, err error) {
	until := s.now().Add(s.backoff).UnixNano()
	if old := n.downUntil.Swap(until); old == 0 {
		s.log.Warn("cache node failed; skipping it", "node", n.base, "for", s.backoff, "err", err)
	}
}

func (s *Store) markUp(n *node) {
	if n.downUntil.Load() != 0 && n.downUntil.Swap(0) != 0 {
		s.log.Info("cache node answers again", "node", n.base)
	}
}
