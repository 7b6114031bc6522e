package sentinel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

// TestMalformedRouteRefusedAtTheDoor: through the publisher API and a
// node, a malformed route (not JSON, a field given twice, an unknown field,
// no upstreams) is refused with 400 naming the field, and the sentinel
// keeps serving the previous route; a valid change then goes through. A
// malformed value that reaches the origin some other way is answered 502,
// never served open and never a crash.
func TestMalformedRouteRefusedAtTheDoor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pcfg := publisher.DefaultConfig() // routes and keys are checked
	pcfg.Logger = slog.New(slog.DiscardHandler)
	pub, err := publisher.New(store, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(publisher.Handler(pub, "tok"))
	t.Cleanup(api.Close)
	put := func(host, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", api.URL+"/v1/records/routes/"+host, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var ups [2]*httptest.Server
	for i := range ups {
		ups[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "up%d", i) }))
		t.Cleanup(ups[i].Close)
	}
	route := func(up int) string {
		return fmt.Sprintf(`{"deployment_id":"d%d","upstreams":[%q]}`, up, ups[up].URL)
	}

	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: 20 * time.Millisecond, Stale: time.Hour} // rereads the origin often
	n, err := dataplane.Open(ctx, dataplane.Config{Origin: store, Cache: copts, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	gw, err := sentinel.New(sentinel.Config{Source: sentinel.SourceFunc(n.Record), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(host string) (int, string) {
		req := httptest.NewRequest("GET", "http://"+host+"/", nil)
		rw := httptest.NewRecorder()
		gw.ServeHTTP(rw, req)
		return rw.Code, rw.Body.String()
	}
	waitServe := func(host string, code int, body string) {
		t.Helper()
		var c int
		var b string
		if !testkit.Poll(10*time.Second, func() bool {
			c, b = serve(host)
			return c == code && b == body
		}) {
			t.Fatalf("%s answered %d %q, want %d %q", host, c, b, code, body)
		}
	}

	if st, body := put("x.localhost", route(0)); st != http.StatusOK {
		t.Fatalf("PUT good route: %d %s", st, body)
	}
	waitServe("x.localhost", 200, "up0")
	good, err := pub.Get(ctx, "routes", "x.localhost")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, body, field string }{
		{"not JSON", `{not json`, "bad JSON"},
		{"require_key twice", fmt.Sprintf(`{"upstreams":[%q],"require_key":true,"keyspace":"ks","require_key":false}`, ups[1].URL), `"require_key"`},
		{"unknown field", fmt.Sprintf(`{"upstream":%q}`, ups[1].URL), `"upstream"`},
		{"no upstreams", `{"upstreams":[]}`, `"upstreams"`},
	} {
		st, body := put("x.localhost", tc.body)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		if st != http.StatusBadRequest || !strings.Contains(e.Error, tc.field) {
			t.Errorf("%s: PUT answered %d %s, want 400 naming %s", tc.name, st, body, tc.field)
		}
	}
	if cur, err := pub.Get(ctx, "routes", "x.localhost"); err != nil || cur.Version != good.Version {
		t.Fatalf("stored route after the refused PUTs: %+v, %v; want version %s", cur, err, good.Version)
	}
	// A write after the refused ones reaches the node: it reads the origin.
	if st, body := put("y.localhost", route(1)); st != http.StatusOK {
		t.Fatalf("PUT barrier route: %d %s", st, body)
	}
	waitServe("y.localhost", 200, "up1")
	// Over many fresh windows, x keeps its last good route.
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if c, b := serve("x.localhost"); c != 200 || b != "up0" {
			t.Fatalf("x.localhost after refused PUTs: %d %q, want the previous route", c, b)
		}
	}
	// Positive control: a valid change goes through.
	if st, body := put("x.localhost", route(1)); st != http.StatusOK {
		t.Fatalf("PUT new good route: %d %s", st, body)
	}
	waitServe("x.localhost", 200, "up1")

	// A malformed route written straight into the origin (an old writer,
	// another tool) is answered 502: a require_key given twice is not
	// served as an open route.
	bad := record.Record{Namespace: "routes", Key: "z.localhost", Version: record.NewClock(nil).Now(),
		Value: fmt.Appendf(nil, `{"upstreams":[%q],"require_key":true,"keyspace":"ks","require_key":false}`, ups[0].URL)}
	if _, err := origin.Publish(ctx, store, bad); err != nil {
		t.Fatal(err)
	}
	c, b := serve("z.localhost")
	if c != http.StatusBadGateway {
		t.Fatalf("z.localhost with a malformed stored route: %d %q, want 502", c, b)
	}
}
