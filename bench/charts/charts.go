// Package charts draws the PNG charts of a bench report (gonum/plot). It
// is its own package so that only the binaries that draw charts link
// gonum/plot and its fonts: the dataplane command includes it only when
// built with -tags charts.
package charts

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"

	"github.com/dataplane/dataplane/bench"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Write writes the PNG charts of r into dir, propagation-cdf.png and
// origin-reads.png, and returns the paths it wrote.
func Write(r *bench.Report, dir string) ([]string, error) {
	var paths []string
	p := filepath.Join(dir, "propagation-cdf.png")
	if err := propagationCDF(r, p); err != nil {
		return paths, fmt.Errorf("bench: propagation chart: %w", err)
	}
	paths = append(paths, p)
	p = filepath.Join(dir, "origin-reads.png")
	if err := originReads(r, p); err != nil {
		return paths, fmt.Errorf("bench: origin reads chart: %w", err)
	}
	return append(paths, p), nil
}

// propagationCDF draws, per option, the share of steady-phase writes that
// had reached every holder by a given time, on a log time axis.
func propagationCDF(r *bench.Report, path string) error {
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
	for i, res := range r.Measured() {
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
		p.Legend.Add(res.Option.Label(), l)
	}
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}

// originReads draws one panel per option: origin reads per second (by
// sentinels and cache nodes) over the run, aligned on the steady phase's
// start, with the fault windows shaded.
func originReads(r *bench.Report, path string) error {
	results := r.Measured()
	if len(results) == 0 {
		return os.WriteFile(path, nil, 0o644)
	}
	// One time axis for every panel, so the fault windows line up.
	xmin, xmax := 0.0, 1.0
	for _, res := range results {
		zero := res.SteadyStart()
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
		zero := res.SteadyStart()
		var top float64
		for _, v := range res.Timeline {
			top = max(top, float64(v))
		}
		top = max(top*1.1, 1)
		for _, f := range bench.FaultPhases {
			from, to := res.PhaseWindow(f)
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
