package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WriteCharts writes the PNG charts into dir, propagation-cdf.png and
// origin-reads.png, and returns their paths.
func (r *Report) WriteCharts(dir string) ([]string, error) {
	var paths []string
	p := filepath.Join(dir, "propagation-cdf.png")
	if err := r.propagationCDF(p); err != nil {
		return paths, fmt.Errorf("bench: propagation chart: %w", err)
	}
	paths = append(paths, p)
	p = filepath.Join(dir, "origin-reads.png")
	if err := r.originReads(p); err != nil {
		return paths, fmt.Errorf("bench: origin reads chart: %w", err)
	}
	return append(paths, p), nil
}

// ran returns the results that have measurements.
func (r *Report) ran() []*Result {
	var out []*Result
	for _, res := range r.Results {
		if res.Skipped == "" && res.SteadySeconds > 0 {
			out = append(out, res)
		}
	}
	return out
}

// propagationCDF draws, per option, the share of steady-phase writes that
// had reached every holder by a given time, on a log time axis.
func (r *Report) propagationCDF(path string) error {
	p := plot.New()
	p.Title.Text = "Propagation: publish → last sentinel holding the new version (steady phase)"
	p.X.Label.Text = "time (ms, log scale)"
	p.Y.Label.Text = "share of writes"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	// The legend sits in the empty middle: gossip options finish left of
	// it, TTL options start right of it.
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = 1.5 * vg.Inch
	p.Legend.YOffs = -1.1 * vg.Inch
	p.Add(plotter.NewGrid())
	for i, res := range r.ran() {
		s := slices.Clone(res.PropagationSamples)
		if len(s) == 0 {
			continue
		}
		slices.Sort(s)
		// Writes never propagated count in the denominator, so a curve
		// that stops below 1 shows them.
		n := float64(len(s) + res.Unpropagated)
		pts := make(plotter.XYs, 0, len(s))
		for j, v := range s {
			pts = append(pts, plotter.XY{X: max(v, 1), Y: float64(j+1) / n})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / 7)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(shortName(res.Option), l)
	}
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}

// originReads draws one panel per option: origin reads per second (by
// sentinels and cache nodes) over the run, aligned on the steady phase's
// start, with the fault windows shaded.
func (r *Report) originReads(path string) error {
	results := r.ran()
	if len(results) == 0 {
		return os.WriteFile(path, nil, 0o644)
	}
	// One time axis for every panel, so the fault windows line up.
	xmin, xmax := 0.0, 1.0
	for _, res := range results {
		zero := phaseAt(res.Phases, phaseSteady)
		xmin = min(xmin, -zero)
		xmax = max(xmax, float64(len(res.Timeline))-zero)
	}
	rows := make([][]*plot.Plot, len(results))
	for i, res := range results {
		p := plot.New()
		p.Title.Text = res.Option.Name
		p.Title.TextStyle.Font.Size = vg.Points(9)
		p.Y.Label.Text = "reads/s"
		if i == len(results)-1 {
			p.X.Label.Text = "seconds since the steady phase began"
		}
		zero := phaseAt(res.Phases, phaseSteady)
		var top float64
		for _, v := range res.Timeline {
			top = max(top, float64(v))
		}
		top = max(top*1.1, 1)
		for _, f := range FaultPhases {
			from, to := phaseWindow(res.Phases, f)
			if from < 0 {
				continue
			}
			poly, err := plotter.NewPolygon(plotter.XYs{{X: from - zero, Y: 0}, {X: to - zero, Y: 0}, {X: to - zero, Y: top}, {X: from - zero, Y: top}})
			if err != nil {
				return err
			}
			poly.Color = color.RGBA{R: 255, G: 200, B: 200, A: 255}
			poly.LineStyle.Width = 0
			p.Add(poly)
			lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: []plotter.XY{{X: from - zero, Y: top * 0.95}}, Labels: []string{f}})
			if err != nil {
				return err
			}
			for j := range lbl.TextStyle {
				lbl.TextStyle[j].Font.Size = vg.Points(7)
			}
			p.Add(lbl)
		}
		pts := make(plotter.XYs, len(res.Timeline))
		for s, v := range res.Timeline {
			pts[s] = plotter.XY{X: float64(s) + 0.5 - zero, Y: float64(v)}
		}
		if len(pts) > 0 {
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.2)
			p.Add(l)
		}
		p.Y.Min, p.Y.Max = 0, top
		p.X.Min, p.X.Max = xmin, xmax
		rows[i] = []*plot.Plot{p}
	}
	img := vgimg.New(9*vg.Inch, vg.Length(len(results))*1.6*vg.Inch)
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(results), Cols: 1, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(rows, t, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phaseAt returns when the first phase named name began (seconds), or 0.
func phaseAt(ps []PhaseStart, name string) float64 {
	for _, p := range ps {
		if p.Name == name {
			return p.At
		}
	}
	return 0
}

// phaseWindow returns the start and end of phase name, or -1, -1.
func phaseWindow(ps []PhaseStart, name string) (float64, float64) {
	for i, p := range ps {
		if p.Name == name {
			if i+1 < len(ps) {
				return p.At, ps[i+1].At
			}
			return p.At, p.At
		}
	}
	return -1, -1
}

// shortName labels an option in a legend.
func shortName(o Option) string {
	where := string(o.Origin)
	if o.Tier {
		where += " + cache nodes"
	}
	how := "TTL"
	switch {
	case o.Gossip && o.Inline:
		how = "gossip, values inline + log"
	case o.Gossip:
		how = "gossip invalidation"
	}
	return fmt.Sprintf("%s: %s, %s", o.ID, where, how)
}
