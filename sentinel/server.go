package sentinel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/openapi"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// ServerConfig configures a Server: a gateway listener and an admin
// listener over one dataplane node.
type ServerConfig struct {
	// Node serves routes and keys. Required.
	Node *dataplane.Node
	// Listener is the gateway's listener, e.g. net.Listen("tcp", ":8080").
	// Required. Start and Shutdown close it, Start when it fails.
	Listener net.Listener
	// AdminListener is the admin listener (/healthz, /readyz, /metrics,
	// /debug/...); nil means none. Closed as Listener is.
	AdminListener net.Listener
	// AdminToken guards the admin debug endpoints and the peer snapshot
	// endpoint (GET /v1/snapshots/{ns}, dataplane.SnapshotHandler) from
	// which other sentinels warm when the origin is down.
	AdminToken string
	// TLS, when set, makes the gateway listener serve HTTPS with it (see
	// package internal/tlsconfig); nil serves plain HTTP.
	TLS *tls.Config
	// AdminTLS, when set, makes the admin listener serve HTTPS with it;
	// with ClientCAs and RequireAndVerifyClientCert, only clients with a
	// certificate of that CA get in (mutual TLS). Nil serves plain HTTP.
	AdminTLS *tls.Config
	// MaxRequestBody bounds the body of a request to the gateway, in bytes:
	// one declaring more is answered 413 without reaching an upstream, one
	// streaming more is cut off there. Zero means no bound (uploads stream
	// through to the upstream); the admin listener always bounds bodies.
	MaxRequestBody int64
	// BodyTimeout and BodyMinRate cut off a client that sends its request
	// body too slowly, while a stream of any length that keeps up goes
	// through: before each read of the body, the connection's read deadline
	// is set to the earlier of now+BodyTimeout (the longest pause) and
	// start+BodyTimeout+received/BodyMinRate (the slowest average). Such a
	// client gets 408 and its connection is closed. Defaults 30s and 512
	// bytes/s; a negative BodyMinRate turns this off.
	BodyTimeout time.Duration
	BodyMinRate int64
	// Gateway tunes the gateway; its Source is Node, its logs go to Logger
	// and its metrics to Registerer.
	Gateway Proxy
	// Registerer receives the gateway's metrics; nil registers none. The
	// admin listener's /metrics exposes it when it is also a
	// prometheus.Gatherer (a *prometheus.Registry is), and
	// prometheus.DefaultGatherer otherwise.
	Registerer prometheus.Registerer
	// Now is the gateway's clock (key expiry, miss rate); nil means
	// time.Now.
	Now func() time.Time
	// Logger receives server errors.
	Logger *slog.Logger
}

// Bounds both listeners have, as every server of the dataplane command
// does: a request's headers are read within readHeaderTimeout (slow
// clients), an idle keep-alive connection is closed after idleTimeout,
// headers over maxHeaderBytes get 431.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Server runs a sentinel: the gateway and its admin listener.
type Server struct {
	gw, adm     *http.Server
	gwLn, admLn net.Listener
	gateway     *Gateway
	log         *slog.Logger
}

// Start serves on the configured listeners until Shutdown. When it fails,
// it closes them.
func Start(cfg ServerConfig) (*Server, error) { return start(cfg, readHeaderTimeout) }

