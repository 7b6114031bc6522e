// Package sentinel is the HTTP gateway in front of user deployments. Every
// request is answered from memory: Host → route → API-key check → reverse
// proxy to one of the route's upstreams. The data comes from a Source (the
// node's SWR cache, fed by gossip and the origin), so the gateway keeps
// working whatever state the primary database or the object store is in.
package sentinel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/metricset"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Source is where the gateway reads routes and keys. Get returns the current
// record of ns/key, or an error wrapping origin.ErrNotFound when the key does
// not exist or is deleted. It must be safe for concurrent use and fast: it is
// on every request's path. It bounds its own waits on a miss (the gateway
// adds no timer per request).
type Source interface {
	Get(ctx context.Context, ns, key string) (record.Record, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, ns, key string) (record.Record, error)

// Get implements Source.
func (f SourceFunc) Get(ctx context.Context, ns, key string) (record.Record, error) {
	return f(ctx, ns, key)
}

// Config configures a Gateway: a Proxy and what its host provides.
type Config struct {
	Proxy
	// Source provides routes and keys. Required.
	Source Source
	// Now is the clock for key expiry. Default time.Now.
	Now func() time.Time
	// Logger receives one line per failed request; never a raw key.
	Logger *slog.Logger
	// Registerer receives the gateway's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Transport overrides the upstream transport (tests, benchmarks).
	Transport *http.Transport
}

// Proxy is what the user of a sentinel sets of its gateway
// (ServerConfig.Gateway): upstream timeouts, the key id header and the
// bounds on lookups of strangers' hosts and keys.
type Proxy struct {
	// DialTimeout bounds connecting to one upstream; a failed connect moves
	// on to the next upstream of the route. Default 2s.
	DialTimeout time.Duration
	// UpstreamTimeout bounds the wait for an upstream's response headers.
	// Bodies (streams, websockets) are not cut by it. Default 30s.
	UpstreamTimeout time.Duration
	// KeyIDHeader carries the verified key's id to the upstream. Default
	// "X-Dataplane-Key-Id". The raw key is never forwarded.
	KeyIDHeader string

	// The bounds below apply to lookups of hosts and keys the Source does
	// not hold (see Holder): each may cost an origin read, and a stranger
	// can send any number of them.

	// MissRate is how many such lookups per second one client address (an
	// IPv4 address or an IPv6 /64) may make, with a burst of 5 seconds'
	// worth (a bucket of 5 × MissRate, at least 1: 100 at the default);
	// past it a client is answered 429. Default 20; negative means no
	// per-client limit.
	MissRate float64
	// MaxConcurrentMisses bounds such lookups in flight on this gateway; a
	// lookup that waits 250 ms for a slot is answered 503.
	// Default 64; negative means unbounded.
	MaxConcurrentMisses int
}

// Fixed bounds of the gateway: how long a lookup of a key not held waits
// for a slot (Proxy.MaxConcurrentMisses), how many seconds of
// Proxy.MissRate a client may spend at once, and how many parsed routes and
// keys are remembered.
const (
	missWait        = 250 * time.Millisecond
	missBurstPeriod = 5
	memoSize        = 100_000
)

// Gateway is the sentinel's request handler. It is safe for concurrent use.
type Gateway struct {
	cfg   Config
	proxy *httputil.ReverseProxy
	// keyIDHeader is cfg.KeyIDHeader in canonical form, so that a request
	// sets and deletes it in the header map directly.
	keyIDHeader string
	metrics     *metrics
	memo        memo
	holder      Holder    // Source's Cached, or nil
	gate        *missGate // bounds lookups the holder does not hold
	rr          atomic.Uint64
	// byCode caches the requests counter of each status code, so that a
	// request neither formats its code nor looks its label up.
	byCode [600]atomic.Pointer[prometheus.Counter]
}

type ctxKey struct{}

// proxyState travels with a request from serve to rewrite and the failover
// transport: the route and the upstream the round robin picked first.
type proxyState struct {
	route *parsedRoute
	start int
}

// New validates cfg and returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Source == nil {
		return nil, errors.New("sentinel: Config.Source is required")
	}
	for name, d := range map[string]time.Duration{"DialTimeout": cfg.DialTimeout, "UpstreamTimeout": cfg.UpstreamTimeout} {
		if d < 0 {
			return nil, errors.New("sentinel: Config." + name + " must not be negative")
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 30 * time.Second
	}
	if cfg.MissRate == 0 {
		cfg.MissRate = 20
	}
	if cfg.MaxConcurrentMisses == 0 {
		cfg.MaxConcurrentMisses = 64
	}
	if cfg.KeyIDHeader == "" {
		cfg.KeyIDHeader = "X-Dataplane-Key-Id"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.UpstreamTimeout,
			ExpectContinueTimeout: time.Second,
		}
	}
	g := &Gateway{cfg: cfg, metrics: newMetrics(cfg.Registerer), keyIDHeader: http.CanonicalHeaderKey(cfg.KeyIDHeader)}
	g.holder, _ = cfg.Source.(Holder)
	var err error
	if g.memo, err = newMemo(memoSize); err != nil {
		return nil, fmt.Errorf("sentinel: memo: %w", err)
	}
	if g.gate, err = newMissGate(cfg, g.metrics); err != nil {
		return nil, fmt.Errorf("sentinel: miss limits: %w", err)
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:      g.rewrite,
		Transport:    &failover{base: tr, metrics: g.metrics},
		ErrorHandler: g.proxyError,
		ErrorLog:     slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BufferPool:   copyBuffers{},
	}
	return g, nil
}

