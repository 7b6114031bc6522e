// Package openapi holds the OpenAPI 3.1 description of dataplane's HTTP
// APIs, one source (openapi.json, embedded) for every server: the
// publisher's API (records, receipts, import, export) and the admin
// listener of every service (health, readiness, metrics, debug views, and on
// a node also the watch stream and the snapshot endpoint for peers).
//
// Each path of the source lists, in its "x-servers" extension, the servers
// that serve it; Document answers the description of one server, with only
// its paths, and every server answers its own at GET /openapi.json. A test
// sends every documented request to running servers and validates requests
// and answers against the description (see the package's tests), and
// another checks that every route a server's mux registers is documented.
package openapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// Path is where every server answers its description.
const Path = "/openapi.json"

// Server names one kind of HTTP server, whose description Document answers.
type Server string

// The servers described.
const (
	// Publisher is `dataplane publish serve`: the publisher API under /v1/
	// and the admin endpoints beside it.
	Publisher Server = "publisher"
	// Node is a sentinel's admin listener: the admin endpoints, the watch
	// stream (/v1/watch/) and the snapshot endpoint peers warm up from
	// (/v1/snapshots/).
	Node Server = "node"
	// Admin is the admin listener of the other services (cache node,
	// syncer): the admin endpoints only.
	Admin Server = "admin"
)

// Servers lists every Server.
var Servers = []Server{Publisher, Node, Admin}

//go:embed openapi.json
var source []byte

// serversKey is the extension on each path item listing its servers.
const serversKey = "x-servers"

var documents = sync.OnceValues(func() (map[Server][]byte, error) {
	out := make(map[Server][]byte, len(Servers))
	for _, s := range Servers {
		b, err := filter(source, s)
		if err != nil {
			return nil, err
		}
		out[s] = b
	}
	return out, nil
})

// Document returns the OpenAPI 3.1 description (JSON) of server s: the
// source with only the paths s serves. The caller must not modify it.
func Document(s Server) []byte {
	docs, err := documents()
	if err != nil {
		panic("openapi: the embedded openapi.json is broken: " + err.Error()) // a test catches it first
	}
	b, ok := docs[s]
	if !ok {
		panic(fmt.Sprintf("openapi: unknown server %q", s))
	}
	return b
}

// Handler answers GET with Document(s), as application/json.
func Handler(s Server) http.Handler {
	doc := Document(s)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(doc)
	})
}

// filter returns the source with only the paths whose x-servers list s,
// without the extension, and with info.title naming s.
func filter(src []byte, s Server) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi.json: no paths")
	}
	for p, v := range paths {
		item, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("openapi.json: path %s is not an object", p)
		}
		list, ok := item[serversKey].([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("openapi.json: path %s lists no %s", p, serversKey)
		}
		var names []Server
		for _, n := range list {
			name, _ := n.(string)
			if !slices.Contains(Servers, Server(name)) {
				return nil, fmt.Errorf("openapi.json: path %s: unknown server %v in %s", p, n, serversKey)
			}
			names = append(names, Server(name))
		}
		if !slices.Contains(names, s) {
			delete(paths, p)
			continue
		}
		delete(item, serversKey)
	}
	if info, ok := doc["info"].(map[string]any); ok {
		info["title"] = fmt.Sprintf("%v: %s server", info["title"], s)
	}
	return json.Marshal(doc)
}
