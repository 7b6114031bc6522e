package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"

	dataplane "github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/openapi"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

// The conformance tests send every documented request (its success and its
// documented errors) to running servers, and validate each request and
// answer against the server's OpenAPI description with kin-openapi
// (openapi3filter): an answer with an undocumented status, header or body
// fails, and so does a documented operation or status no case covered,
// except those listed in unprovoked with the reason they cannot be caused
// here.

var registerDecoders = sync.OnceFunc(func() {
	// JSON Lines: one JSON value per line, validated as an array of them.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		var out []any
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var v any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				return nil, fmt.Errorf("line %d: %w", len(out)+1, err)
			}
			out = append(out, v)
		}
		return out, sc.Err()
	})
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/vnd.dataplane.snapshot", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder(dataplane.ContentTypeProvenSnapshot, openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
})

// conformance checks requests to one server against its description.
type conformance struct {
	t      *testing.T
	base   string
	doc    *openapi3.T
	router routers.Router
	// covered holds "operationId status" of every answer checked.
	covered map[string]bool
}

func newConformance(t *testing.T, s openapi.Server, base string) *conformance {
	t.Helper()
	registerDecoders()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &conformance{t: t, base: base, doc: doc, router: r, covered: map[string]bool{}}
}

// call is one request and what it must be answered.
type call struct {
	name         string
	method, path string // path with its query
	header       http.Header
	body         []byte
	status       int
	// invalid says the request breaks the description on purpose: its
	// validation must fail (the server must still answer as documented).
	invalid bool
	// stream reads only the first lines of an endless NDJSON answer.
	stream int
	// ctype, if set, is the Content-Type the answer must have (where the
	// description allows several).
	ctype string
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (c *conformance) request(ctx context.Context, k call) *http.Request {
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, c.base+k.path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for h, v := range k.header {
		req.Header[h] = v
	}
	return req
}

// check sends k and validates the request and the answer. It returns the
// answer's body.
func (c *conformance) check(k call) []byte {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := c.request(ctx, k)
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: %s %s is not documented: %v", k.name, k.method, k.path, err)
		return nil
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	err = openapi3filter.ValidateRequest(ctx, in)
	switch {
	case k.invalid && err == nil:
		t.Errorf("%s: the request is valid, but the case says it breaks the description", k.name)
	case !k.invalid && err != nil:
		t.Errorf("%s: invalid request: %v", k.name, err)
	}
	resp, err := noRedirect.Do(c.request(ctx, k))
	if err != nil {
		t.Fatalf("%s: %v", k.name, err)
	}
	defer resp.Body.Close()
	var body []byte
	if k.stream > 0 {
		body = c.readLines(k, resp, route)
	} else if body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s: %v", k.name, err)
	}
	if resp.StatusCode != k.status {
		t.Errorf("%s: %s %s answered %d, want %d: %.300s", k.name, k.method, k.path, resp.StatusCode, k.status, body)
	}
	if got := resp.Header.Get("Content-Type"); k.ctype != "" && got != k.ctype {
		t.Errorf("%s: %s %s answered Content-Type %q, want %q", k.name, k.method, k.path, got, k.ctype)
	}
	c.covered[route.Operation.OperationID+" "+fmt.Sprint(resp.StatusCode)] = true
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if k.stream > 0 {
		out.Options = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, ExcludeResponseBody: true}
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: %s %s: the answer (%d %s) breaks the description: %v\n%.500s", k.name, k.method, k.path, resp.StatusCode, resp.Header.Get("Content-Type"), err, body)
	}
	return body
}

// readLines reads k.stream lines of an NDJSON stream and validates each
// against the documented item schema.
func (c *conformance) readLines(k call, resp *http.Response, route *routers.Route) []byte {
	t := c.t
	t.Helper()
	mt := route.Operation.Responses.Status(resp.StatusCode)
	if resp.StatusCode != http.StatusOK || mt == nil {
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	item := mt.Value.Content.Get("application/x-ndjson").Schema.Value.Items.Value
	sc := bufio.NewScanner(resp.Body)
	var out []byte
	for i := 0; i < k.stream; i++ {
		if !sc.Scan() {
			t.Fatalf("%s: the stream ended after %d lines: %v", k.name, i, sc.Err())
		}
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: line %d: %v", k.name, i+1, err)
		}
		if err := item.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s: line %d %s breaks the description: %v", k.name, i+1, sc.Bytes(), err)
		}
		out = append(append(out, sc.Bytes()...), '\n')
	}
	return out
}