// ServeHTTP answers one request: 404 for an unknown host, 401/403 for a
// missing, unknown, disabled or expired key, 502/504 when no upstream
// answers, otherwise the upstream's response.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &requestState{sw: statusWriter{ResponseWriter: w}}
	g.serve(st, r)
	g.countStatus(st.sw.code())
}

// requestState is what the gateway keeps of one request, in one
// allocation: the writer that records its status, and what the proxy
// needs of it.
type requestState struct {
	sw    statusWriter
	proxy proxyState
}

// countStatus counts a request answered with code.
func (g *Gateway) countStatus(code int) {
	if code < 0 || code >= len(g.byCode) {
		g.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
		return
	}
	c := g.byCode[code].Load()
	if c == nil {
		m := g.metrics.requests.WithLabelValues(strconv.Itoa(code))
		c = &m
		g.byCode[code].Store(c)
	}
	(*c).Inc()
}

func (g *Gateway) serve(st *requestState, r *http.Request) {
	w := &st.sw
	host, ok := normalizeHost(r.Host)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad Host header")
		return
	}
	route, err := g.route(r, host)
	if err != nil {
		switch {
		case errors.Is(err, ErrRateLimited):
			writeLimited(w, http.StatusTooManyRequests, "too many lookups of unknown hosts from this client")
		case errors.Is(err, ErrBusy):
			writeLimited(w, http.StatusServiceUnavailable, "too many lookups in flight")
		case errors.Is(err, origin.ErrNotFound):
			writeError(w, http.StatusNotFound, "no route for host "+host)
		case errors.Is(err, ErrBadValue):
			g.cfg.Logger.Error("bad route", "host", host, "err", err)
			writeError(w, http.StatusBadGateway, "route for host "+host+" is misconfigured")
		default:
			g.cfg.Logger.Warn("route lookup failed", "host", host, "err", err)
			writeError(w, http.StatusServiceUnavailable, "route lookup failed")
		}
		return
	}
	// The key id header is the gateway's to set: a client's own would pass
	// for a verified key at an upstream that serves keyed routes too.
	// (The incoming request is ours to change; the proxy copies it.)
	// Headers are set and deleted in the map under their canonical names
	// (which the server gave every incoming one), not through Header's
	// methods: those canonicalize the name on every call, measured at
	// about 4,000 instructions per request, 1.5% of it (BENCHMARKS.md).
	delete(r.Header, g.keyIDHeader)
	if route.RequireKey {
		key, status, msg := g.checkKey(r, route)
		if status != 0 {
			if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			writeError(w, status, msg)
			return
		}
		delete(r.Header, "Authorization")
		r.Header[g.keyIDHeader] = key.idHeader // shared: the proxy copies the header
	}
	st.proxy = proxyState{route: route, start: int(g.rr.Add(1) % uint64(len(route.urls)))}
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, &st.proxy)))
}

