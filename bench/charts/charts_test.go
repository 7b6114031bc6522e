package charts_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dataplane/dataplane/bench"
	"github.com/dataplane/dataplane/bench/charts"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	res := &bench.Result{
		Option:             bench.Options()[0],
		SteadySeconds:      3,
		PropagationSamples: []float64{50, 80, 120, 2000},
		Unpropagated:       1,
		Timeline:           []int64{0, 5, 7, 3, 0, 0, 9, 8},
		Phases: []bench.PhaseStart{
			{Name: "warmup", At: 0.1}, {Name: "steady", At: 1},
			{Name: bench.FaultPhases[0], At: 4}, {Name: "recover", At: 5},
			{Name: bench.FaultPhases[1], At: 5.5}, {Name: "recover", At: 6.5},
		},
	}
	rep := &bench.Report{Config: bench.QuickConfig(), Results: []*bench.Result{res, {Option: bench.Options()[1], Skipped: "no server"}}}
	paths, err := charts.Write(rep, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("wrote %v", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
			t.Fatalf("%s is not a PNG (%v)", filepath.Base(p), err)
		}
	}
}
