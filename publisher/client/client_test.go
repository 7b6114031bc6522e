package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/openapi"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/publisher/client"
)

const token = "client-test-token"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// gossipNode starts a loopback gossip node.
func gossipNode(t *testing.T, name, region string, observer bool, seeds []string) *gossip.Node {
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

// publisherServer runs the publisher's HTTP API over a directory origin,
// with notify as its notifier (nil: none).
func publisherServer(t *testing.T, notify publisher.Notifier) *httptest.Server {
	t.Helper()
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := publisher.DefaultConfig()
	cfg.Registerer = prometheus.NewRegistry()
	cfg.Notifier = notify
	p, err := publisher.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(publisher.Handler(p, token))
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, url string, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientAgainstPublisher: every call against the real publisher API,
// and its errors as typed *APIError values.
func TestClientAgainstPublisher(t *testing.T) {
	ctx := ctxT(t)
	srv := publisherServer(t, nil)
	c := newClient(t, srv.URL, client.DefaultConfig().WithToken(token))

	route := []byte(`{"deployment_id":"dep_1","upstreams":["http://127.0.0.1:9"]}`)
	w, err := c.Put(ctx, "routes", "api.example.com", route)
	if err != nil {
		t.Fatal(err)
	}
	if w.Namespace != "routes" || w.Key != "api.example.com" || w.Version == 0 || w.Tombstone || w.Receipt != nil {
		t.Fatalf("put: %+v", w)
	}
	got, err := c.Get(ctx, "routes", "api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Value, route) || got.Version != w.Version || got.ContentType != "application/json" {
		t.Fatalf("get: %+v, want the value at %s", got, w.Version)
	}
	// A key with a '/' travels percent-encoded and comes back whole.
	if _, err := c.Put(ctx, "blobs", "a/b c", []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "blobs", "a/b c"); err != nil || !bytes.Equal(got.Value, []byte{0, 1, 2}) || got.ContentType != "application/octet-stream" {
		t.Fatalf("get a/b c: %+v %v", got, err)
	}

	d, err := c.Delete(ctx, "routes", "api.example.com")
	if err != nil || !d.Tombstone || d.Version <= w.Version {
		t.Fatalf("delete: %+v %v", d, err)
	}
	_, err = c.Get(ctx, "routes", "api.example.com")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Code != client.CodeNotFound || !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after delete: %v, want a 404 not_found APIError", err)
	}

	// The schema's field errors reach the caller.
	_, err = c.Put(ctx, "routes", "bad.example.com", []byte(`{"deployment_id":"d","upstreams":["http://127.0.0.1:9", 7]}`))
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !errors.Is(err, client.ErrInvalid) || len(ae.Fields) != 1 || ae.Fields[0].In != "value" || ae.Fields[0].Field != "upstreams[1]" {
		t.Fatalf("schema refusal: %#v", err)
	}
	// So do the query parameters'.
	_, err = c.Put(ctx, "routes", "x.example.com", route, client.Wait(time.Hour, 1))
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || len(ae.Fields) != 1 || ae.Fields[0].In != "query" || ae.Fields[0].Field != "wait" {
		t.Fatalf("bad wait: %#v", err)
	}

	lines := `{"namespace":"blobs","key":"k1","value":{"a":1}}
{"namespace":"blobs","key":"k2","value":"x","delete":true}
{"namespace":"blobs","key":"k3","value_base64":"AAEC"}
`
	st, err := c.Import(ctx, strings.NewReader(lines))
	if err != nil || st.Lines != 3 || st.Written != 2 || st.Rejected != 1 || len(st.Errors) != 1 || st.Errors[0].Line != 2 {
		t.Fatalf("import: %+v %v", st, err)
	}
	var out bytes.Buffer
	if err := c.Export(ctx, "blobs", &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 || !strings.Contains(out.String(), `"key":"k1","value":{"a":1}`) {
		t.Fatalf("export: %s", out.String())
	}

	// A wrong token.
	bad := newClient(t, srv.URL, client.DefaultConfig().WithToken("nope"))
	_, err = bad.Get(ctx, "blobs", "k1")
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
}

// TestClientWait: a write with Wait answers its receipt, met when the
// fleet applied it, and ErrNotApplied with the receipt naming the missing
// member when one is gone.
func TestClientWait(t *testing.T) {
	ctx := ctxT(t)
	pubNode := gossipNode(t, "publisher", "eu", true, nil)
	eu := gossipNode(t, "eu-1", "eu", false, []string{pubNode.Addr()})
	us := gossipNode(t, "us-1", "us", false, []string{pubNode.Addr()})
	testkit.Eventually(t, 30*time.Second, "the 3 nodes to meet", func() bool {
		return len(pubNode.Members()) == 3 && len(eu.Members()) == 3 && len(us.Members()) == 3
	})
	srv := publisherServer(t, pubNode)
	c := newClient(t, srv.URL, client.DefaultConfig().WithToken(token))
	w, err := c.Put(ctx, "blobs", "k", []byte("v1"), client.Wait(20*time.Second, 1))
	if err != nil {
		t.Fatal(err)
	}
	r := w.Receipt
	if r == nil || !r.Met || r.Version != w.Version || len(r.Regions) != 2 || r.Share != 1 {
		t.Fatalf("receipt %+v", r)
	}
	_ = us.Close()
	w, err = c.Delete(ctx, "blobs", "k", client.Wait(time.Second, 1))
	if !errors.Is(err, client.ErrNotApplied) || w.Receipt == nil || w.Receipt.Met || !w.Tombstone {
		t.Fatalf("delete with us-1 down: %+v %v, want ErrNotApplied with the receipt", w, err)
	}
	for _, g := range w.Receipt.Regions {
		if g.Region == "us" && (g.Met || len(g.Pending) != 1 || g.Pending[0] != "us-1") {
			t.Errorf("region us: %+v, want us-1 pending", g)
		}
	}
}

// scripted is an httptest server answering each request with the next
// status (the last one repeats), recording the bodies it received.
type scripted struct {
	statuses []int
	headers  []http.Header
	bodies   []string
}

func (s *scripted) server(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		i := min(len(s.bodies), len(s.statuses)-1)
		s.bodies = append(s.bodies, string(b))
		for k, v := range s.headers[i] {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Dataplane-Version", "0000000000000001")
		w.WriteHeader(s.statuses[i])
		if s.statuses[i] < 300 {
			io.WriteString(w, `{"namespace":"n","key":"k","version":"0000000000000001","tombstone":false,"lines":1,"written":1,"unchanged":0,"rejected":0}`)
			return
		}
		io.WriteString(w, `{"error":"try later","code":"unavailable"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// recorder replaces the client's waits, recording them.
func recorder(c *client.Client) *[]time.Duration {
	var waits []time.Duration
	client.SetSleep(c, func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	})
	return &waits
}

func TestRetryAfterHonoured(t *testing.T) {
	s := &scripted{statuses: []int{429, 200}, headers: []http.Header{{"Retry-After": {"3"}}, {}}}
	c := newClient(t, s.server(t).URL, client.DefaultConfig())
	waits := recorder(c)
	if _, err := c.Put(ctxT(t), "n", "k", []byte("body")); err != nil {
		t.Fatal(err)
	}
	if len(s.bodies) != 2 || s.bodies[1] != "body" {
		t.Fatalf("requests %q, want the body twice", s.bodies)
	}
	// At least what the server asked, plus at most a tenth.
	if len(*waits) != 1 || (*waits)[0] < 3*time.Second || (*waits)[0] > 3300*time.Millisecond+time.Millisecond {
		t.Fatalf("waits %v, want one in [3s, 3.3s]", *waits)
	}
}

// TestRetryAfterDate: Retry-After as an HTTP date is waited until then.
func TestRetryAfterDate(t *testing.T) {
	at := time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)
	s := &scripted{statuses: []int{503, 200}, headers: []http.Header{{"Retry-After": {at}}, {}}}
	c := newClient(t, s.server(t).URL, client.DefaultConfig())
	waits := recorder(c)
	if _, err := c.Get(ctxT(t), "n", "k"); err != nil {
		t.Fatal(err)
	}
	// The date has a one-second resolution, and time passes before it is
	// read: well above the 200 ms backoff, at most the 5 s plus a tenth.
	if len(*waits) != 1 || (*waits)[0] < time.Second || (*waits)[0] > 5500*time.Millisecond+time.Millisecond {
		t.Fatalf("waits %v, want one of about 4-5s", *waits)
	}
}

func TestRetry5xxBounded(t *testing.T) {
	cfg := client.DefaultConfig()
	cfg.Retry = client.RetryPolicy{Attempts: 3, Backoff: 100 * time.Millisecond, MaxWait: time.Second}
	// Two failures, then success.
	s := &scripted{statuses: []int{503, 502, 200}, headers: []http.Header{{}, {}, {}}}
	c := newClient(t, s.server(t).URL, cfg)
	waits := recorder(c)
	if _, err := c.Delete(ctxT(t), "n", "k"); err != nil {
		t.Fatal(err)
	}
	if len(s.bodies) != 3 || len(*waits) != 2 {
		t.Fatalf("%d requests, waits %v; want 3 and 2", len(s.bodies), *waits)
	}
	// Backoff doubling, drawn in the upper half: [50ms,100ms], [100ms,200ms].
	for i, w := range *waits {
		hi := 100 * time.Millisecond << i
		if w < hi/2 || w > hi {
			t.Errorf("wait %d: %v, want in [%v, %v]", i, w, hi/2, hi)
		}
	}

	// Always failing: Attempts requests, then the last answer as an APIError.
	s = &scripted{statuses: []int{500}, headers: []http.Header{{"Retry-After": {"1"}}}}
	c = newClient(t, s.server(t).URL, cfg)
	recorder(c)
	_, err := c.Get(ctxT(t), "n", "k")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 500 || ae.RetryAfter != time.Second || len(s.bodies) != 3 {
		t.Fatalf("%v after %d requests, want a 500 APIError after 3", err, len(s.bodies))
	}

	// A Retry-After longer than MaxWait is not waited: one request.
	s = &scripted{statuses: []int{503}, headers: []http.Header{{"Retry-After": {"60"}}}}
	c = newClient(t, s.server(t).URL, cfg)
	waits = recorder(c)
	_, err = c.Get(ctxT(t), "n", "k")
	if !errors.As(err, &ae) || ae.RetryAfter != time.Minute || !errors.Is(err, client.ErrUnavailable) || len(s.bodies) != 1 || len(*waits) != 0 {
		t.Fatalf("%v after %d requests and waits %v, want one request and the APIError", err, len(s.bodies), *waits)
	}

	// 4xx is not retried.
	s = &scripted{statuses: []int{409}, headers: []http.Header{{}}}
	c = newClient(t, s.server(t).URL, cfg)
	recorder(c)
	if _, err := c.Put(ctxT(t), "n", "k", nil); len(s.bodies) != 1 || err == nil {
		t.Fatalf("409: %v after %d requests", err, len(s.bodies))
	}
}

func TestImportRetriesOnlySeekable(t *testing.T) {
	cfg := client.DefaultConfig()
	s := &scripted{statuses: []int{503, 200}, headers: []http.Header{{}, {}}}
	c := newClient(t, s.server(t).URL, cfg)
	recorder(c)
	const body = "{\"namespace\":\"n\",\"key\":\"k\",\"value\":1}\n"
	if _, err := c.Import(ctxT(t), bytes.NewReader([]byte(body))); err != nil {
		t.Fatal(err)
	}
	if len(s.bodies) != 2 || s.bodies[0] != body || s.bodies[1] != body {
		t.Fatalf("bodies %q, want the whole body twice", s.bodies)
	}
	s = &scripted{statuses: []int{503, 200}, headers: []http.Header{{}, {}}}
	c = newClient(t, s.server(t).URL, cfg)
	recorder(c)
	_, err := c.Import(ctxT(t), io.MultiReader(strings.NewReader(body))) // not an io.Seeker
	if !errors.Is(err, client.ErrUnavailable) || len(s.bodies) != 1 {
		t.Fatalf("%v after %d requests, want the 503 after one", err, len(s.bodies))
	}
}

func TestRetryConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	cfg := client.DefaultConfig()
	cfg.Retry.Attempts = 3
	c := newClient(t, url, cfg)
	waits := recorder(c)
	_, err := c.Get(ctxT(t), "n", "k")
	var ae *client.APIError
	if err == nil || errors.As(err, &ae) || len(*waits) != 2 {
		t.Fatalf("%v with waits %v, want a transport error after 3 attempts", err, *waits)
	}
}

func TestConfigValidated(t *testing.T) {
	for _, tc := range []struct {
		url  string
		edit func(*client.Config)
	}{
		{"ftp://x", nil},
		{"http://", nil},
		{"http://x", func(c *client.Config) { c.HTTPClient = nil }},
		{"http://x", func(c *client.Config) { c.Retry.Attempts = 0 }},
		{"http://x", func(c *client.Config) { c.Retry.MaxWait = c.Retry.Backoff / 2 }},
	} {
		cfg := client.DefaultConfig()
		if tc.edit != nil {
			tc.edit(&cfg)
		}
		if _, err := client.New(tc.url, cfg); err == nil {
			t.Errorf("New(%q, %+v) accepted", tc.url, cfg.Retry)
		}
	}
}

// TestCodesAsDocumented: the client knows every error code the OpenAPI
// description lists, and no other.
func TestCodesAsDocumented(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				ErrorCode struct {
					Enum []client.Code `json:"enum"`
				}
			}
		}
	}
	if err := json.Unmarshal(openapi.Document(openapi.Publisher), &doc); err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(client.Codes)), slices.Sorted(slices.Values(doc.Components.Schemas.ErrorCode.Enum))
	if !slices.Equal(got, want) {
		t.Fatalf("client codes %v, documented %v", got, want)
	}
}
