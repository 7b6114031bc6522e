package metricset

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRegisterAllOrNone: a set whose second collector is already taken
// leaves its first unregistered, and says what to do.
func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	taken := prometheus.NewCounter(prometheus.CounterOpts{Name: "taken_total", Help: "h"})
	if err := Register(reg, "x", "advice", taken); err != nil {
		t.Fatal(err)
	}
	first := prometheus.NewCounter(prometheus.CounterOpts{Name: "first_total", Help: "h"})
	again := prometheus.NewCounter(prometheus.CounterOpts{Name: "taken_total", Help: "h"})
	err := Register(reg, "x", "advice", first, again)
	if err == nil || !strings.Contains(err.Error(), "x metrics already registered: advice") {
		t.Fatalf("Register = %v, want the already-registered error", err)
	}
	if err := reg.Register(first); err != nil {
		t.Fatalf("first was left registered: %v", err)
	}
	Unregister(reg, taken, first)
	if err := Register(reg, "x", "advice", taken, first); err != nil {
		t.Fatalf("after Unregister: %v", err)
	}
	if err := Register(nil, "x", "advice", taken); err != nil {
		t.Fatalf("nil Registerer: %v", err)
	}
}

// TestAlreadyRegisteredIsWrapped: the already-registered error still lets a
// caller reach prometheus.AlreadyRegisteredError (and the collector there).
func TestAlreadyRegisteredIsWrapped(t *testing.T) {
	reg := prometheus.NewRegistry()
	sub := Subsystem("x")
	if err := Register(reg, "x", "advice", sub.Counter("c_total", "h")); err != nil {
		t.Fatal(err)
	}
	err := Register(reg, "x", "advice", sub.Counter("c_total", "h"))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("Register = %v, want it to wrap prometheus.AlreadyRegisteredError", err)
	}
}

// TestSubsystemNames: every collector a Subsystem makes is named
// dataplane_<subsystem>_<name> and carries its help and labels.
func TestSubsystemNames(t *testing.T) {
	sub := Subsystem("s")
	cases := []struct {
		c    prometheus.Collector
		want string
	}{
		{sub.Counter("a_total", "help a"), `fqName: "dataplane_s_a_total", help: "help a", unit: "", constLabels: {}, variableLabels: {}`},
		{sub.CounterVec("b_total", "help b", "l1", "l2"), `fqName: "dataplane_s_b_total", help: "help b", unit: "", constLabels: {}, variableLabels: {l1,l2}`},
		{sub.Gauge("g", "help g"), `fqName: "dataplane_s_g", help: "help g", unit: "", constLabels: {}, variableLabels: {}`},
		{sub.Histogram("h_seconds", "help h", []float64{1, 2}), `fqName: "dataplane_s_h_seconds", help: "help h", unit: "", constLabels: {}, variableLabels: {}`},
		{sub.GaugeVec("gv", "help g", "l"), `fqName: "dataplane_s_gv", help: "help g", unit: "", constLabels: {}, variableLabels: {l}`},
		{sub.HistogramVec("hv_seconds", "help h", []float64{1}, "l"), `fqName: "dataplane_s_hv_seconds", help: "help h", unit: "", constLabels: {}, variableLabels: {l}`},
	}
	for _, c := range cases {
		ch := make(chan *prometheus.Desc, 1)
		c.c.Describe(ch)
		if got := (<-ch).String(); !strings.Contains(got, c.want) {
			t.Errorf("desc %s, want %s", got, c.want)
		}
	}
}
