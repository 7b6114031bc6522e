package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// The live fleet page: GET /debug/fleet (HTML, refreshing itself every
// FleetRefresh) and GET /debug/fleet.json (the same data for scripts).
// Both need the admin token: as "Authorization: Bearer <token>", or, for a
// browser, once as ?token=<token>, which answers with a cookie (HttpOnly,
// SameSite=Strict, path /debug/fleet, holding a hash of the token, not the
// token) and a redirect to the page without the token in its address.

// FleetRefresh is how often the fleet page reloads itself.
const FleetRefresh = 5 * time.Second

// fleetCookie names the cookie the fleet page sets.
const fleetCookie = "dataplane_admin"

// FleetData is what /debug/fleet.json answers.
type FleetData struct {
	gossip.FleetView
	// Rates are this node's cache read rates since the previous view of
	// the page (per second); absent on the first view.
	Rates *Rates `json:"rates,omitempty"`
	// Namespaces are the namespaces any member reported, sorted.
	Namespaces []string `json:"namespaces"`
	// Newest is the highest version any member reported per namespace.
	Newest map[string]record.Version `json:"newest"`
}

// Rates are this node's cache read rates.
type Rates struct {
	Seconds        float64 `json:"seconds"` // the interval measured
	Reads          float64 `json:"reads_per_second"`
	StaleHits      float64 `json:"stale_hits_per_second"`
	OriginReads    float64 `json:"origin_reads_per_second"`
	StaleHitShare  float64 `json:"stale_hit_share"` // of reads
	OriginReadEach float64 `json:"origin_reads_per_read"`
}

// fleetPage serves the fleet page and its JSON.
type fleetPage struct {
	fleet    func() gossip.FleetView
	gatherer prometheus.Gatherer
	token    string
	cookie   string // hex sha256 of a label and the token

	mu   sync.Mutex // guards last
	last counterSample
}

// counterSample is a reading of the cache counters this page rates.
type counterSample struct {
	at                            time.Time
	reads, staleHits, originReads float64
	ok                            bool
}

func newFleetPage(fleet func() gossip.FleetView, g prometheus.Gatherer, token string) *fleetPage {
	sum := sha256.Sum256([]byte("dataplane admin cookie\x00" + token))
	return &fleetPage{fleet: fleet, gatherer: g, token: token, cookie: hex.EncodeToString(sum[:])}
}

