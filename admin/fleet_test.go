package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

func testFleet() gossip.FleetView {
	now := time.Now()
	v1 := record.MakeVersion(now.Add(-2*time.Second), 0)
	v2 := record.MakeVersion(now.Add(-time.Second), 0)
	return gossip.FleetView{
		Self: "s-1", Region: "eu", Now: now,
		Members: []gossip.MemberReport{
			{Name: "s-1", Region: "eu", State: gossip.StateAlive, Self: true, Cursor: v1, Applied: []gossip.NamespaceVersion{{Namespace: "routes", Version: v2}}, ReportedAt: now},
			{Name: "s-2", Region: "us", State: gossip.StateDead, Cursor: v1, Applied: []gossip.NamespaceVersion{{Namespace: "routes", Version: v1}}, ReportedAt: now.Add(-time.Minute)},
			{Name: "<script>", Region: "us", State: gossip.StateAlive},
		},
		Changes: []gossip.ChangeTiming{{Namespace: "routes", Key: "a.example", Version: v2, Published: v2.Time(), AppliedHere: now, ReachedAll: now}},
	}
}

func TestFleetPageAuthAndContent(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{Gatherer: prometheus.NewRegistry(), Token: "s3cret", Fleet: testFleet}))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, edit func(*http.Request)) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if edit != nil {
			edit(req)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, tc := range []struct {
		name, path string
		edit       func(*http.Request)
		status     int
	}{
		{"no token", "/debug/fleet", nil, http.StatusUnauthorized},
		{"wrong bearer", "/debug/fleet", bearer("nope"), http.StatusUnauthorized},
		{"wrong query token", "/debug/fleet?token=nope", nil, http.StatusUnauthorized},
		{"wrong cookie", "/debug/fleet", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: fleetCookie, Value: "s3cret"}) }, http.StatusUnauthorized},
		{"bearer", "/debug/fleet", bearer("s3cret"), http.StatusOK},
		{"json bearer", "/debug/fleet.json", bearer("s3cret"), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, body := get(tc.path, tc.edit); resp.StatusCode != tc.status {
				t.Errorf("%s: %d %s, want %d", tc.path, resp.StatusCode, body, tc.status)
			}
		})
	}

	// ?token= once: a cookie (not the token itself) and a redirect away
	// from the token in the address.
	resp, _ := get("/debug/fleet?token=s3cret&x=1", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/debug/fleet?x=1" {
		t.Fatalf("?token=: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || strings.Contains(cookies[0].Value, "s3cret") {
		t.Fatalf("cookie %+v", cookies)
	}
	resp, body := get("/debug/fleet", func(r *http.Request) { r.AddCookie(cookies[0]) })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("with the cookie: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"s-1", "s-2", `id="region-eu"`, `id="region-us"`, "1 of 2 alive", "dead", "routes/a.example", "&lt;script&gt;", `http-equiv="refresh"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("a member name was not escaped")
	}

	_, js := get("/debug/fleet.json", bearer("s3cret"))
	var d FleetData
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Members) != 3 || len(d.Namespaces) != 1 || d.Newest["routes"] != d.Members[0].Applied[0].Version {
		t.Errorf("fleet.json: %s", js)
	}

	// Without a token configured, the page is disabled; without gossip it
	// says so.
	off := httptest.NewServer(Handler(Config{Fleet: testFleet}))
	defer off.Close()
	if resp, err := http.Get(off.URL + "/debug/fleet?token="); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("no token configured: %v %v", resp.StatusCode, err)
	}
	none := httptest.NewServer(Handler(Config{Token: "s3cret"}))
	defer none.Close()
	req, _ := http.NewRequest("GET", none.URL+"/debug/fleet", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("no gossip: %v %v", resp.StatusCode, err)
	}
}

func TestFleetRates(t *testing.T) {
	reg := prometheus.NewRegistry()
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dataplane_cache_hits_total", Help: "h"}, []string{"ns"})
	stale := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dataplane_cache_stale_hits_total", Help: "s"}, []string{"ns"})
	misses := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dataplane_cache_misses_total", Help: "m"}, []string{"ns"})
	origin := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dataplane_cache_origin_reads_total", Help: "o"}, []string{"ns"})
	reg.MustRegister(hits, stale, misses, origin)
	p := newFleetPage(testFleet, reg, "x")
	t0 := time.Now()
	if d := p.data(t0); d.Rates != nil {
		t.Fatalf("rates on the first view: %+v", d.Rates)
	}
	hits.WithLabelValues("routes").Add(60)
	stale.WithLabelValues("keys").Add(20)
	misses.WithLabelValues("keys").Add(20)
	origin.WithLabelValues("keys").Add(10)
	d := p.data(t0.Add(2 * time.Second))
	if d.Rates == nil {
		t.Fatal("no rates on the second view")
	}
	want := Rates{Seconds: 2, Reads: 50, StaleHits: 10, OriginReads: 5, StaleHitShare: 0.2, OriginReadEach: 0.1}
	if *d.Rates != want {
		t.Errorf("rates %+v, want %+v", *d.Rates, want)
	}
}