// start is Start with the headers' read timeout given (tests shorten it).
func start(cfg ServerConfig, readHeaderTimeout time.Duration) (_ *Server, err error) {
	defer func() {
		if err != nil {
			for _, ln := range []net.Listener{cfg.Listener, cfg.AdminListener} {
				if ln != nil {
					_ = ln.Close()
				}
			}
		}
	}()
	if cfg.Node == nil {
		return nil, errors.New("sentinel: ServerConfig.Node is required")
	}
	if cfg.Listener == nil {
		return nil, errors.New("sentinel: ServerConfig.Listener is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BodyTimeout < 0 {
		return nil, fmt.Errorf("sentinel: ServerConfig.BodyTimeout must not be negative, got %v", cfg.BodyTimeout)
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.BodyMinRate == 0 {
		cfg.BodyMinRate = 512
	}
	if cfg.MaxRequestBody < 0 {
		return nil, fmt.Errorf("sentinel: ServerConfig.MaxRequestBody must not be negative, got %d", cfg.MaxRequestBody)
	}
	gcfg := Config{Proxy: cfg.Gateway, Source: nodeSource{cfg.Node}, Logger: cfg.Logger, Registerer: cfg.Registerer, Now: cfg.Now}
	g, err := New(gcfg)
	if err != nil {
		return nil, err
	}
	s := &Server{gateway: g, log: cfg.Logger}
	s.gwLn = withTLS(cfg.Listener, cfg.TLS)
	s.gw = &http.Server{
		Handler:           limitBody(minBodyRate(g, cfg.BodyTimeout, cfg.BodyMinRate), cfg.MaxRequestBody),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go s.serve(s.gw, s.gwLn)
	if cfg.AdminListener != nil {
		s.admLn = withTLS(cfg.AdminListener, cfg.AdminTLS)
		gatherer, ok := cfg.Registerer.(prometheus.Gatherer)
		if !ok {
			gatherer = prometheus.DefaultGatherer
		}
		node := cfg.Node
		mux := http.NewServeMux()
		mux.Handle(wire.SnapshotsPath, dataplane.SnapshotHandler(node, cfg.AdminToken))
		mux.Handle(dataplane.WatchPath, dataplane.WatchHandler(node, cfg.AdminToken))
		mux.Handle("/", admin.Handler(admin.Config{
			Ready:    node.Ready,
			Gatherer: gatherer,
			Token:    cfg.AdminToken,
			Inspect:  InspectFunc(node),
			Members:  MembersFunc(node),
			Fleet:    FleetFunc(node),
			Detail:   func() any { return node.Status() },
			OpenAPI:  openapi.Node, // with the watch stream and snapshots above
		}))
		s.adm = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			// Admin requests are GETs: nothing to wait for past the headers.
			ReadTimeout:    readHeaderTimeout + 20*time.Second,
			IdleTimeout:    idleTimeout,
			MaxHeaderBytes: maxHeaderBytes,
			ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		}
		go s.serve(s.adm, s.admLn)
	}
	return s, nil
}

// nodeSource reads a node's records; Cached answers from memory what the
// node can (a value held, or a complete namespace's version index: a
// stranger's random host or key costs no origin read there), so the gateway
// bounds only lookups that may read the origin, with one cache lookup for a
// hit.
type nodeSource struct{ n *dataplane.Node }

var _ Holder = nodeSource{}

// Get implements Source.
func (s nodeSource) Get(ctx context.Context, ns, key string) (record.Record, error) {
	return s.n.Record(ctx, ns, key)
}

// Cached implements Holder.
func (s nodeSource) Cached(ns, key string) (record.Record, error, bool) {
	return s.n.Cached(ns, key) // applies the namespace's staleness policy
}

// withTLS wraps ln in TLS when c is set.
func withTLS(ln net.Listener, c *tls.Config) net.Listener {
	if c == nil {
		return ln
	}
	c = c.Clone()
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return tls.NewListener(ln, c)
}

// limitBody answers 413 to a request declaring a body over limit bytes and
// cuts off one streaming more; limit 0 leaves bodies unbounded.
func limitBody(h http.Handler, limit int64) http.Handler {
	if limit == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// minBodyRate moves the connection's read deadline along as a request body
// arrives (see ServerConfig.BodyTimeout); rate <= 0 leaves bodies alone.
func minBodyRate(h http.Handler, grace time.Duration, rate int64) http.Handler {
	if rate <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		b := &rateBody{rc: r.Body, ctl: http.NewResponseController(w), start: time.Now(), grace: grace, rate: rate}
		r.Body = b
		// The read deadline also cancels the request's context, so the
		// proxy may see only that: the gateway asks the body (slowBody).
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rateBodyKey{}, b)))
		b.done.Store(true)
	})
}

