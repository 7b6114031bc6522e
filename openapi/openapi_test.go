package openapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dataplane/dataplane/openapi"
)

// load parses and validates a server's description with kin-openapi.
func load(t *testing.T, s openapi.Server) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document(s))
	if err != nil {
		t.Fatalf("%s: load: %v", s, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s: invalid OpenAPI: %v", s, err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("%s: openapi %q, want 3.1", s, doc.OpenAPI)
	}
	return doc
}

// TestDocumentsValid: every server's description is valid OpenAPI 3.1 and
// holds exactly the paths its x-servers give it.
func TestDocumentsValid(t *testing.T) {
	want := map[openapi.Server][]string{
		openapi.Publisher: {"/v1/records/{namespace}/{key}", "/v1/import", "/v1/export/{namespace}", "/openapi.json", "/healthz", "/readyz", "/metrics", "/debug/fleet", "/debug/fleet.json"},
		openapi.Node:      {"/openapi.json", "/healthz", "/readyz", "/metrics", "/debug/records/{ns}/{key}", "/debug/members", "/debug/fleet", "/debug/fleet.json", "/v1/watch/{namespace}", "/v1/snapshots/{namespace}"},
		openapi.Admin:     {"/openapi.json", "/healthz", "/readyz", "/metrics", "/debug/records/{ns}/{key}", "/debug/members", "/debug/fleet", "/debug/fleet.json"},
	}
	for _, s := range openapi.Servers {
		doc := load(t, s)
		got := doc.Paths.InMatchingOrder()
		slices.Sort(got)
		w := slices.Clone(want[s])
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s: paths %v, want %v", s, got, w)
		}
		if _, ok := doc.Paths.Value("/healthz").Extensions["x-servers"]; ok {
			t.Errorf("%s: x-servers left in the served document", s)
		}
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(openapi.Handler(openapi.Node))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.Header.Get("Content-Type") != "application/json" || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%s %q: %+v %v", resp.Status, resp.Header.Get("Content-Type"), doc, err)
	}
}
