package publisher

import (
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dataplane/dataplane/openapi"
)

// TestRoutesDocumented: every pattern Handler registers is in the
// publisher's OpenAPI description, so a new endpoint without its
// description fails here.
func TestRoutesDocumented(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document(openapi.Publisher))
	if err != nil {
		t.Fatal(err)
	}
	patterns := []string{"GET " + openapi.Path} // Handler's own, outside the token
	for _, rt := range (&handler{}).routes() {
		patterns = append(patterns, rt.pattern)
	}
	checkDocumented(t, doc, patterns)
}

// checkDocumented fails for each ServeMux pattern whose path (and method,
// when it has one) the description lacks; "/" (the JSON 404) is exempt.
func checkDocumented(t *testing.T, doc *openapi3.T, patterns []string) {
	t.Helper()
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "", p
		}
		if path == "/" {
			continue
		}
		path = strings.ReplaceAll(path, "...}", "}")
		item := doc.Paths.Value(path)
		switch {
		case item == nil:
			t.Errorf("%q is served but %s is not in the OpenAPI description", p, path)
		case method != "" && item.GetOperation(method) == nil:
			t.Errorf("%q is served but %s %s is not in the OpenAPI description", p, method, path)
		}
	}
}