// checkKey verifies the request's API key against the route's keyspace and
// returns the key, or a status and message for the client.
func (g *Gateway) checkKey(r *http.Request, route *parsedRoute) (*parsedKey, int, string) {
	var authz string
	if v := r.Header["Authorization"]; len(v) > 0 {
		authz = v[0]
	}
	if authz == "" {
		return nil, http.StatusUnauthorized, "missing API key: send Authorization: Bearer <key>"
	}
	scheme, raw, ok := strings.Cut(authz, " ")
	raw = strings.TrimSpace(raw)
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" || strings.ContainsAny(raw, " \t") || len(raw) > 512 {
		return nil, http.StatusUnauthorized, "malformed Authorization header: want Bearer <key>"
	}
	key, err := g.apiKey(r, route.Keyspace, raw)
	switch {
	case errors.Is(err, ErrRateLimited):
		return nil, http.StatusTooManyRequests, "too many lookups of unknown keys from this client"
	case errors.Is(err, ErrBusy):
		return nil, http.StatusServiceUnavailable, "too many lookups in flight"
	case errors.Is(err, origin.ErrNotFound):
		return nil, http.StatusUnauthorized, "unknown API key"
	case err != nil:
		g.cfg.Logger.Warn("key lookup failed", "keyspace", route.Keyspace, "key_hash", HashKey(raw)[:12], "err", err)
		return nil, http.StatusServiceUnavailable, "key lookup failed"
	case !key.Enabled:
		return nil, http.StatusForbidden, "API key is disabled"
	case key.Expires != nil && !g.cfg.Now().Before(*key.Expires):
		return nil, http.StatusForbidden, "API key has expired"
	}
	return key, 0, ""
}

// route returns the parsed route of host, reparsing only when its version
// changed.
func (g *Gateway) route(r *http.Request, host string) (*parsedRoute, error) {
	rec, err := g.lookup(r, RoutesNamespace, host)
	if err != nil {
		return nil, err
	}
	if v, ok := g.memo.get(RoutesNamespace, host, rec.Version); ok {
		return v.(*parsedRoute), nil
	}
	rt, us, err := ParseRoute(rec.Value)
	if err != nil {
		return nil, err
	}
	p := &parsedRoute{Route: rt, urls: us}
	if rt.DeploymentID != "" {
		p.deploymentHeader = []string{rt.DeploymentID}
	}
	g.memo.put(RoutesNamespace, host, rec.Version, p)
	return p, nil
}

func (g *Gateway) apiKey(r *http.Request, keyspace, raw string) (*parsedKey, error) {
	k := keyRecordKey(keyspace, raw)
	rec, err := g.lookup(r, KeysNamespace, k)
	if err != nil {
		return nil, err
	}
	if v, ok := g.memo.get(KeysNamespace, k, rec.Version); ok {
		return v.(*parsedKey), nil
	}
	key, err := ParseAPIKey(rec.Value)
	if err != nil {
		return nil, err
	}
	p := &parsedKey{APIKey: key, idHeader: []string{key.KeyID}}
	g.memo.put(KeysNamespace, k, rec.Version, p)
	return p, nil
}