// coverage fails for every documented operation and status no call
// covered, but those in unprovoked ("operationId status": why).
func (c *conformance) coverage(unprovoked map[string]string) {
	t := c.t
	t.Helper()
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := op.OperationID + " " + status
				if c.covered[key] {
					if _, ok := unprovoked[key]; ok {
						t.Errorf("%s is listed as unprovoked but was covered: drop it from the list", key)
					}
					continue
				}
				if _, ok := unprovoked[key]; !ok {
					missing = append(missing, fmt.Sprintf("%s %s -> %s (%s)", method, path, status, key))
				}
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("documented but no call covers it: %s", m)
	}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func withType(h http.Header, ctype string) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", ctype)
	return h
}

// TestOpenAPIPublisher: the publisher's server as `publish serve` builds it
// (publisherMux), over a directory origin, in gossip with one member.
func TestOpenAPIPublisher(t *testing.T) {
	pubNode := testGossipNode(t, "publisher", "eu", true, nil)
	member := testGossipNode(t, "eu-1", "eu", false, []string{pubNode.Addr()})
	testkit.Eventually(t, 30*time.Second, "the gossip nodes to meet", func() bool {
		return len(pubNode.Members()) == 2 && len(member.Members()) == 2
	})
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := publisher.DefaultConfig()
	cfg.Registerer, cfg.Notifier = reg, pubNode
	p, err := publisher.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const tok = "conformance-token"
	srv := httptest.NewServer(publisherMux(p, tok, reg, pubNode.Fleet))
	defer srv.Close()
	c := newConformance(t, openapi.Publisher, srv.URL)

	auth := bearer(tok)
	octet, js := withType(auth, "application/octet-stream"), withType(auth, "application/json")
	route := []byte(`{"deployment_id":"dep_1","upstreams":["http://127.0.0.1:9"]}`)
	big := bytes.Repeat([]byte("x"), record.MaxValueSize+1)
	ndjson := withType(auth, "application/x-ndjson")
	for _, k := range []call{
		{name: "description", method: "GET", path: "/openapi.json", status: 200},
		{name: "healthz", method: "GET", path: "/healthz", status: 200},
		{name: "readyz", method: "GET", path: "/readyz", status: 200},
		{name: "metrics", method: "GET", path: "/metrics", status: 200},
		{name: "put bytes", method: "PUT", path: "/v1/records/blobs/k1", header: octet, body: []byte{0, 1, 2}, status: 200},
		{name: "put JSON", method: "PUT", path: "/v1/records/routes/a.example.com", header: js, body: route, status: 200},
		{name: "put, waiting for the fleet", method: "PUT", path: "/v1/records/blobs/k2?wait=20s&share=1", header: octet, body: []byte("v"), status: 200},
		{name: "put without a token", method: "PUT", path: "/v1/records/blobs/k1", header: withType(nil, "application/octet-stream"), body: []byte("v"), status: 401},
		{name: "put, wrong token", method: "PUT", path: "/v1/records/blobs/k1", header: withType(bearer("nope"), "application/octet-stream"), body: []byte("v"), status: 401},
		{name: "put, bad namespace", method: "PUT", path: "/v1/records/Bad!/k", header: octet, body: []byte("v"), status: 400},
		{name: "put, value its schema refuses", method: "PUT", path: "/v1/records/routes/b.example.com", header: js, body: []byte(`{"upstreams":[7]}`), status: 400},
		{name: "put, wait too long", method: "PUT", path: "/v1/records/blobs/k1?wait=10m", header: octet, body: []byte("v"), status: 400},
		{name: "put, share out of range", method: "PUT", path: "/v1/records/blobs/k1?wait=1s&share=1.5", header: octet, body: []byte("v"), status: 400, invalid: true},
		{name: "put, value too large", method: "PUT", path: "/v1/records/blobs/k1", header: octet, body: big, status: 413},
		{name: "get bytes", method: "GET", path: "/v1/records/blobs/k1", header: auth, status: 200},
		{name: "get JSON", method: "GET", path: "/v1/records/routes/a.example.com", header: auth, status: 200},
		{name: "get absent", method: "GET", path: "/v1/records/blobs/absent", header: auth, status: 404},
		{name: "get, bad namespace", method: "GET", path: "/v1/records/Bad!/k", header: auth, status: 400},
		{name: "get without a token", method: "GET", path: "/v1/records/blobs/k1", status: 401},
		{name: "head", method: "HEAD", path: "/v1/records/blobs/k1", header: auth, status: 200},
		{name: "head absent", method: "HEAD", path: "/v1/records/blobs/absent", header: auth, status: 404},
		{name: "head, bad namespace", method: "HEAD", path: "/v1/records/Bad!/k", header: auth, status: 400},
		{name: "head without a token", method: "HEAD", path: "/v1/records/blobs/k1", status: 401},
		{name: "delete", method: "DELETE", path: "/v1/records/blobs/k1", header: auth, status: 200},
		{name: "get deleted", method: "GET", path: "/v1/records/blobs/k1", header: auth, status: 404},
		{name: "delete, bad namespace", method: "DELETE", path: "/v1/records/Bad!/k", header: auth, status: 400},
		{name: "delete without a token", method: "DELETE", path: "/v1/records/blobs/k1", status: 401},
		{name: "import", method: "POST", path: "/v1/import", header: ndjson, status: 200,
			body: []byte(`{"namespace":"blobs","key":"i1","value":{"a":1}}` + "\n" + `{"namespace":"blobs","key":"i2","value_base64":"AAEC"}` + "\n" + `{"namespace":"blobs","key":"i1","delete":true,"value":1}` + "\n")},
		{name: "import, a line not JSON", method: "POST", path: "/v1/import", header: ndjson, status: 200, invalid: true,
			body: []byte(`{"namespace":"blobs","key":"i3","value":2}` + "\nnot json\n")},
		{name: "import without a token", method: "POST", path: "/v1/import", header: withType(nil, "application/x-ndjson"), body: []byte("\n"), status: 401},
		{name: "export", method: "GET", path: "/v1/export/blobs", header: auth, status: 200},
		{name: "export, bad namespace", method: "GET", path: "/v1/export/NO", header: auth, status: 400},
		{name: "export without a token", method: "GET", path: "/v1/export/blobs", status: 401},
		{name: "fleet page", method: "GET", path: "/debug/fleet", header: auth, status: 200},
		{name: "fleet page, ?token=", method: "GET", path: "/debug/fleet?token=" + tok, status: 303},
		{name: "fleet page without a token", method: "GET", path: "/debug/fleet", status: 401},
		{name: "fleet data", method: "GET", path: "/debug/fleet.json", header: auth, status: 200},
		{name: "fleet data, ?token=", method: "GET", path: "/debug/fleet.json?token=" + tok, status: 303},
		{name: "fleet data without a token", method: "GET", path: "/debug/fleet.json", status: 401},
	} {
		c.check(k)
	}
	// The member is gone: the receipt is not met within the wait.
	_ = member.Close()
	c.check(call{name: "delete, waiting, a member gone", method: "DELETE", path: "/v1/records/blobs/k2?wait=1s", header: auth, status: 202})
	c.check(call{name: "put, waiting, a member gone", method: "PUT", path: "/v1/records/blobs/k2?wait=1s", header: octet, body: []byte("w"), status: 202})

	c.coverage(map[string]string{
		"putRecord 409":       "two publishers racing for one key",
		"putRecord 500":       "an unexpected failure",
		"putRecord 503":       "the origin unreachable: a directory origin is always there (and root ignores permissions)",
		"deleteRecord 409":    "as putRecord",
		"deleteRecord 500":    "as putRecord",
		"deleteRecord 503":    "as putRecord",
		"getRecord 500":       "as putRecord",
		"getRecord 503":       "as putRecord",
		"headRecord 503":      "as putRecord",
		"importRecords 413":   "a body over 1 GiB",
		"importRecords 500":   "as putRecord",
		"importRecords 503":   "as putRecord",
		"exportNamespace 500": "as putRecord",
		"exportNamespace 503": "as putRecord",
		"readyz 503":          "the publisher has no readiness condition (TestOpenAPIAdmin covers it)",
		"fleetPage 403":       "serve needs a token (TestOpenAPIAdmin covers it)",
		"fleetPage 404":       "serve with gossip has a fleet (TestOpenAPIAdmin covers it)",
		"fleetData 403":       "as fleetPage",
		"fleetData 404":       "as fleetPage",
	})
}