// ErrSlowBody means a client sent its request body slower than
// ServerConfig.BodyMinRate allows.
var ErrSlowBody = errors.New("sentinel: request body arrives too slowly")

// rateBody sets the read deadline before each Read of a request body. It is
// read by one goroutine at a time (the proxy's transport). Once the body
// ended or failed it sets no more deadlines: the server then reads the
// connection in the background with no deadline, and one left behind would
// cancel a response still streaming.
type rateBody struct {
	rc    io.ReadCloser
	ctl   *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int64
	n     int64 // bytes received
	ended bool  // EOF or an error: leave the deadline alone
	done  atomic.Bool
	slow  atomic.Bool // the deadline cut the body off
}

type rateBodyKey struct{}

// slowBody reports whether r's body was cut off by the minimum rate.
func slowBody(r *http.Request) bool {
	b, _ := r.Context().Value(rateBodyKey{}).(*rateBody)
	return b != nil && b.slow.Load()
}

func (b *rateBody) Read(p []byte) (int, error) {
	if b.ended || b.done.Load() {
		return b.rc.Read(p)
	}
	now := time.Now()
	dl := b.start.Add(b.grace + time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second)))
	if idle := now.Add(b.grace); idle.Before(dl) {
		dl = idle
	}
	_ = b.ctl.SetReadDeadline(dl) // ErrNotSupported: no deadline to move
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if err != nil {
		b.ended = true
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			b.slow.Store(true)
			return n, fmt.Errorf("%w (%d bytes in %v): %w", ErrSlowBody, b.n, time.Since(b.start).Round(time.Millisecond), err)
		}
	}
	return n, err
}

func (b *rateBody) Close() error { return b.rc.Close() }

func (s *Server) serve(h *http.Server, ln net.Listener) {
	if err := h.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("sentinel listener stopped", "addr", ln.Addr().String(), "err", err)
	}
}

// Addr returns the gateway's listen address.
func (s *Server) Addr() string { return s.gwLn.Addr().String() }

// AdminAddr returns the admin listen address, or "" without one.
func (s *Server) AdminAddr() string {
	if s.admLn == nil {
		return ""
	}
	return s.admLn.Addr().String()
}

// Gateway returns the request handler.
func (s *Server) Gateway() *Gateway { return s.gateway }

// Shutdown stops accepting requests and waits for those in flight until
// ctx ends. It does not close the node.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.gw.Shutdown(ctx)
	if s.adm != nil {
		err = errors.Join(err, s.adm.Shutdown(ctx))
	}
	return err
}

// InspectFunc returns the admin debug lookup for a node's cache.
func InspectFunc(n *dataplane.Node) func(ns, key string) (admin.Inspection, bool) {
	return func(ns, key string) (admin.Inspection, bool) {
		e, ok := n.Peek(ns, key)
		if !ok {
			return admin.Inspection{}, false
		}
		in := admin.Inspection{
			Namespace: ns, Key: key,
			Version:    e.Record.Version,
			Tombstone:  e.Record.Tombstone,
			Stale:      e.Stale,
			AgeSeconds: e.Age.Seconds(),
			ValueBytes: len(e.Record.Value),
		}
		if e.Record.Version != 0 {
			in.VersionTime = e.Record.Version.Time().UTC()
		}
		return in, true
	}
}

// MembersFunc returns the admin members view of a node (nil without gossip).
func MembersFunc(n *dataplane.Node) func() any {
	if n.GossipAddr() == "" {
		return nil
	}
	return func() any { return n.Members() }
}

// FleetFunc returns the fleet view of a node for the admin fleet page (nil
// without gossip).
func FleetFunc(n *dataplane.Node) func() gossip.FleetView {
	if n.GossipAddr() == "" {
		return nil
	}
	return n.Fleet
}
