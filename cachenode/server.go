package cachenode

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/bearer"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// Server is a cache node: an http.Handler serving the protocol in the
// package doc from its cache, in front of Config.Origin. It is safe for
// concurrent use.
type Server struct {
	cfg     Config
	origin  origin.Store
	cache   *cache.Cache
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux
	tail    *logTail
	parts   *partCache
	closed  atomic.Bool

	// With Config.Gossip: the node's log follower and gossip member
	// (joinCluster); nil without.
	follower *follow.Follower
	gossip   *gossip.Node
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for cfg. It fails on an invalid Config, naming the
// field, or when the metrics cannot be registered.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		origin: cfg.Origin,
		log:    cfg.Logger.With("component", "cachenode"),
	}
	copts := cache.Options{
		Config:     cfg.Cache,
		ApplyAll:   true, // a cache node keeps what it is written and told, for its region
		Now:        cfg.now,
		Registerer: cfg.Registerer,
		Logger:     cfg.Logger,
	}
	if cfg.Verifier != nil {
		copts.Verifier = cfg.Verifier
	}
	c, err := cache.New(cfg.Origin, copts)
	if err != nil {
		return nil, fmt.Errorf("cachenode: %w", err)
	}
	s.cache = c
	s.tail = &logTail{
		ttl: cfg.Timing.LogTailTTL, span: cfg.tailSpan, page: wire.MaxLogPage, wait: originTimeout,
		now: time.Now, read: cfg.Origin.ReadLog,
	}
	skew := cfg.Timing.MaxFutureSkew()
	var cv *checkpoint.Verifier
	if cfg.Verifier != nil {
		cv = &checkpoint.Verifier{Keys: cfg.Verifier, MaxSkew: skew}
	}
	s.parts = &partCache{
		parts: origin.CheckpointPartsOf(cfg.Origin), v: cv, skew: skew,
		ttl: cfg.checkpointTTL(), proofTTL: cfg.snapshotProofTTL(), wait: originTimeout,
		now: time.Now, entries: make(map[partKey]*partEntry),
	}
	s.metrics = newMetrics()
	if cfg.Registerer != nil {
		if err := s.metrics.register(cfg.Registerer); err != nil {
			c.Close()
			return nil, err
		}
	}
	s.mux = s.routes()
	if err := s.joinCluster(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// routes builds the handler tree. Each route is instrumented under a fixed
// name, so the metrics' cardinality is bounded whatever the paths.
func (s *Server) routes() *http.ServeMux {
	read := func(h http.HandlerFunc) http.Handler {
		if s.cfg.ReadToken == "" {
			return h
		}
		return bearer.Require(s.cfg.ReadToken, h)
	}
	write := func(h http.HandlerFunc) http.Handler { return bearer.Require(s.cfg.WriteToken, h) }

	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.Handler) { mux.Handle(pattern, s.instrument(route, h)) }
	handle("GET "+wire.RecordsPrefix+"{ns}/{key...}", "get_record", read(s.getRecord))
	handle("PUT "+wire.RecordsPrefix+"{ns}/{key...}", "put_record", write(s.putRecord))
	handle("GET "+wire.LogPath, "read_log", read(s.readLog))
	handle("POST "+wire.LogPath, "append_log", write(s.appendLog))
	handle("POST "+wire.TrimPath, "trim_log", write(s.trimLog))
	handle("GET "+wire.SnapshotsPath+"{ns}", "get_snapshot", read(s.getSnapshot))
	handle("PUT "+wire.SnapshotsPath+"{ns}", "put_snapshot", write(s.putSnapshot))
	handle("GET "+wire.SnapshotsPath+"{ns}/{part}", "get_snapshot_part", read(s.getSnapshotPart))
	// JSON answers for the wrong method or path, instead of the mux's text.
	handle(wire.RecordsPrefix+"{ns}/{key...}", "other", methodNotAllowed("GET, PUT"))
	handle(wire.LogPath, "other", methodNotAllowed("GET, POST"))
	handle(wire.TrimPath, "other", methodNotAllowed("POST"))
	handle(wire.SnapshotsPath+"{ns}", "other", methodNotAllowed("GET, PUT"))
	handle(wire.SnapshotsPath+"{ns}/{part}", "other", methodNotAllowed("GET"))
	handle("/", "other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, wire.CodeNoRoute, "no endpoint "+r.URL.Path+" (see package cachenode for the protocol)")
	}))
	return mux
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Cache returns the node's cache, for wiring that needs more than Apply and
// Invalidate (snapshot warm-up, debug views).
func (s *Server) Cache() *cache.Cache { return s.cache }

