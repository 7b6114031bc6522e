// Package admin is the operator-facing HTTP listener every dataplane service
// (sentinel, cache node, publisher) exposes beside its main one: liveness,
// readiness, Prometheus metrics, and token-protected debug views.
package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/bearer"
	"github.com/dataplane/dataplane/openapi"
	"github.com/dataplane/dataplane/record"
)

// Inspection is what the debug endpoint shows of one cached record. It
// never includes the value, which may hold secrets.
type Inspection struct {
	Namespace   string         `json:"namespace"`
	Key         string         `json:"key"`
	Version     record.Version `json:"version"`
	VersionTime time.Time      `json:"version_time"`
	Tombstone   bool           `json:"tombstone"`
	Stale       bool           `json:"stale"`
	AgeSeconds  float64        `json:"age_seconds"`
	ValueBytes  int            `json:"value_bytes"`
}

// Config configures the admin handler. Every field is optional.
type Config struct {
	// Ready reports whether the service should receive traffic (warm);
	// nil means always ready.
	Ready func() bool
	// Gatherer is what /metrics exposes; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Token guards every /debug/ endpoint (Authorization: Bearer <token>,
	// compared in constant time). Empty disables the debug endpoints.
	Token string
	// Inspect looks up a cached record for /debug/records/{ns}/{key...}.
	Inspect func(ns, key string) (Inspection, bool)
	// Members lists cluster members for /debug/members.
	Members func() any
	// Fleet is this node's gossip view of the fleet's applied versions, for
	// the fleet page (/debug/fleet, /debug/fleet.json); nil without gossip.
	Fleet func() gossip.FleetView
	// Detail, when set, is added to /readyz's answer as "detail" (a node's
	// per-namespace warm-up progress and memory, say); it must not hold
	// secrets: /readyz needs no token.
	Detail func() any
	// OpenAPI is the server whose description /openapi.json answers: a
	// listener that mounts more than this handler (a sentinel's, with the
	// watch stream and snapshots) names its own; empty means openapi.Admin.
	OpenAPI openapi.Server
}

// MaxRequestBody bounds the body of any request to the admin handler, in
// bytes. Every endpoint is a GET; a body is read by none of them, and one
// declaring more than this is answered 413.
const MaxRequestBody = 64 << 10

// Handler returns the admin handler:
//
//	GET /healthz                     200 while the process runs
//	GET /readyz                      200 once ready, 503 before (with Detail)
//	GET /metrics                     Prometheus exposition
//	GET /openapi.json                the OpenAPI description of the server (Config.OpenAPI)
//	GET /debug/records/{ns}/{key...} cached version and age of a record (token)
//	GET /debug/members               cluster members (token)
//	GET /debug/fleet                 live fleet page, HTML (token, or ?token= once, then a cookie)
//	GET /debug/fleet.json            the fleet page's data (same)
//
// Versions in every answer are 16-hex-digit strings (record.Version's JSON).
func Handler(cfg Config) http.Handler {
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.OpenAPI == "" {
		cfg.OpenAPI = openapi.Admin
	}
	mux := http.NewServeMux()
	for _, rt := range routes(cfg) {
		mux.Handle(rt.pattern, rt.handler)
	}
	return LimitBody(mux, MaxRequestBody)
}

// route is one pattern of Handler's mux.
type route struct {
	pattern string
	handler http.Handler
}

// routes lists what Handler serves; the OpenAPI test checks that every one
// is documented.
func routes(cfg Config) []route {
	rs := []route{
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})},
		{"GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			status, body := http.StatusOK, map[string]any{"status": "ready"}
			if cfg.Ready != nil && !cfg.Ready() {
				status, body["status"] = http.StatusServiceUnavailable, "warming"
			}
			if cfg.Detail != nil {
				body["detail"] = cfg.Detail()
			}
			writeJSON(w, status, body)
		})},
		{"GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})},
		{"GET " + openapi.Path, openapi.Handler(cfg.OpenAPI)},
		{"GET /debug/records/{ns}/{key...}", bearer.Require(cfg.Token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cfg.Inspect == nil {
				writeJSON(w, http.StatusNotFound, errorBody{"this service has no record cache"})
				return
			}
			ns, key := r.PathValue("ns"), r.PathValue("key")
			if err := record.ValidateKey(ns, key); err != nil {
				writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
				return
			}
			in, ok := cfg.Inspect(ns, key)
			if !ok {
				writeJSON(w, http.StatusNotFound, errorBody{"not cached: " + ns + "/" + key})
				return
			}
			writeJSON(w, http.StatusOK, in)
		}))},
		{"GET /debug/members", bearer.Require(cfg.Token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cfg.Members == nil {
				writeJSON(w, http.StatusNotFound, errorBody{"this service is not in a gossip cluster"})
				return
			}
			writeJSON(w, http.StatusOK, cfg.Members())
		}))},
	}
	if cfg.Fleet != nil {
		fp := newFleetPage(cfg.Fleet, cfg.Gatherer, cfg.Token)
		return append(rs,
			route{"GET /debug/fleet", http.HandlerFunc(fp.serveHTML)},
			route{"GET /debug/fleet.json", http.HandlerFunc(fp.serveJSON)})
	}
	noFleet := bearer.Require(cfg.Token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{"this service is not in a gossip cluster"})
	}))
	return append(rs, route{"GET /debug/fleet", noFleet}, route{"GET /debug/fleet.json", noFleet})
}

// LimitBody wraps h so that a request declaring a body over limit bytes is
// answered 413 before h sees it, and a body streaming past limit fails h's
// reads with *http.MaxBytesError (and closes the connection).
func LimitBody(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{"request body exceeds the limit of " + strconv.FormatInt(limit, 10) + " bytes"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
