package metricset

import (
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
