package admin

import (
	"encoding/xml"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// svgNode is a generic XML element, for reading the chart back.
type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []svgNode  `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n svgNode) num(t *testing.T, name string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(n.attr(name), 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", n.XMLName.Local, name, n.attr(name), err)
	}
	return f
}

// walk calls f for n and every element below it.
func (n svgNode) walk(f func(svgNode)) {
	f(n)
	for _, c := range n.Nodes {
		c.walk(f)
	}
}

// chartBar is what the chart drew for one row, read back from its SVG.
type chartBar struct {
	label      string
	n          int
	p50W, p99W float64 // bar widths
	p50, p99   float64 // data-ms
	fleet      bool
}

// parseChart parses svg strictly as XML and returns its rows in order and
// the axis's largest tick label position.
func parseChart(t *testing.T, svg string) []chartBar {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	d.Strict = true
	var root svgNode
	if err := d.Decode(&root); err != nil {
		t.Fatalf("the chart is not well-formed XML: %v\n%s", err, svg)
	}
	if root.XMLName.Local != "svg" || root.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Fatalf("root element %v", root.XMLName)
	}
	var bars []chartBar
	root.walk(func(g svgNode) {
		if g.XMLName.Local != "g" || !strings.HasPrefix(g.attr("class"), "row ") {
			return
		}
		n, _ := strconv.Atoi(g.attr("data-n"))
		b := chartBar{label: g.attr("data-label"), n: n, fleet: g.attr("class") == "row fleet"}
		for _, r := range g.Nodes {
			if r.XMLName.Local != "rect" {
				continue
			}
			if x := r.num(t, "x"); x != chartLeft {
				t.Errorf("%s: bar starts at %v, not the axis (%d)", b.label, x, chartLeft)
			}
			switch r.attr("class") {
			case "p50":
				b.p50W, b.p50 = r.num(t, "width"), r.num(t, "data-ms")
			case "p99":
				b.p99W, b.p99 = r.num(t, "width"), r.num(t, "data-ms")
			}
		}
		bars = append(bars, b)
	})
	return bars
}

func TestReachSVG(t *testing.T) {
	rows := []reachRow{
		{Label: "eu", N: 10, P50: 40 * time.Millisecond, P99: 180 * time.Millisecond},
		{Label: `us <&"east">`, N: 3, P50: 90 * time.Millisecond, P99: 730 * time.Millisecond},
		{Label: "ap", N: 1, P50: 5 * time.Millisecond, P99: 5 * time.Millisecond},
		{Label: "every member", Fleet: true, N: 4, P50: 300 * time.Millisecond, P99: 800 * time.Millisecond},
	}
	svg := reachSVG(rows)
	bars := parseChart(t, svg)
	if len(bars) != len(rows) {
		t.Fatalf("%d rows drawn, want %d:\n%s", len(bars), len(rows), svg)
	}
	axis, _ := niceAxis(800 * time.Millisecond)
	if axis != 800*time.Millisecond {
		t.Errorf("axis to %v for a largest p99 of 800ms, want 800ms (4 steps of 200ms)", axis)
	}
	for i, r := range rows {
		b := bars[i]
		if b.label != r.Label || b.n != r.N || b.fleet != r.Fleet {
			t.Errorf("row %d drawn as %+v, want %+v", i, b, r)
		}
		if b.p50 != ms(r.P50) || b.p99 != ms(r.P99) {
			t.Errorf("%s: data-ms p50 %v p99 %v, want %v %v", r.Label, b.p50, b.p99, ms(r.P50), ms(r.P99))
		}
		// Widths are to scale: the axis spans chartPlot units.
		for _, c := range []struct {
			got float64
			d   time.Duration
		}{{b.p50W, r.P50}, {b.p99W, r.P99}} {
			if want := float64(c.d) / float64(axis) * chartPlot; math.Abs(c.got-want) > 0.01 {
				t.Errorf("%s: bar for %v is %v wide, want %v", r.Label, c.d, c.got, want)
			}
		}
		if b.p50W > b.p99W || b.p99W > chartPlot {
			t.Errorf("%s: p50 bar %v, p99 bar %v, plot %d", r.Label, b.p50W, b.p99W, chartPlot)
		}
	}
	if strings.Contains(svg, `<&"east">`) {
		t.Error("a region name was not escaped")
	}
	if reachSVG(nil) != "" {
		t.Error("a chart without rows")
	}
}

func TestNiceAxis(t *testing.T) {
	for _, tc := range []struct{ top, axis, step time.Duration }{
		{0, 2 * time.Millisecond, time.Millisecond},
		{3 * time.Millisecond, 3 * time.Millisecond, time.Millisecond},
		{180 * time.Millisecond, 200 * time.Millisecond, 50 * time.Millisecond},
		{999 * time.Millisecond, time.Second, 200 * time.Millisecond},
		{1001 * time.Millisecond, 1500 * time.Millisecond, 500 * time.Millisecond},
		{42 * time.Second, 50 * time.Second, 10 * time.Second},
	} {
		axis, step := niceAxis(tc.top)
		if axis != tc.axis || step != tc.step || axis < tc.top {
			t.Errorf("niceAxis(%v) = %v, %v; want %v, %v", tc.top, axis, step, tc.axis, tc.step)
		}
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(s, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 of 1..100 ms = %v", p)
	}
	if p := percentile(s, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 of 1..100 ms = %v", p)
	}
	if p := percentile([]time.Duration{7}, 0.99); p != 7 {
		t.Errorf("p99 of one = %v", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("p50 of none = %v", p)
	}
}

// TestReachRows: the chart's figures come from the members' own apply
// delays for the change they hold, per region, and from the changes'
// times to reach every member; observers, members gone and members holding
// another version do not count.
func TestReachRows(t *testing.T) {
	now := time.Now()
	v1 := record.MakeVersion(now.Add(-3*time.Second), 0)
	v2 := record.MakeVersion(now.Add(-2*time.Second), 0)
	held := func(v record.Version, after time.Duration) []gossip.NamespaceVersion {
		return []gossip.NamespaceVersion{{Namespace: "routes", Version: v, After: after}}
	}
	view := gossip.FleetView{
		Now: now,
		Members: []gossip.MemberReport{
			{Name: "a", Region: "eu", State: gossip.StateAlive, Applied: held(v2, 10*time.Millisecond)},
			{Name: "b", Region: "eu", State: gossip.StateAlive, Applied: held(v2, 30*time.Millisecond)},
			{Name: "c", Region: "eu", State: gossip.StateAlive, Applied: held(v1, 20*time.Millisecond)},
			{Name: "d", Region: "eu", State: gossip.StateLeft, Applied: held(v2, time.Hour)},
			{Name: "o", Region: "eu", State: gossip.StateAlive, Observer: true, Applied: held(v2, time.Hour)},
			{Name: "x", Region: "us", State: gossip.StateAlive, Applied: held(v2, 400*time.Millisecond)},
			{Name: "y", Region: "us", State: gossip.StateDead, Applied: held(v1-1, 0)}, // not a change of the view
		},
		Changes: []gossip.ChangeTiming{
			{Namespace: "routes", Key: "k1", Version: v1, Published: v1.Time(), ReachedAll: v1.Time().Add(250 * time.Millisecond)},
			{Namespace: "routes", Key: "k2", Version: v2, Published: v2.Time()}, // not yet everywhere
		},
	}
	got := reachRows(view)
	want := []reachRow{
		{Label: "eu", N: 3, P50: 20 * time.Millisecond, P99: 30 * time.Millisecond},
		{Label: "us", N: 1, P50: 400 * time.Millisecond, P99: 400 * time.Millisecond},
		{Label: "every member", Fleet: true, N: 1, P50: 250 * time.Millisecond, P99: 250 * time.Millisecond},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0 ms", 7 * time.Millisecond: "7 ms", 999 * time.Millisecond: "999 ms",
		time.Second: "1 s", 1500 * time.Millisecond: "1.5 s", 1094 * time.Millisecond: "1.09 s",
		42 * time.Second: "42 s", 125 * time.Second: "125 s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}
