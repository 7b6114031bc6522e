package admin

import (
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/openapi"
)

// TestRoutesDocumented: every pattern Handler registers, with and without
// a fleet, is in the description of every server that mounts the admin
// handler whole, so a new endpoint without its description fails here.
func TestRoutesDocumented(t *testing.T) {
	for _, s := range []openapi.Server{openapi.Admin, openapi.Node} {
		doc, err := openapi3.NewLoader().LoadFromData(openapi.Document(s))
		if err != nil {
			t.Fatal(err)
		}
		for _, cfg := range []Config{{OpenAPI: s}, {OpenAPI: s, Fleet: func() gossip.FleetView { return gossip.FleetView{} }}} {
			for _, rt := range routes(cfg) {
				method, path, _ := strings.Cut(rt.pattern, " ")
				path = strings.ReplaceAll(path, "...}", "}")
				if item := doc.Paths.Value(path); item == nil || item.GetOperation(method) == nil {
					t.Errorf("%s: %q is served but not in the OpenAPI description", s, rt.pattern)
				}
			}
		}
	}
}

// TestPublisherPathsDocumented: every admin path PublisherHandler mounts
// is a GET in the publisher's description.
func TestPublisherPathsDocumented(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document(openapi.Publisher))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range PublisherPaths {
		if item := doc.Paths.Value(p); item == nil || item.Get == nil {
			t.Errorf("PublisherHandler mounts GET %s, which the publisher's description lacks", p)
		}
	}
}
