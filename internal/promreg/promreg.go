// Package promreg registers a component's Prometheus collectors on the
// registry the component was given.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector of cs on reg, in order, and does
// nothing when reg is nil. It stops at the first failure: a collector that
// is already registered yields the error "<what> already registered" (two
// components given the same registry and the same names), any other
// failure is returned as reg gives it.
func Register(reg prometheus.Registerer, what string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return errors.New(what + " already registered")
			}
			return err
		}
	}
	return nil
}
