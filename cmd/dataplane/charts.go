//go:build charts

package main

import (
	"io"

	"github.com/dataplane/dataplane/bench"
	"github.com/dataplane/dataplane/bench/charts"
)

// chartsBuiltIn says whether this binary draws the bench's PNG charts.
const chartsBuiltIn = true

// writeCharts draws the bench's PNG charts into dir.
func writeCharts(rep *bench.Report, dir string, _ io.Writer) ([]string, error) {
	return charts.Write(rep, dir)
}
