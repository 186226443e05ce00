package explain

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/api-access-injector/api-access-injector/webhook"
)

// entrySuffix ends the name of every entry of the injector's webhook configuration; it is how
// the configuration is found when no name is given (the chart names it after the release).
const entrySuffix = ".inject.apiaccess.io"

// namespaceNameLabel is the label the API server sets on every namespace to its name, which
// the webhook configuration uses to exclude namespaces.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// isOurs reports whether a webhook configuration is the injector's.
func isOurs(c *admissionregistrationv1.MutatingWebhookConfiguration) bool {
	return slices.ContainsFunc(c.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool {
		return strings.HasSuffix(w.Name, entrySuffix)
	})
}

// entryPath returns the path an entry calls.
func entryPath(cc admissionregistrationv1.WebhookClientConfig) string {
	switch {
	case cc.Service != nil && cc.Service.Path != nil:
		return "/" + strings.TrimPrefix(*cc.Service.Path, "/")
	case cc.URL != nil:
		if u, err := url.Parse(*cc.URL); err == nil {
			return u.Path
		}
	}
	return ""
}

// evaluate evaluates one entry of the webhook configuration for the creation of pod in ns,
// as the API server does: rules, then namespaceSelector, objectSelector, matchConditions
// (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#matching-requests-matchconditions).
func evaluate(w admissionregistrationv1.MutatingWebhook, ns *corev1.Namespace, pod *corev1.Pod) Webhook {
	out := Webhook{Name: w.Name, Path: entryPath(w.ClientConfig), FailurePolicy: string(admissionregistrationv1.Fail)}
	if w.FailurePolicy != nil {
		out.FailurePolicy = string(*w.FailurePolicy)
	}
	if mode, ok := webhook.Paths[out.Path]; ok {
		out.Mode = modeName(string(mode))
	} else {
		out.Mode = "unknown path"
	}
	out.Rules = coversPodCreate(w.Rules)
	if !out.Rules {
		out.Why = "its rules do not cover pod creation"
	}
	var why string
	out.NamespaceSelector, why = selectorMatches(w.NamespaceSelector, ns.Labels, "namespace "+ns.Name)
	if out.Why == "" && !out.NamespaceSelector {
		out.Why = why
	}
	out.ObjectSelector, why = selectorMatches(w.ObjectSelector, pod.Labels, "the pod")
	if out.Why == "" && !out.ObjectSelector {
		out.Why = why
	}
	conditionsHold := true
	if len(w.MatchConditions) > 0 {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
		for _, mc := range w.MatchConditions {
			c := Condition{Name: mc.Name, Expression: mc.Expression}
			if err == nil {
				var v bool
				if v, err = evalCondition(mc.Expression, obj, ns.Name); err == nil {
					c.Value = &v
				}
			}
			if err != nil {
				c.Error = err.Error()
				conditionsHold = false
				if out.Why == "" {
					out.Why = fmt.Sprintf("matchCondition %s could not be evaluated here: %v", mc.Name, err)
				}
			} else if !*c.Value {
				conditionsHold = false
				if out.Why == "" {
					out.Why = fmt.Sprintf("matchCondition %s is false for the pod: %s", mc.Name, mc.Expression)
				}
			}
			out.MatchConditions = append(out.MatchConditions, c)
		}
	}
	out.Applies = out.Rules && out.NamespaceSelector && out.ObjectSelector && conditionsHold
	return out
}

// modeName names a namespace mode for people: the empty mode is opt-in.
func modeName(m string) string {
	if m == "" {
		return "opt-in"
	}
	return m
}

func coversPodCreate(rules []admissionregistrationv1.RuleWithOperations) bool {
	anyOf := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		ops := make([]string, len(r.Operations))
		for i, o := range r.Operations {
			ops[i] = string(o)
		}
		if anyOf(ops, string(admissionregistrationv1.Create)) && anyOf(r.APIGroups, "") && anyOf(r.APIVersions, "v1") &&
			(anyOf(r.Resources, "pods") || slices.Contains(r.Resources, "*/*")) &&
			(r.Scope == nil || *r.Scope != admissionregistrationv1.ClusterScope) {
			return true
		}
	}
	return false
}

// selectorMatches evaluates a label selector (nil matches everything) and, when it does not
// match, names the first requirement that fails.
func selectorMatches(sel *metav1.LabelSelector, set map[string]string, what string) (bool, string) {
	if sel == nil {
		return true, ""
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, fmt.Sprintf("the selector for %s is invalid: %v", what, err)
	}
	if s.Matches(labels.Set(set)) {
		return true, ""
	}
	reqs, _ := s.Requirements()
	for _, r := range reqs {
		if r.Matches(labels.Set(set)) {
			continue
		}
		have := "has no label " + r.Key()
		if v, ok := set[r.Key()]; ok {
			have = fmt.Sprintf("has %s=%s", r.Key(), v)
		}
		return false, fmt.Sprintf("%s %s, and the selector asks for %s", what, have, r.String())
	}
	return false, fmt.Sprintf("%s does not match %s", what, s.String())
}

// celEnv is the CEL environment of matchConditions, as far as an offline evaluation can go:
// object, oldObject and request as the API server declares them, with optional types and
// the strings extension. The authorizer variable is not available outside the API server; an
// expression that uses it is reported as not evaluated.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
		cel.OptionalTypes(),
		ext.Strings(),
	)
})

func evalCondition(expr string, object map[string]any, namespace string) (bool, error) {
	env, err := celEnv()
	if err != nil {
		return false, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return false, iss.Err()
	}
	prg, err := env.Program(ast)
	if err != nil {
		return false, err
	}
	out, _, err := prg.Eval(map[string]any{
		"object":    object,
		"oldObject": nil,
		"request": map[string]any{
			"operation": "CREATE", "namespace": namespace, "dryRun": false,
			"kind":     map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource": map[string]any{"group": "", "version": "v1", "resource": "pods"},
		},
	})
	if err != nil {
		return false, err
	}
	v, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the expression gives %v, not a bool", out.Value())
	}
	return v, nil
}

// excludedByName reports whether every entry leaves the namespace out by its name label.
func excludedByName(ws []admissionregistrationv1.MutatingWebhook, ns string) bool {
	if len(ws) == 0 {
		return false
	}
	for _, w := range ws {
		if w.NamespaceSelector == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if err != nil {
			return false
		}
		reqs, _ := s.Requirements()
		excluded := false
		for _, r := range reqs {
			if r.Key() == namespaceNameLabel && !r.Matches(labels.Set{namespaceNameLabel: ns}) {
				excluded = true
			}
		}
		if !excluded {
			return false
		}
	}
	return true
}
