package main

import (
	"testing"
)

// TestRegistryExportsGCShareOfCPU checks that mpimd's registry exports the
// runtime's CPU estimates that scripts/bench.sh divides for the garbage
// collector's share of the CPU, and still the default Go metrics.
func TestRegistryExportsGCShareOfCPU(t *testing.T) {
	mfs, err := newRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"go_cpu_classes_gc_total_cpu_seconds_total": false,
		"go_cpu_classes_idle_cpu_seconds_total":     false,
		"go_cpu_classes_total_cpu_seconds_total":    false,
		"go_gc_duration_seconds":                    false,
		"go_goroutines":                             false,
		"process_cpu_seconds_total":                 false,
	}
	for _, mf := range mfs {
		if _, ok := want[mf.GetName()]; ok {
			want[mf.GetName()] = true
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("registry does not export %s", name)
		}
	}
}
