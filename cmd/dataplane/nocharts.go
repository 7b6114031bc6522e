//go:build !charts

package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/dataplane/dataplane/bench"
)

// chartsBuiltIn says whether this binary draws the bench's PNG charts. The
// default build does not: the charts need gonum/plot with its fonts, PDF
// and LaTeX packages, which the serving commands should not carry. Build
// with -tags charts to draw them.
const chartsBuiltIn = false

// writeCharts draws nothing: it tells stderr how to draw the charts.
func writeCharts(_ *bench.Report, dir string, stderr io.Writer) ([]string, error) {
	fmt.Fprintf(stderr, "dataplane bench: charts not drawn: this binary was built without -tags charts (which keeps gonum/plot out of the serving binary); draw them with: go run -tags charts ./cmd/dataplane bench -from %s -out %s\n",
		filepath.Join(dir, "bench.json"), dir)
	return nil, nil
}
