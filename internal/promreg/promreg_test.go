package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_test_things_total", Help: "Things."})
	}
	t.Run("nil registry registers nothing", func(t *testing.T) {
		if err := Register(nil, "test: metrics", newCounter()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("twice is refused by name", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if err := Register(reg, "test: metrics", newCounter()); err != nil {
			t.Fatal(err)
		}
		err := Register(reg, "test: metrics", newCounter())
		if err == nil || err.Error() != "test: metrics already registered" {
			t.Fatalf("second Register: %v", err)
		}
	})
	t.Run("another refusal is returned as the registry gives it", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if err := Register(reg, "test: metrics", newCounter()); err != nil {
			t.Fatal(err)
		}
		other := prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_test_things_total", Help: "Other things."})
		err := Register(reg, "test: metrics", other)
		if err == nil || err.Error() == "test: metrics already registered" {
			t.Fatalf("Register of an inconsistent collector: %v", err)
		}
	})
}