// lookup reads ns/key from the Source; a key the Source does not hold must
// first pass the miss gate (per-client rate, concurrency).
func (g *Gateway) lookup(r *http.Request, ns, key string) (record.Record, error) {
	if err := record.ValidateKey(ns, key); err != nil {
		return record.Record{}, origin.ErrNotFound // a key that cannot exist
	}
	var rec record.Record
	var err error
	cached := false
	if g.holder != nil {
		rec, err, cached = g.holder.Cached(ns, key)
		if !cached {
			release, err := g.gate.admit(r)
			if err != nil {
				return record.Record{}, err
			}
			defer release()
		}
	}
	if !cached {
		rec, err = g.cfg.Source.Get(r.Context(), ns, key)
	}
	if err == nil && rec.Tombstone {
		return record.Record{}, origin.ErrNotFound
	}
	return rec, err
}

// rewrite points the outgoing request at the first upstream to try; the
// failover transport moves on to the next one if connecting fails.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(ctxKey{}).(*proxyState)
	route := st.route
	pr.SetURL(route.urls[st.start])
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if route.DeploymentID != "" {
		pr.Out.Header["X-Dataplane-Deployment-Id"] = route.deploymentHeader // shared, never modified
	}
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusBadGateway, "no upstream answered"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		status, msg = http.StatusGatewayTimeout, "upstream timed out"
	}
	if errors.Is(err, context.Canceled) {
		status = 499 // client went away; nobody reads the answer
	}
	if errors.Is(err, ErrSlowBody) || slowBody(r) { // ServerConfig.BodyMinRate
		g.cfg.Logger.Info("slow request body cut off", "host", r.Host, "err", err)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, "request body arrives too slowly")
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) { // ServerConfig.MaxRequestBody cut the body off
		writeError(w, http.StatusRequestEntityTooLarge, "request body exceeds the limit of "+strconv.FormatInt(tooBig.Limit, 10)+" bytes")
		return
	}
	g.cfg.Logger.Warn("upstream failed", "host", r.Host, "err", err)
	writeError(w, status, msg)
}

type parsedRoute struct {
	Route
	urls []*url.URL
	// deploymentHeader is the X-Dataplane-Deployment-Id header's value,
	// built once per route version rather than per request.
	deploymentHeader []string
}

// parsedKey is an API key as the memo keeps it, with the value of the
// key id header built once per key version rather than per request.
type parsedKey struct {
	APIKey
	idHeader []string
}

// failover is an http.RoundTripper that retries a request on the route's
// next upstream when connecting fails. Only connect failures are retried:
// nothing of the request has been sent then, so a retry is safe for every
// method, and a request that may have reached an upstream (any other error)
// is never replayed. A body goes along intact: with GetBody a fresh copy,
// otherwise the same body, which the transport closed but did not read (a
// replayBody keeps it open; once a byte is read the request is committed to
// that upstream and is not retried). Nothing is buffered, so a streamed
// upload of any size fails over too.
type failover struct {
	base    *http.Transport
	metrics *metrics
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(ctxKey{}).(*proxyState)
	began := time.Now()
	defer func() { f.metrics.upstreamSeconds.Observe(time.Since(began).Seconds()) }()
	if st == nil || len(st.route.urls) < 2 {
		return f.base.RoundTrip(req)
	}
	body := req.Body
	hasBody := body != nil && body != http.NoBody
	try := req
	var rb *replayBody
	if hasBody && req.GetBody == nil {
		rb = &replayBody{rc: body}
		try = req.WithContext(req.Context()) // shallow copy: the body is ours to swap
		try.Body = rb
	}
	resp, err := f.base.RoundTrip(try)
	for i := 1; err != nil && i < len(st.route.urls) && isDialError(err) && req.Context().Err() == nil; i++ {
		if rb != nil && rb.committed.Load() {
			break // a byte left for the dead upstream: it cannot be sent again
		}
		f.metrics.failovers.Inc()
		u := st.route.urls[(st.start+i)%len(st.route.urls)]
		next := req.Clone(req.Context())
		next.URL.Scheme, next.URL.Host = u.Scheme, u.Host
		switch {
		case hasBody && req.GetBody != nil:
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, fmt.Errorf("sentinel: request body for the next upstream: %w", gerr)
			}
			next.Body = b
		case rb != nil:
			rb = &replayBody{rc: body}
			next.Body = rb
		}
		resp, err = f.base.RoundTrip(next)
	}
	return resp, err
}

