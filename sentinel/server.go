package sentinel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/cachenode/wire"
)

// ServerConfig configures a Server: a gateway listener and an admin
// listener over one dataplane node.
type ServerConfig struct {
	// Node serves routes and keys. Required.
	Node *dataplane.Node
	// Addr is the gateway's listen address, e.g. ":8080" or "127.0.0.1:0".
	Addr string
	// Listener, when set, is the gateway's listener instead of one on Addr
	// (a caller that binds every port before starting anything). Shutdown
	// closes it.
	Listener net.Listener
	// AdminAddr is the admin listener (/healthz, /readyz, /metrics,
	// /debug/...); empty means none.
	AdminAddr string
	// AdminListener, when set, is the admin listener instead of one on
	// AdminAddr.
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
	// Gateway tunes the gateway; its Source is set to Node.
	Gateway Config
	// Gatherer is what /metrics exposes; nil means the default gatherer.
	Gatherer prometheus.Gatherer
	// ReadHeaderTimeout bounds reading a request's headers (slow clients).
	// Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers; larger ones get 431. Default
	// 64 KiB.
	MaxHeaderBytes int
	// Logger receives server errors.
	Logger *slog.Logger
}

// Server runs a sentinel: the gateway and its admin listener.
type Server struct {
	gw, adm     *http.Server
	gwLn, admLn net.Listener
	gateway     *Gateway
	log         *slog.Logger
}

// Start listens on the configured addresses and serves until Shutdown.
func Start(cfg ServerConfig) (*Server, error) {
	if cfg.Node == nil {
		return nil, errors.New("sentinel: ServerConfig.Node is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	gcfg := cfg.Gateway
	gcfg.Source = SourceFunc(cfg.Node.Record)
	if gcfg.Logger == nil {
		gcfg.Logger = cfg.Logger
	}
	g, err := New(gcfg)
	if err != nil {
		return nil, err
	}
	s := &Server{gateway: g, log: cfg.Logger}
	if cfg.MaxRequestBody < 0 {
		return nil, fmt.Errorf("sentinel: ServerConfig.MaxRequestBody must not be negative, got %d", cfg.MaxRequestBody)
	}
	s.gwLn, err = listen(cfg.Listener, cfg.Addr, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("sentinel: listen %s: %w", cfg.Addr, err)
	}
	s.gw = &http.Server{
		Handler:           limitBody(g, cfg.MaxRequestBody),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go s.serve(s.gw, s.gwLn)
	if cfg.AdminAddr != "" || cfg.AdminListener != nil {
		s.admLn, err = listen(cfg.AdminListener, cfg.AdminAddr, cfg.AdminTLS)
		if err != nil {
			s.gw.Close()
			return nil, fmt.Errorf("sentinel: admin listen %s: %w", cfg.AdminAddr, err)
		}
		node := cfg.Node
		mux := http.NewServeMux()
		mux.Handle(wire.SnapshotsPath, dataplane.SnapshotHandler(node, cfg.AdminToken))
		mux.Handle("/", admin.Handler(admin.Config{
			Ready:    node.Ready,
			Gatherer: cfg.Gatherer,
			Token:    cfg.AdminToken,
			Inspect:  InspectFunc(node),
			Members:  MembersFunc(node),
		}))
		s.adm = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			// Admin requests are GETs: nothing to wait for past the headers.
			ReadTimeout:    cfg.ReadHeaderTimeout + 20*time.Second,
			IdleTimeout:    cfg.IdleTimeout,
			MaxHeaderBytes: cfg.MaxHeaderBytes,
			ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		}
		go s.serve(s.adm, s.admLn)
	}
	return s, nil
}

// listen opens a TCP listener on addr unless ln is given, wrapped in TLS
// when c is set.
func listen(ln net.Listener, addr string, c *tls.Config) (net.Listener, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	if c == nil {
		return ln, nil
	}
	c = c.Clone()
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return tls.NewListener(ln, c), nil
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
	if n.Gossip() == nil {
		return nil
	}
	return func() any { return n.Gossip().Members() }
}
