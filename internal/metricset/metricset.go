// Package metricset registers a component's Prometheus collectors as one
// set: all of them or none, and removable together so the component can be
// restarted on the same Registerer. Both gossip and the log follower need
// exactly this; client_golang has no all-or-nothing registration.
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
				return fmt.Errorf("%s metrics already registered: %s", what, advice)
			}
			return err
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
