package injector

import (
	"fmt"
	"strings"
)

// Refusal is the error returned for a pod that cannot be injected as it is. Its message is
// written for the person who ran `kubectl apply`: it names the annotation or field, the bad
// value and what is allowed. The webhook turns it into an HTTP 403 admission denial.
type Refusal struct {
	// Reasons lists every problem found, each a full sentence fragment.
	Reasons []string
	// Code classifies the first of them, for metrics and log queries; see Why.
	Code Reason
}

// Why returns the class of the refusal: Code, or ReasonRefusedConflict when no more precise
// class was recorded.
func (r *Refusal) Why() Reason {
	if r.Code.Refuses() {
		return r.Code
	}
	return ReasonRefusedConflict
}

// because records code as the refusal's class unless an earlier reason set one: the first
// problem found classifies the refusal. It returns r, to be followed by add.
func (r *Refusal) because(code Reason) *Refusal {
	if r.Code == ReasonNone {
		r.Code = code
	}
	return r
}

// merge appends the reasons of another refusal, keeping the class of the first.
func (r *Refusal) merge(o *Refusal) {
	r.because(o.Code)
	r.Reasons = append(r.Reasons, o.Reasons...)
}

// Error implements error.
func (r *Refusal) Error() string {
	return "api-access-injector: " + strings.Join(r.Reasons, "; ")
}

func (r *Refusal) add(format string, args ...any) {
	r.Reasons = append(r.Reasons, fmt.Sprintf(format, args...))
}

func (r *Refusal) annotation(key, value, allowed string) {
	r.because(ReasonRefusedAnnotation).add("annotation %s: invalid value %q: %s", key, value, allowed)
}

// orNil returns r as an error if it holds any reason, nil otherwise.
func (r *Refusal) orNil() error {
	if len(r.Reasons) == 0 {
		return nil
	}
	return r
}

// withoutSidecar is the advice, for a pod that cannot get the sidecar, on how to have it
// admitted without: it depends on why the pod was injected. A pod in a namespace labelled
// enabled has no inject annotation to remove, and one in an enforced namespace cannot opt
// out at all.
func withoutSidecar(ns Namespace) string {
	switch ns.Mode {
	case ModeEnforced:
		return fmt.Sprintf("create the pod in a namespace that is not labelled %s=%s (in this one every pod gets the sidecar and none can opt out), or have the namespace relabelled",
			InjectionLabel, ModeEnforced)
	case ModeEnabled:
		return fmt.Sprintf(`opt the pod out with the annotation %s: "false" (this namespace is labelled %s=%s)`,
			InjectAnnotation, InjectionLabel, ModeEnabled)
	default:
		return fmt.Sprintf("remove the %s annotation", InjectAnnotation)
	}
}
