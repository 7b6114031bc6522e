package admin

import (
	"net/http"

	"github.com/dataplane/dataplane/openapi"
)

// PublisherPaths are the admin endpoints a publisher's server serves beside
// its API (openapi.Publisher describes them): no record cache and no member
// list there, the fleet page only when the publisher gossips.
var PublisherPaths = []string{"/healthz", "/readyz", "/metrics", "/debug/fleet", "/debug/fleet.json"}

// PublisherHandler is a publisher's whole server, as `dataplane publish
// serve` and `dataplane dev` run it: api (publisher.Handler, which answers
// the publisher's OpenAPI description itself) under /v1/ and at
// openapi.Path, and PublisherPaths from Handler(cfg) with cfg.OpenAPI set
// to openapi.Publisher. Every other path is api's (a JSON 404).
func PublisherHandler(api http.Handler, cfg Config) http.Handler {
	cfg.OpenAPI = openapi.Publisher
	adm := Handler(cfg)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	for _, p := range PublisherPaths {
		mux.Handle(p, adm)
	}
	return mux
}