// authorize admits a request with the bearer token or the page's cookie,
// and turns ?token= into the cookie and a redirect. It answers (and
// returns false) otherwise.
func (p *fleetPage) authorize(w http.ResponseWriter, r *http.Request) bool {
	if p.token == "" {
		writeJSON(w, http.StatusForbidden, errorBody{"endpoint disabled: no admin token configured"})
		return false
	}
	if q := r.URL.Query(); q.Has("token") {
		g, want := sha256.Sum256([]byte(q.Get("token"))), sha256.Sum256([]byte(p.token))
		if subtle.ConstantTimeCompare(g[:], want[:]) != 1 {
			writeJSON(w, http.StatusUnauthorized, errorBody{"wrong admin token"})
			return false
		}
		http.SetCookie(w, &http.Cookie{
			Name: fleetCookie, Value: p.cookie, Path: "/debug/", // the page and fleet.json
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		q.Del("token")
		u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
		return false
	}
	if c, err := r.Cookie(fleetCookie); err == nil {
		if subtle.ConstantTimeCompare([]byte(c.Value), []byte(p.cookie)) == 1 {
			return true
		}
	}
	admitted := false
	RequireToken(p.token, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { admitted = true })).ServeHTTP(w, r)
	return admitted
}

// data gathers the view and the rates since the previous call.
func (p *fleetPage) data(now time.Time) FleetData {
	d := FleetData{FleetView: p.fleet(), Newest: make(map[string]record.Version)}
	for _, m := range d.Members {
		for _, e := range m.Applied {
			if e.Version > d.Newest[e.Namespace] {
				d.Newest[e.Namespace] = e.Version
			}
		}
	}
	for ns := range d.Newest {
		d.Namespaces = append(d.Namespaces, ns)
	}
	slices.Sort(d.Namespaces)
	cur := p.sample(now)
	p.mu.Lock()
	prev := p.last
	if cur.ok && (!prev.ok || now.Sub(prev.at) >= time.Second) {
		p.last = cur
	}
	p.mu.Unlock()
	if cur.ok && prev.ok && now.Sub(prev.at) >= time.Second {
		s := now.Sub(prev.at).Seconds()
		rt := &Rates{
			Seconds:     s,
			Reads:       (cur.reads - prev.reads) / s,
			StaleHits:   (cur.staleHits - prev.staleHits) / s,
			OriginReads: (cur.originReads - prev.originReads) / s,
		}
		if rt.Reads > 0 {
			rt.StaleHitShare = rt.StaleHits / rt.Reads
			rt.OriginReadEach = rt.OriginReads / rt.Reads
		}
		d.Rates = rt
	}
	return d
}

// sample sums this node's cache counters (every label).
func (p *fleetPage) sample(now time.Time) counterSample {
	mfs, err := p.gatherer.Gather()
	if err != nil {
		return counterSample{}
	}
	s := counterSample{at: now, ok: true} // absent counters count as zero
	for _, mf := range mfs {
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		switch mf.GetName() {
		case "dataplane_cache_hits_total", "dataplane_cache_misses_total":
			s.reads += sum
		case "dataplane_cache_stale_hits_total":
			s.staleHits += sum
			s.reads += sum
		case "dataplane_cache_origin_reads_total":
			s.originReads += sum
		}
	}
	return s
}

func (p *fleetPage) serveJSON(w http.ResponseWriter, r *http.Request) {
	if !p.authorize(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, p.data(time.Now()))
}

func (p *fleetPage) serveHTML(w http.ResponseWriter, r *http.Request) {
	if !p.authorize(w, r) {
		return
	}
	d := p.data(time.Now())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if err := fleetTemplate.Execute(w, pageModel(d)); err != nil {
		// Headers are sent; nothing more to do.
		return
	}
}

// The template's model: everything preformatted.
type pageData struct {
	D       FleetData
	Refresh int
	Regions []pageRegion
	Changes []pageChange
}

type pageRegion struct {
	Name    string
	Alive   int
	Total   int
	Members []pageMember
}

type pageMember struct {
	gossip.MemberReport
	CursorAge string
	Reported  string
	Cells     []pageCell // one per namespace of D.Namespaces
}

type pageCell struct {
	Version string
	Lag     string
	Behind  bool
}

type pageChange struct {
	gossip.ChangeTiming
	Here, All string
}

func pageModel(d FleetData) pageData {
	pd := pageData{D: d, Refresh: int(FleetRefresh.Seconds())}
	byRegion := map[string]*pageRegion{}
	var order []string
	for _, m := range d.Members {
		g := byRegion[m.Region]
		if g == nil {
			g = &pageRegion{Name: m.Region}
			byRegion[m.Region] = g
			order = append(order, m.Region)
		}
		g.Total++
		if m.State == gossip.StateAlive {
			g.Alive++
		}
		pm := pageMember{MemberReport: m, CursorAge: "–", Reported: "never"}
		if m.Cursor != 0 {
			pm.CursorAge = ago(d.Now.Sub(m.Cursor.Time()))
		}
		if !m.ReportedAt.IsZero() {
			pm.Reported = ago(d.Now.Sub(m.ReportedAt))
		}
		for _, ns := range d.Namespaces {
			v := appliedIn(m.Applied, ns)
			c := pageCell{Version: "–", Lag: "–"}
			if v != 0 {
				c.Version = v.String()
				lag := d.Newest[ns].Time().Sub(v.Time())
				c.Lag, c.Behind = lag.Round(time.Millisecond).String(), v < d.Newest[ns]
			}
			pm.Cells = append(pm.Cells, c)
		}
		g.Members = append(g.Members, pm)
	}
	for _, r := range order {
		pd.Regions = append(pd.Regions, *byRegion[r])
	}
	for i := len(d.Changes) - 1; i >= 0; i-- { // newest first
		c := d.Changes[i]
		pc := pageChange{ChangeTiming: c, Here: c.AppliedHere.Sub(c.Published).Round(time.Millisecond).String(), All: "not yet"}
		if !c.ReachedAll.IsZero() {
			pc.All = c.ReachedAll.Sub(c.Published).Round(time.Millisecond).String()
		}
		pd.Changes = append(pd.Changes, pc)
	}
	return pd
}

func appliedIn(ns []gossip.NamespaceVersion, name string) record.Version {
	for _, e := range ns {
		if e.Namespace == name {
			return e.Version
		}
	}
	return 0
}

func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String() + " ago"
}

