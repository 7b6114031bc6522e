package admin

import (
	"encoding/json"
	"fmt"
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

// renderPage renders the fleet page for v as serveHTML does.
func renderPage(t *testing.T, v gossip.FleetView, refusals func(gossip.MemberReport, time.Time) []pageRefusal) string {
	t.Helper()
	p := newFleetPage(func() gossip.FleetView { return v }, prometheus.NewRegistry(), "x")
	var b strings.Builder
	if err := fleetTemplate.Execute(&b, pageModel(p.data(v.Now), refusals)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// chartOf returns the page's inline SVG chart.
func chartOf(t *testing.T, page string) string {
	t.Helper()
	i, j := strings.Index(page, "<svg"), strings.Index(page, "</svg>")
	if i < 0 || j < i {
		t.Fatalf("the page has no chart")
	}
	return page[i : j+len("</svg>")]
}

// bigFleet is a view of n members in four regions: every seventh is
// behind on routes, every eleventh dead, and the newest change has not
// reached the members behind.
func bigFleet(n int) gossip.FleetView {
	now := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	old := record.MakeVersion(now.Add(-30*time.Second), 0)
	newest := record.MakeVersion(now.Add(-2*time.Second), 3)
	regions := []string{"ap-south", "eu-west", "us-east", "us-west"}
	v := gossip.FleetView{Self: "node-000", Region: regions[0], Now: now}
	for i := range n {
		m := gossip.MemberReport{
			Name: fmt.Sprintf("node-%03d", i), Region: regions[i%len(regions)], State: gossip.StateAlive,
			Self: i == 0, Cursor: newest, ReportedAt: now.Add(-time.Second),
			Applied: []gossip.NamespaceVersion{
				{Namespace: "keys", Version: old, After: 50 * time.Millisecond},
				{Namespace: "routes", Version: newest, After: time.Duration(20+i*7) * time.Millisecond},
			},
		}
		if i%7 == 1 {
			m.Cursor, m.Applied[1] = old, gossip.NamespaceVersion{Namespace: "routes", Version: old, After: 40 * time.Millisecond}
		}
		if i%11 == 1 {
			m.State = gossip.StateDead
		}
		v.Members = append(v.Members, m)
	}
	v.Changes = []gossip.ChangeTiming{
		{Namespace: "keys", Key: "ks/abc", Version: old, Published: old.Time(), AppliedHere: old.Time().Add(40 * time.Millisecond), ReachedAll: old.Time().Add(900 * time.Millisecond)},
		{Namespace: "routes", Key: "big.example", Version: newest, Published: newest.Time(), AppliedHere: newest.Time().Add(20 * time.Millisecond)},
	}
	return v
}

// TestFleetPageSizes renders the page for 3 and for 100 members: every
// member is listed once in the tables, versions appear as times with the
// version only as a tooltip, the lists at the top and of pending members
// stay bounded, and the chart has a bar per region plus the fleet's.
func TestFleetPageSizes(t *testing.T) {
	for _, n := range []int{3, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			v := bigFleet(n)
			page := renderPage(t, v, memberRefusals)
			var behind, dead []string
			for _, m := range v.Members {
				if c := strings.Count(page, `data-name="`+m.Name+`"`); c < 1 || c > 2 {
					t.Errorf("%s appears %d times as a row or an alert", m.Name, c)
				}
				if m.Cursor != v.Changes[1].Version {
					behind = append(behind, m.Name)
					if m.State == gossip.StateDead {
						dead = append(dead, m.Name)
					}
				}
			}
			if got := strings.Count(page, `<tr class="member `); got != n {
				t.Errorf("%d member rows, want %d", got, n)
			}
			// Versions: shown as times, the hex only in title attributes.
			newest := v.Changes[1].Version
			if hex := newest.String(); strings.Count(page, hex) != strings.Count(page, `title="version `+hex+`"`) || !strings.Contains(page, ">12:59:58.000 #3</time>") {
				t.Errorf("version %s not shown as its time with the hex as a tooltip", hex)
			}
			// Behind members at the top, in red, bounded.
			alerts := strings.Count(page, `<li class="attention`)
			if want := min(len(behind), maxAttention); alerts != want {
				t.Errorf("%d members at the top, want %d", alerts, want)
			}
			if !strings.Contains(page, fmt.Sprintf(`<h2>%d behind</h2>`, len(behind))) {
				t.Errorf("the top does not count %d behind", len(behind))
			}
			if more := len(behind) - maxAttention; more > 0 && !strings.Contains(page, fmt.Sprintf("and %d more: see the tables below", more)) {
				t.Errorf("the top does not say %d more", more)
			}
			// The change not everywhere yet names what it waits for:
			// the alive members first.
			waiting := behind
			if len(waiting) > maxWaiting {
				waiting = waiting[:maxWaiting]
			}
			for _, name := range waiting {
				if !strings.Contains(page, name) {
					t.Errorf("waiting list lacks %s", name)
				}
			}
			for _, name := range dead {
				if len(behind) <= maxWaiting && !strings.Contains(page, name+" (down)") {
					t.Errorf("%s not marked down in the waiting list", name)
				}
			}
			if more := len(behind) - maxWaiting; more > 0 && !strings.Contains(page, fmt.Sprintf(" and %d more</td>", more)) {
				t.Errorf("waiting list does not say %d more", more)
			}
			bars := parseChart(t, chartOf(t, page))
			regions := min(n, 4)
			if len(bars) != regions+1 || !bars[regions].fleet || bars[regions].p50 != 900 {
				t.Errorf("chart rows %+v, want %d regions and the fleet's 900 ms", bars, regions)
			}
			if len(page) > 400<<10 {
				t.Errorf("page of %d members is %d bytes", n, len(page))
			}
		})
	}
}

// TestFleetPageRefusals: what memberRefusals returns puts a member at the
// top in red, before the members behind, and fills the refused column.
func TestFleetPageRefusals(t *testing.T) {
	v := bigFleet(3)
	v.Members[2].Name = "<b>bad</b>"
	refusals := func(m gossip.MemberReport, now time.Time) []pageRefusal {
		if m.Name != "<b>bad</b>" {
			return nil
		}
		return []pageRefusal{{Namespace: "keys", Key: "ks/abc", Version: versionAt(v.Changes[0].Version, now), Reason: "unsigned"}}
	}
	page := renderPage(t, v, refusals)
	top := page[strings.Index(page, `<section id="attention">`):strings.Index(page, "</section>")]
	for _, want := range []string{"<h2>1 refusing, 1 behind</h2>", `<li class="attention refusing" data-name="&lt;b&gt;bad&lt;/b&gt;">`, "<code>keys/ks/abc</code> <code><time", "</code>: unsigned"} {
		if !strings.Contains(top, want) {
			t.Errorf("the top lacks %q:\n%s", want, top)
		}
	}
	if strings.Index(top, "refusing") > strings.Index(top, `data-name="node-001"`) {
		t.Error("the member behind is listed before the one refusing")
	}
	if !strings.Contains(page, `refusing" data-name="&lt;b&gt;bad&lt;/b&gt;"><td>`) || !strings.Contains(page, "<th>refused (last, newest first)</th>") {
		t.Error("no refusing row or refused column")
	}
	if strings.Contains(page, "<b>bad") {
		t.Error("a member name was not escaped")
	}
	if strings.Contains(renderPage(t, v, memberRefusals), "refused (last") {
		t.Error("a refused column without refusals")
	}
}
