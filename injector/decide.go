package injector

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// NamespaceMode is the injection policy of a namespace, from its InjectionLabel.
type NamespaceMode string

const (
	// ModeOptIn is a namespace without the label: only pods annotated inject "true" are injected.
	ModeOptIn NamespaceMode = ""
	// ModeEnabled injects every pod that does not opt out with inject "false".
	ModeEnabled NamespaceMode = "enabled"
	// ModeEnforced injects every pod; an opt-out is overridden with an admission warning.
	ModeEnforced NamespaceMode = "enforced"
	// ModeDisabled injects no pod.
	ModeDisabled NamespaceMode = "disabled"
)

// ParseNamespaceMode reads a namespace label value. A missing label is ModeOptIn.
func ParseNamespaceMode(label string) (NamespaceMode, error) {
	switch m := NamespaceMode(label); m {
	case ModeOptIn, ModeEnabled, ModeEnforced, ModeDisabled:
		return m, nil
	}
	return ModeOptIn, fmt.Errorf("namespace label %s: invalid value %q: must be enabled, enforced or disabled", InjectionLabel, label)
}

// Namespace is what the injector knows of a pod's namespace.
type Namespace struct {
	Name string
	Mode NamespaceMode
	// Annotations of the namespace, of which the injector reads NamespaceDefaultAnnotations;
	// nil when not known (the offline inject command).
	Annotations map[string]string
}

// Decision says whether a pod is injected, and why.
type Decision struct {
	Inject bool
	// Reason is a short explanation, for logs and the `inject` command.
	Reason string
	// Code is Reason's class, from a closed set: for metrics and log queries.
	Code Reason
	// Warnings go back to the client that created the pod.
	Warnings []string
}

// Decide applies the decision table of the contract (interface.md, "Opting in") to a pod.
// An inject annotation other than "true" or "false" is refused wherever the pod would be
// considered at all, so that a typo never silently leaves a pod without its sidecar.
// A Windows pod (spec.os.name windows) cannot run the sidecar: where it would be injected only
// because its namespace is labelled enabled it is left alone with a warning; where injection
// was asked for explicitly or is enforced, it is refused (see windows).
func (i *Injector) Decide(ns Namespace, pod *corev1.Pod) (Decision, error) {
	d, err := i.decide(ns, pod)
	if err != nil || !d.Inject || pod.Spec.OS == nil || pod.Spec.OS.Name != corev1.Windows {
		return d, err
	}
	return windows(ns, pod)
}

func (i *Injector) decide(ns Namespace, pod *corev1.Pod) (Decision, error) {
	if i.cfg.excluded(ns.Name) {
		return Decision{Code: ReasonExcludedNamespace, Reason: fmt.Sprintf("namespace %s is excluded from injection", ns.Name)}, nil
	}
	if ns.Mode == ModeDisabled {
		return Decision{Code: ReasonNamespaceDisabled, Reason: fmt.Sprintf("namespace %s is labelled %s=%s", ns.Name, InjectionLabel, ModeDisabled)}, nil
	}
	value, annotated := pod.Annotations[InjectAnnotation]
	if annotated && value != "true" && value != "false" {
		var r Refusal
		r.annotation(InjectAnnotation, value, `must be "true" (opt in) or "false" (opt out)`)
		return Decision{}, &r
	}
	switch ns.Mode {
	case ModeEnforced:
		d := Decision{Inject: true, Code: ReasonNamespaceEnforced, Reason: fmt.Sprintf("namespace %s is labelled %s=%s", ns.Name, InjectionLabel, ModeEnforced)}
		if value == "false" {
			d.Code = ReasonEnforcedOverride
			d.Warnings = append(d.Warnings, fmt.Sprintf(`annotation %s: "false" overridden: namespace %s is labelled %s=%s, so every pod gets the %s sidecar`,
				InjectAnnotation, ns.Name, InjectionLabel, ModeEnforced, SidecarName))
		}
		return d, nil
	case ModeEnabled:
		if value == "false" {
			return Decision{Code: ReasonOptedOut, Reason: fmt.Sprintf(`pod opted out with %s: "false"`, InjectAnnotation)}, nil
		}
		return Decision{Inject: true, Code: ReasonNamespaceEnabled, Reason: fmt.Sprintf("namespace %s is labelled %s=%s", ns.Name, InjectionLabel, ModeEnabled)}, nil
	default:
		if value == "true" {
			return Decision{Inject: true, Code: ReasonOptedIn, Reason: fmt.Sprintf(`pod opted in with %s: "true"`, InjectAnnotation)}, nil
		}
		return Decision{Code: ReasonNotOptedIn, Reason: fmt.Sprintf(`pod did not opt in with %s: "true"`, InjectAnnotation)}, nil
	}
}

// windows decides for a Windows pod that the table would inject. The sidecar is a Linux
// container whose hardening (runAsUser, seccompProfile, capabilities, readOnlyRootFilesystem)
// the API server forbids in a pod whose spec.os.name is windows, so injecting would earn the
// user a 422 about fields they never wrote
// (https://kubernetes.io/docs/concepts/workloads/pods/#pod-os). A pod that is injected only
// because its namespace is labelled enabled was not asked about: it is admitted without the
// sidecar, with a warning. One that asked for the sidecar, or lives where it is enforced, is
// refused: admitting it without would silently break what its owner relies on.
func windows(ns Namespace, pod *corev1.Pod) (Decision, error) {
	const why = "spec.os.name: windows: the " + SidecarName + " sidecar runs on Linux only, so a Windows pod cannot get it"
	_, annotated := pod.Annotations[InjectAnnotation]
	if ns.Mode == ModeEnabled && !annotated {
		return Decision{
			Code:   ReasonWindows,
			Reason: "Windows pod: the sidecar runs on Linux only",
			Warnings: []string{fmt.Sprintf("%s; the pod was admitted without it (namespace %s is labelled %s=%s), so %s and %s are not set in its containers",
				why, ns.Name, InjectionLabel, ModeEnabled, KubeconfigEnvVar, KubeAPIURLEnvVar)},
		}, nil
	}
	r := Refusal{Code: ReasonRefusedWindows}
	switch ns.Mode {
	case ModeEnforced:
		r.add("%s; %s", why, withoutSidecar(ns))
	case ModeEnabled:
		r.add("%s; remove the %s annotation, and the pod is admitted without the sidecar, with a warning", why, InjectAnnotation)
	default:
		r.add("%s; remove the %s annotation", why, InjectAnnotation)
	}
	return Decision{}, &r
}
