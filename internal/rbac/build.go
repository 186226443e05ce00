package rbac

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// ServiceAccount names a ServiceAccount.
type ServiceAccount struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String is "namespace/name".
func (s ServiceAccount) String() string { return s.Namespace + "/" + s.Name }

// Suggestion is the least-privilege RBAC for one ServiceAccount, from the records of its pods.
type Suggestion struct {
	// ServiceAccount is whose pods made the requests.
	ServiceAccount ServiceAccount `json:"serviceAccount"`
	// Pods are the pods whose records were read, sorted.
	Pods []string `json:"pods"`
	// Since is when the earliest of those records started.
	Since time.Time `json:"since"`
	// Requests is how many requests the records counted, in all.
	Requests int64 `json:"requests"`
	// Grants are the rules that the allowed requests needed, one Grant per scope: the pod's
	// namespace first, then other namespaces by name, then the cluster.
	Grants []Grant `json:"grants"`
	// Denied are the rules that requests answered 403 would have needed, in the same shape,
	// less what Grants already holds.
	Denied []Grant `json:"denied"`
	// NotAuthorized counts requests that no RBAC rule would change: outcome unauthorized
	// (the token was refused) and refused (the sidecar's own filters), by outcome.
	NotAuthorized map[accessrecord.Outcome]int64 `json:"notAuthorized,omitempty"`
	// Warnings say why the rules may be incomplete.
	Warnings []string `json:"warnings,omitempty"`
	// Unused is what the ServiceAccount may do and the app never used; set by Compare.
	Unused *Comparison `json:"unused,omitempty"`
}

// Grant is the rules needed in one namespace, or in the cluster.
type Grant struct {
	// Namespace is where the rules apply; "" for the cluster (a ClusterRole).
	Namespace string `json:"namespace"`
	// Rules are sorted: resource rules by API group and resource, then non-resource rules.
	Rules []Rule `json:"rules"`
}

// Rule is an RBAC rule and how many recorded requests it covers.
type Rule struct {
	rbacv1.PolicyRule `json:",inline"`
	// Count is how many recorded requests the rule covers.
	Count int64 `json:"count"`
}

// verbOrder is the order verbs are listed in, as Kubernetes' own roles list them; other verbs
// follow in alphabetical order.
var verbOrder = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

func compareVerbs(a, b string) int {
	ia, ib := slices.Index(verbOrder, a), slices.Index(verbOrder, b)
	switch {
	case ia >= 0 && ib >= 0:
		return cmp.Compare(ia, ib)
	case ia >= 0:
		return -1
	case ib >= 0:
		return 1
	}
	return strings.Compare(a, b)
}

// upgradeSubresources are the pod subresources whose WebSocket upgrade (a GET, verb get) the
// API server also authorizes as create, by default since Kubernetes 1.35 (feature gate
// AuthorizePodWebsocketUpgradeCreatePermission, https://github.com/kubernetes/kubernetes/issues/133515):
// a rule with get alone would be denied.
var upgradeSubresources = []string{"exec", "attach", "portforward"}

// target is what one rule entry names: a resource (with its subresource as "pods/log") in an
// API group, or a non-resource URL.
type target struct {
	group, resource, url string
}

// scopeTable counts, per target and verb, the requests in one scope.
type scopeTable map[target]map[string]int64

func (t scopeTable) add(tg target, verb string, n int64) {
	if t[tg] == nil {
		t[tg] = map[string]int64{}
	}
	t[tg][verb] += n
}

