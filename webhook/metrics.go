package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/api-access-injector/api-access-injector/injector"
)

// Results of one admission, the values of the result label.
const (
	resultInjected = "injected"
	resultSkipped  = "skipped"
	resultRefused  = "refused"
	resultError    = "error"
)

// injections counts admissions by result and namespace mode. Served on the manager's
// metrics endpoint as apiaccess_injections_total.
var injections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apiaccess_injections_total",
	Help: "Pod admissions handled by the injector, by result (injected, skipped, refused, error) and namespace mode (opt-in, enabled, enforced).",
}, []string{"result", "mode"})

func init() {
	metrics.Registry.MustRegister(injections)
	for _, mode := range Paths {
		for _, result := range []string{resultInjected, resultSkipped, resultRefused, resultError} {
			injections.WithLabelValues(result, modeLabel(mode)) // export zeros, so rates start at once
		}
	}
}

func record(mode injector.NamespaceMode, result string) {
	injections.WithLabelValues(result, modeLabel(mode)).Inc()
}

func modeLabel(mode injector.NamespaceMode) string {
	if mode == injector.ModeOptIn {
		return "opt-in"
	}
	return string(mode)
}