// replayBody passes a request body through to one upstream attempt. A
// Close before any Read (the transport closing the body after a failed
// connect) leaves the body open for the next attempt; after a Read, Close
// closes it. The server closes the incoming body when the handler returns,
// so a body kept open is never leaked.
type replayBody struct {
	rc        io.ReadCloser
	committed atomic.Bool // a Read was called: this attempt owns the body
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.committed.Store(true)
	return b.rc.Read(p)
}

func (b *replayBody) Close() error {
	if !b.committed.Load() {
		return nil
	}
	return b.rc.Close()
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// normalizeHost lower-cases a Host header and strips its port; ok is false
// for an empty or malformed host.
func normalizeHost(h string) (string, bool) {
	if h == "" || len(h) > 253+6 {
		return "", false
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || strings.ContainsAny(h, "/\\ @\t") {
		return "", false
	}
	return h, true
}

// writeLimited answers a refused lookup, asking the client to come back
// in a second.
func writeLimited(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Retry-After", "1")
	writeError(w, status, msg)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// statusWriter records the status code for metrics and passes everything
// else through, including Flush and Hijack (streams and websockets).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type metrics struct {
	requests        *prometheus.CounterVec
	upstreamSeconds prometheus.Histogram
	failovers       prometheus.Counter
	refused         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	sub := metricset.Subsystem("sentinel")
	m := &metrics{
		requests: sub.CounterVec("requests_total", "Requests answered by the gateway, by HTTP status code.", "code"),
		upstreamSeconds: sub.Histogram("upstream_seconds", "Time to an upstream's response headers, including failover.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)),
		failovers: sub.Counter("upstream_failovers_total", "Requests moved to another upstream because connecting failed."),
		refused: sub.CounterVec("lookups_refused_total",
			"Lookups of hosts or keys not in memory refused, by reason: rate (the client's budget, 429) or concurrency (503).", "reason"),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.upstreamSeconds, m.failovers, m.refused)
	}
	return m
}

// keyRecordKey is KeyRecordKey built in one allocation (the string) rather
// than three (the digest's hex, the joined string and, for a key longer
// than 32 bytes, its bytes): it runs on every request to a keyed route.
// checkKey admits keys of at most 512 bytes; anything longer, or a long
// keyspace, takes KeyRecordKey.
func keyRecordKey(keyspace, raw string) string {
	var in [512]byte
	var out [128]byte
	if len(raw) > len(in) || len(keyspace)+1+2*sha256.Size > len(out) {
		return KeyRecordKey(keyspace, raw)
	}
	sum := sha256.Sum256(in[:copy(in[:], raw)])
	b := append(out[:0], keyspace...)
	b = append(b, '/')
	b = hex.AppendEncode(b, sum[:])
	return string(b)
}

// copyBufferSize is the size of the buffers the proxy copies bodies
// through, the size httputil.ReverseProxy allocates per response without
// a pool.
const copyBufferSize = 32 << 10

// copyBufferPool holds buffers of copyBufferSize bytes, as array pointers,
// which an interface holds without an allocation of its own.
var copyBufferPool = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// copyBuffers is the proxy's httputil.BufferPool: without one,
// ReverseProxy allocates and zeroes 32 KiB for every response, 70% of the
// bytes a request allocated (BenchmarkGatewayServe's B/op).
type copyBuffers struct{}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[copyBufferSize]byte)[:] }

func (copyBuffers) Put(b []byte) {
	if len(b) == copyBufferSize {
		copyBufferPool.Put((*[copyBufferSize]byte)(b))
	}
}
