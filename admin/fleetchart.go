package admin

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dataplane/dataplane/gossip"
)

// The fleet page's chart: how long the last changes took to reach the
// members, per region (p50 and p99 of the members' own apply delays), and
// how long each took to reach every member. Drawn here as inline SVG, with
// no script: the page's Content-Security-Policy allows none.

// reachRow is one bar of the chart.
type reachRow struct {
	Label string
	// Fleet marks the row of whole-fleet times (each change's time to
	// reach every member) rather than one region's member delays.
	Fleet    bool
	N        int // samples: member applications, or changes for Fleet
	P50, P99 time.Duration
}

// reachRows computes the chart's rows from the view: per region, the
// delays after which its members applied the last changes (a member's
// report times exactly the version it holds, NamespaceVersion.After, so a
// change counts for the members that hold it and nothing newer in its
// namespace); then, over the changes that reached every live member, the
// time they took to. Regions with no sample are left out.
func reachRows(v gossip.FleetView) []reachRow {
	byRegion := map[string][]time.Duration{}
	var regions []string
	for _, m := range v.Members {
		if m.Observer || m.State == gossip.StateLeft {
			continue
		}
		for _, c := range v.Changes {
			for _, e := range m.Applied {
				if e.Namespace == c.Namespace && e.Version == c.Version {
					if _, ok := byRegion[m.Region]; !ok {
						regions = append(regions, m.Region)
					}
					byRegion[m.Region] = append(byRegion[m.Region], max(e.After, 0))
				}
			}
		}
	}
	slices.Sort(regions)
	var rows []reachRow
	for _, r := range regions {
		s := byRegion[r]
		rows = append(rows, reachRow{Label: r, N: len(s), P50: percentile(s, 0.5), P99: percentile(s, 0.99)})
	}
	var all []time.Duration
	for _, c := range v.Changes {
		if !c.ReachedAll.IsZero() {
			all = append(all, max(c.ReachedAll.Sub(c.Published), 0))
		}
	}
	if len(all) > 0 {
		rows = append(rows, reachRow{Label: "every member", Fleet: true, N: len(all), P50: percentile(all, 0.5), P99: percentile(all, 0.99)})
	}
	return rows
}

// percentile returns the nearest-rank p-quantile of s (0 < p <= 1); s is
// sorted in place.
func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Chart geometry, in SVG user units (CSS pixels at scale 1).
const (
	chartWidth  = 860
	chartLeft   = 130 // labels left of the bars
	chartPlot   = 420 // the bars' full width: the axis maximum
	chartRowH   = 26
	chartTop    = 8
	chartAxisH  = 28 // below the rows: the axis and its labels
	chartBarP99 = 16 // bar heights
	chartBarP50 = 8
)

// reachSVG draws rows as a horizontal bar chart: per row a light bar to
// p99 and a dark bar inside it to p50, on one time axis from 0 to a round
// value at or above the largest p99. Every bar carries its figures as
// data-* attributes and a <title> (a tooltip without script); labels are
// escaped. It returns "" for no rows.
func reachSVG(rows []reachRow) string {
	if len(rows) == 0 {
		return ""
	}
	var top time.Duration
	for _, r := range rows {
		top = max(top, r.P99)
	}
	axis, step := niceAxis(top)
	x := func(d time.Duration) float64 { return float64(d) / float64(axis) * chartPlot }
	h := chartTop + len(rows)*chartRowH + chartAxisH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" id="reach-chart" class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="reach-chart-title">`, chartWidth, h, chartWidth, h)
	b.WriteString(`<title id="reach-chart-title">Time for the last changes to reach members: p50 (dark) and p99 (light) per region, and per change to reach every member</title>`)
	b.WriteString(`<style>#reach-chart .p50{fill:#2f6db5}#reach-chart .p99{fill:#a9c6e8}#reach-chart .fleet .p50{fill:#5b3f99}#reach-chart .fleet .p99{fill:#c9bbe6}#reach-chart text{font:12px system-ui,sans-serif;fill:#222}#reach-chart .tick{stroke:#ddd}#reach-chart .axis text{fill:#666}</style>`)
	axisY := chartTop + len(rows)*chartRowH
	b.WriteString(`<g class="axis">`)
	for t := time.Duration(0); t <= axis; t += step {
		px := chartLeft + x(t)
		fmt.Fprintf(&b, `<line class="tick" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`, px, chartTop, px, axisY+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, px, axisY+18, fmtDur(t))
	}
	b.WriteString(`</g>`)
	for i, r := range rows {
		y := chartTop + i*chartRowH
		class, what := "region", "applications"
		if r.Fleet {
			class, what = "fleet", "changes"
		}
		label := html.EscapeString(r.Label)
		fmt.Fprintf(&b, `<g class="row %s" data-label="%s" data-n="%d">`, class, label, r.N)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, chartLeft-8, y+17, label)
		fmt.Fprintf(&b, `<rect class="p99" x="%d" y="%d" width="%.2f" height="%d" data-ms="%.3f"><title>%s p99 %s (%d %s)</title></rect>`,
			chartLeft, y+(chartRowH-chartBarP99)/2, x(r.P99), chartBarP99, ms(r.P99), label, fmtDur(r.P99), r.N, what)
		fmt.Fprintf(&b, `<rect class="p50" x="%d" y="%d" width="%.2f" height="%d" data-ms="%.3f"><title>%s p50 %s (%d %s)</title></rect>`,
			chartLeft, y+(chartRowH-chartBarP50)/2, x(r.P50), chartBarP50, ms(r.P50), label, fmtDur(r.P50), r.N, what)
		fmt.Fprintf(&b, `<text class="figures" x="%d" y="%d">p50 %s · p99 %s · %d %s</text>`,
			chartLeft+chartPlot+10, y+17, fmtDur(r.P50), fmtDur(r.P99), r.N, what)
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceAxis returns an axis maximum at or above top and its tick step: 1,
// 2 or 5 times a power of ten milliseconds, 2 to 5 steps.
func niceAxis(top time.Duration) (axis, step time.Duration) {
	if top < time.Millisecond {
		top = time.Millisecond
	}
	for mag := time.Millisecond; ; mag *= 10 {
		for _, f := range []time.Duration{1, 2, 5} {
			step = f * mag
			if n := (top + step - 1) / step; n <= 5 {
				return max(n, 2) * step, step
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtDur formats a delay for the chart: milliseconds below 10 s.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond)/time.Millisecond)
	case d < 10*time.Second:
		s := strings.TrimRight(fmt.Sprintf("%.2f", d.Seconds()), "0")
		return strings.TrimSuffix(s, ".") + " s"
	default:
		return fmt.Sprintf("%d s", d.Round(time.Second)/time.Second)
	}
}
