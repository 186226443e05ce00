package e2e

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// admissions returns how many admissions the webhook handled for a namespace mode, from
// the Prometheus registry the manager serves.
func admissions(t *testing.T, mode string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "apiaccess_injections_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "mode" && l.GetValue() == mode {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
