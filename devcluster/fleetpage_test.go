package devcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

// chromium returns the Chromium binary: $DATAPLANE_CHROMIUM, else
// /usr/bin/chromium. The browser test fails (it does not skip) without it:
// scripts/test.sh installs the Debian package.
func chromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DATAPLANE_CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Chromium not found (%v): install the Debian package chromium (scripts/test.sh does) or set DATAPLANE_CHROMIUM", err)
	}
	return bin
}

// runChromium runs headless Chromium with args and url, returning stdout.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--window-size=1280,900"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestFleetPageInBrowser starts the dev cluster (three sentinels and a
// cache node in one gossip cluster), publishes a route through the
// publisher API waiting for its fleet receipt, and loads the fleet page
// whose address dev prints (sentinel-1's) in headless Chromium (the token
// passed once as ?token=, then a cookie): the rendered DOM lists every
// member and the region, shows the route's version as its publish time
// (the version as a tooltip) and the inline SVG chart of the time to reach
// the members. It also takes a screenshot (copied to
// $DATAPLANE_FLEET_SCREENSHOT when set: the README's docs/fleet-page.png).
func TestFleetPageInBrowser(t *testing.T) {
	bin := chromium(t)
	c, err := devcluster.Start(context.Background(), devcluster.Config{DataDir: t.TempDir(), AnyPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const token = "dev-token"

	// Publish with a receipt: 200 once every member applied it.
	route := fmt.Sprintf(`{"deployment_id":"dep-fleet","upstreams":[%q]}`, c.Upstreams[1])
	req, _ := http.NewRequest("PUT", c.PublishURL+"/v1/records/"+sentinel.RoutesNamespace+"/fleet.localhost?wait=30s", strings.NewReader(route))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT ?wait=30s: %d %s", resp.StatusCode, body)
	}
	var put struct {
		Version string `json:"version"`
		Receipt struct {
			Met     bool `json:"met"`
			Regions []struct {
				Region         string
				Applied, Total int
			} `json:"regions"`
		} `json:"receipt"`
	}
	if err := json.Unmarshal(body, &put); err != nil {
		t.Fatal(err)
	}
	if !put.Receipt.Met || len(put.Receipt.Regions) != 1 || put.Receipt.Regions[0].Region != "dev" || put.Receipt.Regions[0].Total != 4 {
		t.Fatalf("receipt: %s (want region dev, 4 of 4: three sentinels and the cache node)", body)
	}

	admin := "http://" + c.Sentinels[0].AdminAddr() // the node whose page dev prints
	// The JSON form, for scripts: wait until every member's report shows
	// the route's version.
	members := []string{"sentinel-1", "sentinel-2", "sentinel-3", "cachenode-1"}
	var last any // the last fleet.json, for the failure
	if !testkit.Poll(60*time.Second, func() bool {
		req, _ := http.NewRequest("GET", admin+"/debug/fleet.json", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Members []struct {
				Name    string
				Region  string
				State   string
				Applied []struct {
					Namespace string
					Version   string // 16 hex digits: versions are strings in every API
				}
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("fleet.json: %d %v", resp.StatusCode, err)
		}
		last = d
		// Every member holds the route's version, and the newest version
		// of every namespace (so that the page's top may say none is
		// behind).
		ok := len(d.Members) == len(members)
		newest := map[string]string{} // same-length hex compares as numbers
		for _, m := range d.Members {
			for _, a := range m.Applied {
				newest[a.Namespace] = max(newest[a.Namespace], a.Version)
			}
		}
		for _, m := range d.Members {
			got, held := false, 0
			for _, a := range m.Applied {
				got = got || a.Namespace == sentinel.RoutesNamespace && a.Version >= put.Version
				if a.Version == newest[a.Namespace] {
					held++
				}
			}
			ok = ok && got && held == len(newest) && m.State == "alive" && m.Region == "dev"
		}
		return ok
	}) {
		t.Fatalf("fleet.json never showed %s and the newest of every namespace applied by all of %v: %+v", put.Version, members, last)
	}

	// Without the token: refused.
	resp, err = http.Get(admin + "/debug/fleet")
	if err != nil {
		t.Fatalf("fleet page without a token: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("fleet page without a token: %v, want 401", resp.StatusCode)
	}

	// The page dev prints (sentinel-1's), in a browser: every member, the
	// route's version as its publish time with the version as a tooltip,
	// the chart of the time to reach the members, drawn inline (SVG in the
	// DOM, no script), and the list at the top.
	page := c.FleetPageURL()
	dom := string(runChromium(t, bin, "--dump-dom", page))
	for _, want := range append(members, "region-dev", "4 of 4 alive", `title="version `+put.Version+`"`, "fleet.localhost", "Fleet as seen by", `<svg xmlns="http://www.w3.org/2000/svg" id="reach-chart"`, `<g class="row region" data-label="dev"`, `<p id="attention" class="ok">No member is behind`, "still waiting for") {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Error("the page has a script")
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", dom)
	}
	shot := filepath.Join(t.TempDir(), "fleet.png")
	runChromium(t, bin, "--screenshot="+shot, page)
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(png))
	}
	if out := os.Getenv("DATAPLANE_FLEET_SCREENSHOT"); out != "" {
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFleetPage100InBrowser renders the fleet page of a 100-member view
// (four regions, every seventh member behind, the last change not yet
// everywhere) in headless Chromium: every member has its row, the chart is
// in the DOM with a bar per region and one for the whole fleet, and the
// lists at the top and of waiting members stay bounded.
func TestFleetPage100InBrowser(t *testing.T) {
	bin := chromium(t)
	now := time.Now()
	old := record.MakeVersion(now.Add(-30*time.Second), 0)
	newest := record.MakeVersion(now.Add(-2*time.Second), 0)
	regions := []string{"ap-south", "eu-west", "us-east", "us-west"}
	view := gossip.FleetView{Self: "node-000", Region: regions[0], Now: now}
	behind := 0
	for i := range 100 {
		m := gossip.MemberReport{
			Name: fmt.Sprintf("node-%03d", i), Region: regions[i%len(regions)], State: gossip.StateAlive,
			Self: i == 0, Cursor: newest, ReportedAt: now.Add(-time.Second),
			Applied: []gossip.NamespaceVersion{{Namespace: sentinel.RoutesNamespace, Version: newest, After: time.Duration(20+i) * time.Millisecond}},
		}
		if i%7 == 1 {
			m.Cursor, m.Applied[0].Version = old, old
			behind++
		}
		view.Members = append(view.Members, m)
	}
	view.Changes = []gossip.ChangeTiming{
		{Namespace: sentinel.RoutesNamespace, Key: "old.example", Version: old, Published: old.Time(), AppliedHere: old.Time().Add(10 * time.Millisecond), ReachedAll: old.Time().Add(300 * time.Millisecond)},
		{Namespace: sentinel.RoutesNamespace, Key: "new.example", Version: newest, Published: newest.Time(), AppliedHere: newest.Time().Add(10 * time.Millisecond)},
	}
	srv := httptest.NewServer(admin.Handler(admin.Config{Gatherer: prometheus.NewRegistry(), Token: "t", Fleet: func() gossip.FleetView { return view }}))
	defer srv.Close()
	dom := string(runChromium(t, bin, "--dump-dom", srv.URL+"/debug/fleet?token=t"))
	if got := strings.Count(dom, `<tr class="member `); got != 100 {
		t.Errorf("%d member rows, want 100", got)
	}
	if got := strings.Count(dom, `<g class="row region"`); got != len(regions) || !strings.Contains(dom, `<g class="row fleet"`) {
		t.Errorf("chart: %d region rows (want %d) and the fleet's", got, len(regions))
	}
	if !strings.Contains(dom, fmt.Sprintf("<h2>%d behind</h2>", behind)) || strings.Count(dom, `<li class="attention`) != 12 {
		t.Errorf("the top does not count %d behind in a bounded list", behind)
	}
	if !strings.Contains(dom, fmt.Sprintf("and %d more</td>", behind-8)) {
		t.Errorf("the waiting list is not bounded")
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", dom)
	}
}
