package webhook

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/version"
)

// Results of one admission, the values of the result label.
const (
	resultInjected = iota
	resultUpdated
	resultSkipped
	resultRefused
	resultError
	numResults
)

var resultLabels = [numResults]string{"injected", "updated", "skipped", "refused", "error"}

// The reasons of the reason label beyond the injector's (injector.Reason): the handler's
// own, for admissions that never reach the injector.
const (
	// reasonNotPodCreate: a request the webhook configuration should not send (not a pod
	// creation), allowed untouched.
	reasonNotPodCreate = injector.NumReasons + iota
	// reasonBadRequest: a body that is not an AdmissionReview of a pod.
	reasonBadRequest
	// reasonInternal: the injector or the patch failed, or the admission panicked.
	reasonInternal
	numReasons
)

// reasonLabel is the reason label value of an injector.Reason or one of the handler's own.
func reasonLabel(reason int) string {
	switch reason {
	case reasonNotPodCreate:
		return "not-pod-create"
	case reasonBadRequest:
		return "bad-request"
	case reasonInternal:
		return "internal-error"
	}
	return injector.Reason(reason).String() //nolint:gosec // reason is one of injector's few Reason values
}

// valid reports whether an admission can end with result for reason: the series exported
// are those, and no other, so that the label set stays small and known
// (TestMetricsAreBounded).
func valid(result, reason int) bool {
	switch r := injector.Reason(reason); result { //nolint:gosec // reason is one of injector's few Reason values
	case resultInjected, resultUpdated:
		return reason < injector.NumReasons && r.Injects()
	case resultRefused:
		return reason < injector.NumReasons && r.Refuses()
	case resultSkipped:
		return reason == reasonNotPodCreate || (reason < injector.NumReasons && r != injector.ReasonNone && !r.Injects() && !r.Refuses())
	case resultError:
		return reason == reasonBadRequest || reason == reasonInternal
	}
	return false
}

// outcome is how an admission ended: its result and reason.
type outcome struct {
	result int
	reason int
}

var (
	badRequest    = outcome{resultError, reasonBadRequest}
	internalError = outcome{resultError, reasonInternal}
	notPodCreate  = outcome{resultSkipped, reasonNotPodCreate}
)

// injections counts admissions by result, reason and namespace mode. Served on the
// manager's metrics endpoint as apiaccess_injections_total.
var injections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apiaccess_injections_total",
	Help: "Pod admissions handled by the injector, by result (injected, updated, skipped, refused, error), " +
		"reason (a closed set: see the chart README) and namespace mode (opt-in, enabled, enforced).",
}, []string{"result", "reason", "mode"})

// buildInfo is 1, labelled with the version of the binary and of Go that built it, as
// Prometheus' own build_info metrics are
// (https://www.robustperception.io/exposing-the-software-version-to-prometheus/).
var buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "apiaccess_build_info",
	Help: "Always 1; the labels are the version of api-access-injector and of Go that built it.",
}, []string{"version", "goversion"})

func init() {
	metrics.Registry.MustRegister(injections, buildInfo)
	buildInfo.WithLabelValues(version.Get(), runtime.Version()).Set(1)
	for _, mode := range Paths {
		for result := range numResults {
			for reason := range numReasons {
				if valid(result, reason) {
					injections.WithLabelValues(resultLabels[result], reasonLabel(reason), modeLabel(mode)) // export zeros, so rates start at once
				}
			}
		}
	}
}

func modeLabel(mode injector.NamespaceMode) string {
	if mode == injector.ModeOptIn {
		return "opt-in"
	}
	return string(mode)
}
