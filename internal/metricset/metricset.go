// Package metricset makes and registers a component's Prometheus
// collectors as one set. Subsystem names each collector
// dataplane_<subsystem>_<name>, so a component states only its metric names
// and help; Register registers a set all or none, and Unregister removes it,
// so the component can be restarted on the same Registerer. client_golang
// has no all-or-nothing registration.
package metricset

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector of cs with reg, or none: on the first
// failure it unregisters those already registered and returns the error.
// A collector already registered (a second component on one Registerer)
// gives an error naming what and how to avoid it. A nil reg registers
// nothing and returns nil.
func Register(reg prometheus.Registerer, what, advice string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			Unregister(reg, cs[:i]...)
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("%s metrics already registered: %s: %w", what, advice, err)
			}
			return fmt.Errorf("%s: register metrics: %w", what, err)
		}
	}
	return nil
}

// Unregister removes every collector of cs from reg; a nil reg is a no-op.
func Unregister(reg prometheus.Registerer, cs ...prometheus.Collector) {
	if reg == nil {
		return
	}
	for _, c := range cs {
		reg.Unregister(c)
	}
}

// Namespace starts the name of every metric of the dataplane.
const Namespace = "dataplane"

// Subsystem makes the collectors of one component, each named
// dataplane_<subsystem>_<name>.
type Subsystem string

// Counter returns a counter named dataplane_<s>_<name>.
func (s Subsystem) Counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts(s.opts(name, help)))
}

// CounterVec returns a counter named dataplane_<s>_<name> with labels.
func (s Subsystem) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts(s.opts(name, help)), labels)
}

// Gauge returns a gauge named dataplane_<s>_<name>.
func (s Subsystem) Gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts(s.opts(name, help)))
}

// GaugeVec returns a gauge named dataplane_<s>_<name> with labels.
func (s Subsystem) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts(s.opts(name, help)), labels)
}

// Histogram returns a histogram named dataplane_<s>_<name> with buckets.
func (s Subsystem) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: string(s), Name: name, Help: help, Buckets: buckets,
	})
}

// HistogramVec returns a histogram named dataplane_<s>_<name> with buckets
// and labels.
func (s Subsystem) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: string(s), Name: name, Help: help, Buckets: buckets,
	}, labels)
}

// opts names a metric of s.
func (s Subsystem) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: string(s), Name: name, Help: help}
}