// Apply installs rec (from gossip, with its value) in the node's cache if it
// is newer than what is held, and reports whether it did. With Invalidate it
// makes the Server a gossip Applier. It never blocks on the origin.
func (s *Server) Apply(rec record.Record) bool { return s.cache.Apply(rec) }

// Invalidate records that version v of ns/key exists (from gossip, without
// its value): the node stops serving anything older as fresh and fetches the
// new version from the origin on the next read. It never blocks.
func (s *Server) Invalidate(ns, key string, v record.Version) { s.cache.Invalidate(ns, key, v) }

// LogReads reports how many change-log reads the node made of its origin
// and how many GET /v1/log requests it answered from another request's
// origin read (Config.Timing.LogTailTTL).
func (s *Server) LogReads() (fromOrigin, shared int64) {
	return s.tail.origin.Load(), s.tail.shared.Load()
}

// OfferCheckpoint takes a signed namespace checkpoint received by gossip
// (checkpoint.Checkpoint.Marshal's bytes; for gossip.Config.OnCheckpoint).
// With Config.Verifier, one that verifies (a trusted key, not
// expired, not from the future) and is newer than the checkpoint the node
// holds for its namespace is served from then on, before the node's next
// origin read would find it; one that does not is refused, and the
// refusal returned, so that gossip does not relay it. Without a verifier
// the node cannot tell a forgery: it takes nothing and returns nil
// (gossip relays by its own rules, and the sentinels verify). It never
// blocks on the origin.
func (s *Server) OfferCheckpoint(raw []byte, source string) error {
	if err := s.parts.offer(raw); err != nil {
		return fmt.Errorf("cachenode: checkpoint from %s: %w", source, err)
	}
	return nil
}

// CheckpointReads reports how many checkpoint and snapshot proof reads the
// node made of its origin and how many requests it answered from another
// request's read (Config.Timing: LogTailTTL, CheckpointLifetime/10).
func (s *Server) CheckpointReads() (fromOrigin, shared int64) {
	return s.parts.origin.Load(), s.parts.shared.Load()
}

// Ready reports whether the node should receive traffic: until Close. A
// cold node is ready, since it reads through to the origin; for admin.Config.
func (s *Server) Ready() bool { return !s.closed.Load() }

// Inspect describes what the node's cache holds for ns/key without loading
// it; for admin.Config.
func (s *Server) Inspect(ns, key string) (admin.Inspection, bool) {
	ent, ok := s.cache.Peek(ns, key)
	if !ok {
		return admin.Inspection{}, false
	}
	r := ent.Record
	in := admin.Inspection{
		Namespace: ns, Key: key, Version: r.Version, Tombstone: r.Tombstone,
		Stale: ent.Stale, AgeSeconds: ent.Age.Seconds(), ValueBytes: len(r.Value),
	}
	if r.Version != 0 {
		in.VersionTime = r.Version.Time()
	}
	return in, true
}

// Close stops the cache's background refreshes and unregisters the metrics.
// Requests still served afterwards answer from what is held, and 503 where
// they would need the origin. It does not close any listener: the caller
// owns its http.Server. Close is idempotent.
func (s *Server) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.leaveCluster()
	s.cache.Close()
	if s.cfg.Registerer != nil {
		s.metrics.unregister(s.cfg.Registerer)
	}
}