// TestOpenAPINode: a sentinel's admin listener in a dev cluster, with the
// watch stream and the snapshot endpoint.
func TestOpenAPINode(t *testing.T) {
	cl, err := devcluster.Start(context.Background(), devcluster.Config{DataDir: t.TempDir(), AnyPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	const tok = "dev-token"
	c := newConformance(t, openapi.Node, "http://"+cl.Sentinels[0].AdminAddr())
	auth := bearer(tok)
	// The route is in the cache once a request asked for it.
	resp, err := http.Get("http://" + cl.Sentinels[0].Addr() + "/")
	if err == nil {
		resp.Body.Close()
	}
	// The proven snapshot needs a checkpoint of routes matched: the dev
	// publisher issues them and pushes them by gossip.
	if !testkit.Poll(30*time.Second, func() bool {
		_, _, err := cl.Nodes[0].ProvenSnapshot(sentinel.RoutesNamespace)
		return err == nil
	}) {
		t.Fatalf("sentinel-1 matched no checkpoint of routes: %v", func() error { _, _, err := cl.Nodes[0].ProvenSnapshot(sentinel.RoutesNamespace); return err }())
	}
	var status string
	if !testkit.Poll(30*time.Second, func() bool {
		req, _ := http.NewRequest("GET", c.base+"/debug/records/routes/"+devcluster.APIHost, nil)
		req.Header = auth
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		status = resp.Status
		return resp.StatusCode == 200
	}) {
		t.Fatalf("/debug/records/routes/%s: %s", devcluster.APIHost, status)
	}
	for _, k := range []call{
		{name: "description", method: "GET", path: "/openapi.json", status: 200},
		{name: "healthz", method: "GET", path: "/healthz", status: 200},
		{name: "readyz", method: "GET", path: "/readyz", status: 200},
		{name: "metrics", method: "GET", path: "/metrics", status: 200},
		{name: "inspect", method: "GET", path: "/debug/records/routes/" + devcluster.APIHost, header: auth, status: 200},
		{name: "inspect, not cached", method: "GET", path: "/debug/records/routes/absent.example.com", header: auth, status: 404},
		{name: "inspect, bad namespace", method: "GET", path: "/debug/records/Bad!/k", header: auth, status: 400},
		{name: "inspect without a token", method: "GET", path: "/debug/records/routes/x", status: 401},
		{name: "members", method: "GET", path: "/debug/members", header: auth, status: 200},
		{name: "members without a token", method: "GET", path: "/debug/members", status: 401},
		{name: "fleet page", method: "GET", path: "/debug/fleet", header: auth, status: 200},
		{name: "fleet page, ?token=", method: "GET", path: "/debug/fleet?token=" + tok, status: 303},
		{name: "fleet page without a token", method: "GET", path: "/debug/fleet", status: 401},
		{name: "fleet data", method: "GET", path: "/debug/fleet.json", header: auth, status: 200},
		{name: "fleet data, ?token=", method: "GET", path: "/debug/fleet.json?token=" + tok, status: 303},
		{name: "fleet data without a token", method: "GET", path: "/debug/fleet.json", status: 401},
		{name: "watch", method: "GET", path: "/v1/watch/" + sentinel.RoutesNamespace + "?heartbeat=100ms", header: auth, status: 200, stream: 3},
		{name: "watch, cursor ahead of any node", method: "GET", path: "/v1/watch/routes?after=ffffffffffffffff", header: auth, status: 400},
		{name: "watch, cursor not hex", method: "GET", path: "/v1/watch/routes?after=zz", header: auth, status: 400, invalid: true},
		{name: "watch, namespace not held", method: "GET", path: "/v1/watch/blobs", header: auth, status: 404},
		{name: "watch without a token", method: "GET", path: "/v1/watch/routes", status: 401},
		{name: "snapshot", method: "GET", path: "/v1/snapshots/routes", header: auth, status: 200, ctype: "application/vnd.dataplane.snapshot"},
		{name: "snapshot, proven", method: "GET", path: "/v1/snapshots/routes?proof=1", header: auth, status: 200, ctype: dataplane.ContentTypeProvenSnapshot},
		{name: "snapshot, head", method: "HEAD", path: "/v1/snapshots/routes", header: auth, status: 200},
		{name: "snapshot, head, namespace not held", method: "HEAD", path: "/v1/snapshots/blobs", header: auth, status: 404},
		{name: "snapshot, head without a token", method: "HEAD", path: "/v1/snapshots/routes", status: 401},
		{name: "snapshot, namespace not held", method: "GET", path: "/v1/snapshots/blobs", header: auth, status: 404},
		{name: "snapshot without a token", method: "GET", path: "/v1/snapshots/routes", status: 401},
	} {
		c.check(k)
	}
	c.coverage(map[string]string{
		"readyz 503":           "the node is warm once the cluster started (TestOpenAPIAdmin covers it)",
		"inspectRecord 403":    "the dev cluster has an admin token (TestOpenAPIAdmin covers it)",
		"members 403":          "as inspectRecord",
		"members 404":          "the node is in gossip (TestOpenAPIAdmin covers it)",
		"fleetPage 403":        "as inspectRecord",
		"fleetPage 404":        "as members",
		"fleetData 403":        "as inspectRecord",
		"fleetData 404":        "as members",
		"watch 403":            "as inspectRecord",
		"watch 501":            "needs a TTL-only node",
		"watch 503":            "needs a namespace not complete yet: a moment during warm-up",
		"peerSnapshot 403":     "as inspectRecord",
		"peerSnapshot 500":     "a snapshot that cannot be encoded",
		"peerSnapshotHead 403": "as inspectRecord",
		"peerSnapshotHead 500": "as peerSnapshot 500",
	})
}

// TestOpenAPIAdmin: the admin listener of the other services (admin.Handler
// alone, as the cache node and the syncer serve it), once without a token
// and warming, once with a token but no views.
func TestOpenAPIAdmin(t *testing.T) {
	warming := httptest.NewServer(admin.Handler(admin.Config{Gatherer: prometheus.NewRegistry(), Ready: func() bool { return false }, Detail: func() any { return map[string]int{"loaded": 1} }}))
	defer warming.Close()
	bare := httptest.NewServer(admin.Handler(admin.Config{Gatherer: prometheus.NewRegistry(), Token: "t"}))
	defer bare.Close()
	c := newConformance(t, openapi.Admin, warming.URL)
	for _, k := range []call{
		{name: "description", method: "GET", path: "/openapi.json", status: 200},
		{name: "healthz", method: "GET", path: "/healthz", status: 200},
		{name: "readyz, warming", method: "GET", path: "/readyz", status: 503},
		{name: "metrics", method: "GET", path: "/metrics", status: 200},
		{name: "inspect, no token configured", method: "GET", path: "/debug/records/routes/x", header: bearer("x"), status: 403},
		{name: "members, no token configured", method: "GET", path: "/debug/members", header: bearer("x"), status: 403},
		{name: "fleet page, no token configured", method: "GET", path: "/debug/fleet", header: bearer("x"), status: 403},
		{name: "fleet data, no token configured", method: "GET", path: "/debug/fleet.json", header: bearer("x"), status: 403},
	} {
		c.check(k)
	}
	c.base = bare.URL
	for _, k := range []call{
		{name: "readyz", method: "GET", path: "/readyz", status: 200},
		{name: "inspect, no cache", method: "GET", path: "/debug/records/routes/x", header: bearer("t"), status: 404},
		{name: "inspect without a token", method: "GET", path: "/debug/records/routes/x", status: 401},
		{name: "members, no gossip", method: "GET", path: "/debug/members", header: bearer("t"), status: 404},
		{name: "members without a token", method: "GET", path: "/debug/members", status: 401},
		{name: "fleet page, no gossip", method: "GET", path: "/debug/fleet", header: bearer("t"), status: 404},
		{name: "fleet page without a token", method: "GET", path: "/debug/fleet", status: 401},
		{name: "fleet data, no gossip", method: "GET", path: "/debug/fleet.json", header: bearer("t"), status: 404},
		{name: "fleet data without a token", method: "GET", path: "/debug/fleet.json", status: 401},
	} {
		c.check(k)
	}
	c.coverage(map[string]string{
		"inspectRecord 200": "TestOpenAPINode covers it",
		"inspectRecord 400": "TestOpenAPINode covers it",
		"members 200":       "TestOpenAPINode covers it",
		"fleetPage 200":     "TestOpenAPINode and TestOpenAPIPublisher cover it",
		"fleetPage 303":     "as fleetPage 200",
		"fleetData 200":     "as fleetPage 200",
		"fleetData 303":     "as fleetPage 200",
	})
}

// TestPublisherServerRoutesDocumented: every admin path publisherMux
// mounts beside the API is in the publisher's description.
func TestPublisherServerRoutesDocumented(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document(openapi.Publisher))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(slices.Clone(admin.PublisherPaths), openapi.Path) {
		if doc.Paths.Value(p) == nil || doc.Paths.Value(p).Get == nil {
			t.Errorf("publish serve mounts GET %s, which its description lacks", p)
		}
	}
}

func testGossipNode(t *testing.T, name, region string, observer bool, seeds []string) *gossip.Node {
	t.Helper()
	c := gossip.DefaultLocalConfig()
	c.Insecure, c.Name, c.Region, c.Observer, c.Seeds = true, name, region, observer, seeds
	c.ReportInterval = 100 * time.Millisecond
	n, err := gossip.New(c, gossip.Funcs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}