// Build merges records by ServiceAccount and returns one Suggestion for each, sorted by
// namespace and name.
func Build(records []accessrecord.Record) []Suggestion {
	type acc struct {
		s             Suggestion
		grant, denied map[string]scopeTable
		truncatedPods []string
		other         int64
	}
	accs := map[ServiceAccount]*acc{}
	for _, r := range records {
		sa := ServiceAccount{r.Namespace, r.ServiceAccount}
		a := accs[sa]
		if a == nil {
			a = &acc{s: Suggestion{ServiceAccount: sa}, grant: map[string]scopeTable{}, denied: map[string]scopeTable{}}
			accs[sa] = a
		}
		pod := r.Pod
		if pod == "" {
			pod = "(unnamed pod)"
		}
		if !slices.Contains(a.s.Pods, pod) {
			a.s.Pods = append(a.s.Pods, pod)
		}
		if !r.Since.IsZero() && (a.s.Since.IsZero() || r.Since.Before(a.s.Since)) {
			a.s.Since = r.Since
		}
		a.s.Requests += r.OtherCount
		if r.Truncated || r.OtherCount > 0 {
			a.truncatedPods = append(a.truncatedPods, "pod/"+pod)
			a.other += r.OtherCount
		}
		for _, q := range r.Requests {
			a.s.Requests += q.Count
			tg, scope := targetOf(q)
			var tables map[string]scopeTable
			switch q.Outcome {
			// A failed request got no answer, so no verdict of the authorizer either; the app
			// did make it, and a Role without it would turn the failure into a 403 once the
			// cause is gone.
			case accessrecord.Allowed, accessrecord.Failed:
				tables = a.grant
			case accessrecord.Forbidden:
				tables = a.denied
			default:
				if a.s.NotAuthorized == nil {
					a.s.NotAuthorized = map[accessrecord.Outcome]int64{}
				}
				a.s.NotAuthorized[q.Outcome] += q.Count
				continue
			}
			if tables[scope] == nil {
				tables[scope] = scopeTable{}
			}
			tables[scope].add(tg, q.Verb, q.Count)
			if q.Verb == "get" && q.APIGroup == "" && q.Resource == "pods" && slices.Contains(upgradeSubresources, q.Subresource) {
				tables[scope].add(tg, "create", 0)
			}
		}
	}
	out := make([]Suggestion, 0, len(accs))
	for _, sa := range slices.SortedFunc(maps.Keys(accs), func(a, b ServiceAccount) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	}) {
		a := accs[sa]
		slices.Sort(a.s.Pods)
		// What was denied once and allowed later (the permission was added meanwhile) is in
		// the grants already.
		for scope, t := range a.denied {
			for tg, verbs := range t {
				for v := range verbs {
					if _, ok := a.grant[scope][tg][v]; ok {
						delete(verbs, v)
					}
				}
				if len(verbs) == 0 {
					delete(t, tg)
				}
			}
			if len(t) == 0 {
				delete(a.denied, scope)
			}
		}
		a.s.Grants = grants(a.grant, sa.Namespace)
		a.s.Denied = grants(a.denied, sa.Namespace)
		if len(a.truncatedPods) > 0 {
			slices.Sort(a.truncatedPods)
			a.s.Warnings = append(a.s.Warnings, fmt.Sprintf(
				"the sidecar's table was full in %s: %d requests were counted only as \"other\", so these rules may miss some the app needs",
				strings.Join(a.truncatedPods, ", "), a.other))
		}
		out = append(out, a.s)
	}
	return out
}

// targetOf returns what a request needs a rule for, and in which scope ("" for the cluster).
func targetOf(q accessrecord.Request) (target, string) {
	if q.NonResourceURL != "" {
		return target{url: q.NonResourceURL}, ""
	}
	res := q.Resource
	if q.Subresource != "" {
		res += "/" + q.Subresource
	}
	return target{group: q.APIGroup, resource: res}, q.Namespace
}

// grants turns the tables of each scope into sorted Grants: own namespace first, other
// namespaces, the cluster last.
func grants(tables map[string]scopeTable, own string) []Grant {
	scopes := slices.SortedFunc(maps.Keys(tables), func(a, b string) int {
		rank := func(s string) int {
			switch s {
			case own:
				return 0
			case "":
				return 2
			}
			return 1
		}
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b))
	})
	out := []Grant{}
	for _, s := range scopes {
		out = append(out, Grant{Namespace: s, Rules: rules(tables[s])})
	}
	return out
}

// rules groups a scope's table into rules: per API group, the resources used with exactly the
// same verbs share one rule (so the rule grants nothing that was not used), and so do the
// non-resource URLs.
func rules(t scopeTable) []Rule {
	type key struct {
		group, verbs string
		nonResource  bool
	}
	byKey := map[key]*Rule{}
	for tg, verbs := range t {
		vs := slices.SortedFunc(maps.Keys(verbs), compareVerbs)
		k := key{group: tg.group, verbs: strings.Join(vs, ","), nonResource: tg.url != ""}
		r := byKey[k]
		if r == nil {
			r = &Rule{PolicyRule: rbacv1.PolicyRule{Verbs: vs}}
			if !k.nonResource {
				r.APIGroups = []string{tg.group}
			}
			byKey[k] = r
		}
		if k.nonResource {
			r.NonResourceURLs = append(r.NonResourceURLs, tg.url)
		} else {
			r.Resources = append(r.Resources, tg.resource)
		}
		for _, n := range verbs {
			r.Count += n
		}
	}
	out := make([]Rule, 0, len(byKey))
	for _, r := range byKey {
		slices.Sort(r.Resources)
		slices.Sort(r.NonResourceURLs)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Rule) int {
		an, bn := len(a.NonResourceURLs) > 0, len(b.NonResourceURLs) > 0
		if an != bn {
			if an {
				return 1
			}
			return -1
		}
		if an {
			return cmp.Or(cmp.Compare(a.NonResourceURLs[0], b.NonResourceURLs[0]), slices.CompareFunc(a.Verbs, b.Verbs, compareVerbs))
		}
		return cmp.Or(cmp.Compare(a.APIGroups[0], b.APIGroups[0]), cmp.Compare(a.Resources[0], b.Resources[0]),
			slices.CompareFunc(a.Verbs, b.Verbs, compareVerbs))
	})
	return out
}
