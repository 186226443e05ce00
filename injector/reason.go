package injector

// Reason is why a pod was injected, skipped or refused, from a closed set: the value of the
// webhook's `reason` metric label and of the `reason` field of its decision logs, so that
// dashboards and alerts can count decisions by cause without the unbounded cardinality of
// the human-readable message (Decision.Reason, Refusal.Error).
//
// The set is closed on purpose: a new Reason is a change of the metric's documented labels
// (chart README, "Metrics"), and TestReasonsAreBounded keeps that list and this one in step.
type Reason uint8

// Reasons a pod is injected.
const (
	// ReasonNone is the zero Reason: no decision was taken (the webhook's own errors).
	ReasonNone Reason = iota
	// ReasonOptedIn: the pod is annotated inject "true" in a namespace without the label.
	ReasonOptedIn
	// ReasonNamespaceEnabled: the namespace is labelled enabled and the pod did not opt out.
	ReasonNamespaceEnabled
	// ReasonNamespaceEnforced: the namespace is labelled enforced and the pod did not opt out.
	ReasonNamespaceEnforced
	// ReasonEnforcedOverride: the namespace is labelled enforced and the pod's opt-out
	// (inject "false") was overridden, with a warning. Counted apart from
	// ReasonNamespaceEnforced: an overridden opt-out is a pod whose owner asked for
	// something else, which a platform team wants to see.
	ReasonEnforcedOverride

	// ReasonOptedOut: the pod is annotated inject "false" in a namespace labelled enabled.
	ReasonOptedOut
	// ReasonNotOptedIn: the pod is not annotated inject "true" in a namespace without the
	// label (the webhook configuration's matchConditions keep most such pods away).
	ReasonNotOptedIn
	// ReasonExcludedNamespace: the namespace is never injected (kube-system,
	// kube-node-lease, the injector's own, Config.ExcludedNamespaces).
	ReasonExcludedNamespace
	// ReasonNamespaceDisabled: the namespace is labelled disabled.
	ReasonNamespaceDisabled
	// ReasonWindows: a Windows pod in a namespace labelled enabled, admitted without the
	// sidecar with a warning.
	ReasonWindows

	// ReasonRefusedAnnotation: an apiaccess.io annotation is invalid or unknown.
	ReasonRefusedAnnotation
	// ReasonRefusedHostNetwork: the pod is on the host network.
	ReasonRefusedHostNetwork
	// ReasonRefusedWindows: a Windows pod that asked for the sidecar or lives where it is
	// enforced.
	ReasonRefusedWindows
	// ReasonRefusedName: a container or volume of the pod uses a name reserved for what is
	// injected.
	ReasonRefusedName
	// ReasonRefusedPort: a container declares a port the sidecar needs.
	ReasonRefusedPort
	// ReasonRefusedMount: a container mounts something where the injector mounts its files.
	ReasonRefusedMount
	// ReasonRefusedToken: with isolate-token, a container mounts a token for the API server.
	ReasonRefusedToken
	// ReasonRefusedNamespaceDefault: in a namespace labelled enforced, the pod loosens a
	// default its namespace sets by annotation (NamespaceDefaultAnnotations).
	ReasonRefusedNamespaceDefault
	// ReasonRefusedConflict: anything else in the pod that the sidecar cannot coexist with.
	ReasonRefusedConflict

	numReasons
)

// NumReasons is the number of Reason values, ReasonNone included: an array indexed by
// Reason has NumReasons elements.
const NumReasons = int(numReasons)

var reasonNames = [numReasons]string{
	ReasonNone:                    "none",
	ReasonOptedIn:                 "opted-in",
	ReasonNamespaceEnabled:        "namespace-enabled",
	ReasonNamespaceEnforced:       "namespace-enforced",
	ReasonEnforcedOverride:        "enforced-override",
	ReasonOptedOut:                "opted-out",
	ReasonNotOptedIn:              "not-opted-in",
	ReasonExcludedNamespace:       "excluded-namespace",
	ReasonNamespaceDisabled:       "namespace-disabled",
	ReasonWindows:                 "windows",
	ReasonRefusedAnnotation:       "refused-annotation",
	ReasonRefusedHostNetwork:      "refused-hostnetwork",
	ReasonRefusedWindows:          "refused-windows",
	ReasonRefusedName:             "refused-reserved-name",
	ReasonRefusedPort:             "refused-port",
	ReasonRefusedMount:            "refused-mount",
	ReasonRefusedToken:            "refused-token",
	ReasonRefusedNamespaceDefault: "refused-namespace-default",
	ReasonRefusedConflict:         "refused-conflict",
}

// String returns the Reason's label value, e.g. "enforced-override".
func (r Reason) String() string {
	if r >= numReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// Injects reports whether the Reason is one of a pod that is injected.
func (r Reason) Injects() bool { return r >= ReasonOptedIn && r <= ReasonEnforcedOverride }

// Refuses reports whether the Reason is one of a refused pod.
func (r Reason) Refuses() bool { return r >= ReasonRefusedAnnotation && r < numReasons }
