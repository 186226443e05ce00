package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/api-access-injector/api-access-injector/injector"
)

// Results of one admission, the values of the result label; a Handler keeps the counter of
// each for its mode, so that counting costs no label lookup.
const (
	resultInjected = iota
	resultSkipped
	resultRefused
	resultError
	numResults
)

var resultLabels = [numResults]string{"injected", "skipped", "refused", "error"}

// injections counts admissions by result and namespace mode. Served on the manager's
// metrics endpoint as apiaccess_injections_total.
var injections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apiaccess_injections_total",
	Help: "Pod admissions handled by the injector, by result (injected, skipped, refused, error) and namespace mode (opt-in, enabled, enforced).",
}, []string{"result", "mode"})

func init() {
	metrics.Registry.MustRegister(injections)
	for _, mode := range Paths {
		for _, result := range resultLabels {
			injections.WithLabelValues(result, modeLabel(mode)) // export zeros, so rates start at once
		}
	}
}

func modeLabel(mode injector.NamespaceMode) string {
	if mode == injector.ModeOptIn {
		return "opt-in"
	}
	return string(mode)
}