var fleetTemplate = template.Must(template.New("fleet").Funcs(template.FuncMap{
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"rate":  func(f float64) string { return fmt.Sprintf("%.1f/s", f) },
	"stamp": func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>dataplane fleet — {{.D.Self}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f3f3f3}.dead{color:#b00}.left{color:#888}.behind{background:#fff3cd}.self{font-weight:bold}
code{font-size:.95em}.muted{color:#666}
</style></head><body>
<h1>Fleet as seen by <code id="self">{{.D.Self}}</code> (region {{.D.Region}})</h1>
<p class="muted">{{stamp .D.Now}} UTC · reloads every {{.Refresh}} s · versions and lag from each member's gossip report (cursor: every change at or below it is applied there)</p>
<h2>This node's cache</h2>
{{with .D.Rates}}<table id="rates"><tr><th>reads</th><th>stale hits</th><th>origin reads</th><th>stale share</th><th>origin reads per read</th><th>over</th></tr>
<tr><td>{{rate .Reads}}</td><td>{{rate .StaleHits}}</td><td>{{rate .OriginReads}}</td><td>{{pct .StaleHitShare}}</td><td>{{pct .OriginReadEach}}</td><td>{{printf "%.1f" .Seconds}} s</td></tr></table>
{{else}}<p id="rates">Rates appear on the next reload.</p>{{end}}
<h2>Members by region</h2>
{{range .Regions}}<h3 class="region" id="region-{{.Name}}">{{.Name}} — {{.Alive}} of {{.Total}} alive</h3>
<table><tr><th>member</th><th>state</th><th>log cursor</th><th>report</th>{{range $.D.Namespaces}}<th>{{.}}: applied</th><th>lag</th>{{end}}</tr>
{{range .Members}}<tr class="member {{.State}}{{if .Self}} self{{end}}" data-name="{{.Name}}"><td>{{.Name}}{{if .Observer}} <span class="muted">(observer)</span>{{end}}</td><td class="{{.State}}">{{.State}}</td><td><code>{{.Cursor}}</code> <span class="muted">{{.CursorAge}}</span></td><td>{{.Reported}}</td>
{{range .Cells}}<td{{if .Behind}} class="behind"{{end}}><code>{{.Version}}</code></td><td{{if .Behind}} class="behind"{{end}}>{{.Lag}}</td>{{end}}</tr>
{{end}}</table>
{{end}}
<h2>Last changes</h2>
{{if .Changes}}<table id="changes"><tr><th>namespace/key</th><th>version</th><th>published</th><th>applied here after</th><th>reached every member after</th></tr>
{{range .Changes}}<tr><td><code>{{.Namespace}}/{{.Key}}</code></td><td><code>{{.Version}}</code></td><td>{{stamp .Published}}</td><td>{{.Here}}</td><td>{{.All}}</td></tr>
{{end}}</table>{{else}}<p id="changes">No change applied since this node started.</p>{{end}}
<p class="muted">{{.D.ReportUpdates}} report updates sent by this node.</p>
</body></html>
`))
