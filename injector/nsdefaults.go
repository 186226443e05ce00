package injector

import (
	"fmt"
	"maps"
)

// NamespaceDefaultAnnotations are the pod annotations that a platform team may also set on a
// Namespace, as the default of its pods: a pod without its own value gets the namespace's.
// Where the namespace is labelled enforced, a pod may tighten a default ("true" where the
// namespace says "false" or nothing) but not loosen it: a pod "false" against a namespace
// "true" is refused, naming both, rather than overridden, since an override would leave the
// pod's owner believing a setting that does not hold (fail closed). Elsewhere the pod's own
// value wins, with a warning. The chart's ValidatingAdmissionPolicies check the same through
// the API server's namespaceObject, so a pod admitted without them (the webhook down, or its
// namespace cache stale) is refused by the API server itself.
var NamespaceDefaultAnnotations = []string{ReadOnlyAnnotation, IsolateTokenAnnotation}

// withNamespaceDefaults returns the annotations the pod's options are parsed from: its own,
// with the namespace's defaults for the keys it does not set. It returns the pod's own map,
// unchanged, when the namespace sets no default. A namespace default that is not "true" or
// "false", and a pod loosening a default of an enforced namespace, are added to r; so are
// warnings for a pod loosening a default elsewhere.
func withNamespaceDefaults(r *Refusal, ns Namespace, annotations map[string]string) (map[string]string, []string) {
	if len(ns.Annotations) == 0 {
		return annotations, nil
	}
	var merged map[string]string
	var warnings []string
	for _, key := range NamespaceDefaultAnnotations {
		def, ok := ns.Annotations[key]
		if !ok {
			continue
		}
		if def != "true" && def != "false" {
			r.because(ReasonRefusedNamespaceDefault).add(`namespace %s: annotation %s: invalid value %q: must be "true" or "false"; `+
				`the namespace's owners must correct it before its pods can be injected`, ns.Name, key, def)
			continue
		}
		own, set := annotations[key]
		switch {
		case !set:
			if merged == nil {
				merged = maps.Clone(annotations)
				if merged == nil {
					merged = map[string]string{}
				}
			}
			merged[key] = def
		case own == "false" && def == "true" && ns.Mode == ModeEnforced:
			r.because(ReasonRefusedNamespaceDefault).add("%s", LooseningMessage(ns.Name, key))
		case own == "false" && def == "true":
			warnings = append(warnings, fmt.Sprintf(`annotation %s: "false" overrides the default %s: "true" of namespace %s`, key, key, ns.Name))
		}
	}
	if merged == nil {
		return annotations, warnings
	}
	return merged, warnings
}

// LooseningMessage is the refusal reason for a pod that sets key to "false" in a namespace
// labelled enforced whose annotation sets it to "true". Its shape is stable: the chart's
// ValidatingAdmissionPolicy gives the same message.
func LooseningMessage(namespace, key string) string {
	return fmt.Sprintf(`annotation %s: invalid value "false": namespace %s sets %s: "true" and is labelled %s=%s, `+
		`so its pods may tighten this setting but not loosen it; remove the annotation`, key, namespace, key, InjectionLabel, ModeEnforced)
}
