package rbac

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// baselineUser is the made-up user whose rights, with baselineGroups, stand for what every
// ServiceAccount of the cluster may do (system:basic-user, system:discovery,
// system:public-info-viewer, system:service-account-issuer-discovery and whatever else the
// cluster binds to those groups): rights no change to one ServiceAccount's bindings removes.
// What the ServiceAccount's namespace group (system:serviceaccounts:NS) holds is not left out:
// it is an over-grant to this app too.
const baselineUser = "system:apiaccess:rbac-compare"

// baselineGroups are the groups every ServiceAccount token carries but its namespace's
// (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#service-account-permissions).
var baselineGroups = []string{"system:serviceaccounts", "system:authenticated"}

// Comparison is what a ServiceAccount may do today that its app never used, as the API
// server's authorizer answers it.
type Comparison struct {
	// Namespaces holds, per namespace the app used (its own first), the resource rules the
	// ServiceAccount holds there (from Roles there and from ClusterRoles bound cluster-wide)
	// less what was used; and, under Namespace "", the non-resource rules.
	Namespaces []Unused `json:"namespaces"`
	// Notes say where the answer is incomplete or could not be had.
	Notes []string `json:"notes,omitempty"`
	// Asked is false when the caller may not ask at all (see Notes).
	Asked bool `json:"asked"`
}

// Unused is what was granted and not used in one namespace.
type Unused struct {
	// Namespace the review was for; "" for the non-resource rules.
	Namespace string `json:"namespace"`
	// Rules granted and never used. A rule with a wildcard (*) is listed whenever it grants
	// more than the app used, which it always does.
	Rules []rbacv1.PolicyRule `json:"rules"`
	// Incomplete is the review's own status.incomplete: an authorizer (such as a webhook)
	// could not list its rules, so the ServiceAccount may be able to do more than this.
	Incomplete bool `json:"incomplete,omitempty"`
	// EvaluationError is the review's own status.evaluationError.
	EvaluationError string `json:"evaluationError,omitempty"`
}

// Compare asks the API server, with the caller's credentials in cfg, what s's
// ServiceAccount may do, and sets s.Unused to what the app never used. It asks with
// SelfSubjectRulesReview while impersonating the ServiceAccount (the caller needs the verb
// impersonate on serviceaccounts in its namespace), and subtracts what every ServiceAccount
// may do (asked the same way for a made-up user in their groups, which needs impersonate on
// users and groups; when that is refused, those rights are listed too and a note says so). A caller that may not
// impersonate gets a Comparison with Asked false and a note, not an error: the rest of the
// suggestion stands.
func Compare(ctx context.Context, cfg *rest.Config, s *Suggestion) error {
	c := &Comparison{Asked: true}
	s.Unused = c
	// The user name the API server gives a ServiceAccount's tokens
	// (https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/).
	saUser := "system:serviceaccount:" + s.ServiceAccount.Namespace + ":" + s.ServiceAccount.Name
	asSA, err := impersonating(cfg, saUser)
	if err != nil {
		return err
	}
	asBase, err := impersonating(cfg, baselineUser, baselineGroups...)
	if err != nil {
		return err
	}

	namespaces := []string{s.ServiceAccount.Namespace}
	for _, g := range s.Grants {
		if g.Namespace != "" && !slices.Contains(namespaces, g.Namespace) {
			namespaces = append(namespaces, g.Namespace)
		}
	}
	used := s.used()
	baselineOK := true
	var nonResource []authorizationv1.NonResourceRule
	var nonResourceBase []authorizationv1.NonResourceRule
	for i, ns := range namespaces {
		st, err := review(ctx, asSA, ns)
		if err != nil {
			if apierrors.IsForbidden(err) {
				c.Asked = false
				c.Notes = append(c.Notes, fmt.Sprintf("could not ask what ServiceAccount %s may do: you may not impersonate it "+
					"(that needs the verb impersonate on serviceaccounts in namespace %s, as `kubectl auth can-i --as=%s` does): %v",
					s.ServiceAccount, s.ServiceAccount.Namespace, saUser, err))
				c.Namespaces = nil
				return nil
			}
			return fmt.Errorf("asking what ServiceAccount %s may do in namespace %s: %w", s.ServiceAccount, ns, err)
		}
		var base *authorizationv1.SubjectRulesReviewStatus
		if baselineOK {
			b, err := review(ctx, asBase, ns)
			switch {
			case apierrors.IsForbidden(err):
				baselineOK = false
				c.Notes = append(c.Notes, "rights that every ServiceAccount has are listed too: telling them apart needs the verb impersonate on users and groups: "+err.Error())
			case err != nil:
				return fmt.Errorf("asking what every authenticated user may do in namespace %s: %w", ns, err)
			default:
				base = b
			}
		}
		u := Unused{Namespace: ns, Incomplete: st.Incomplete, EvaluationError: st.EvaluationError}
		var baseRules []rbacv1.PolicyRule
		if base != nil {
			baseRules = resourceRules(base.ResourceRules)
		}
		u.Rules = unusedResources(resourceRules(st.ResourceRules), baseRules, used, ns)
		if u.Incomplete {
			c.Notes = append(c.Notes, fmt.Sprintf("namespace %s: the API server says its answer is incomplete (an authorizer could not list its rules): "+
				"the ServiceAccount may be able to do more than listed", ns))
		}
		c.Namespaces = append(c.Namespaces, u)
		if i == 0 {
			nonResource = st.NonResourceRules
			if base != nil {
				nonResourceBase = base.NonResourceRules
			}
		}
	}
	if r := unusedNonResource(nonResource, nonResourceBase, used); len(r) > 0 {
		c.Namespaces = append(c.Namespaces, Unused{Namespace: "", Rules: r})
	}
	return nil
}

func impersonating(cfg *rest.Config, user string, groups ...string) (*kubernetes.Clientset, error) {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return kubernetes.NewForConfig(c)
}

func review(ctx context.Context, cs *kubernetes.Clientset, ns string) (*authorizationv1.SubjectRulesReviewStatus, error) {
	r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx,
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &r.Status, nil
}

func resourceRules(in []authorizationv1.ResourceRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, len(in))
	for i, r := range in {
		out[i] = rbacv1.PolicyRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames}
	}
	return out
}

// usage is what the app was allowed to do: per scope ("" for cluster-wide requests), the
// (group, resource, verb) it used; and the non-resource (URL, verb) pairs.
type usage struct {
	resources   map[string]map[[3]string]bool
	nonResource map[[2]string]bool
}

func (s *Suggestion) used() usage {
	u := usage{resources: map[string]map[[3]string]bool{}, nonResource: map[[2]string]bool{}}
	for _, g := range s.Grants {
		for _, r := range g.Rules {
			for _, v := range r.Verbs {
				for _, url := range r.NonResourceURLs {
					u.nonResource[[2]string{url, v}] = true
				}
				for _, grp := range r.APIGroups {
					for _, res := range r.Resources {
						if u.resources[g.Namespace] == nil {
							u.resources[g.Namespace] = map[[3]string]bool{}
						}
						u.resources[g.Namespace][[3]string{grp, res, v}] = true
					}
				}
			}
		}
	}
	return u
}

// unusedResources returns the (group, resource, verb) triples of granted that the app did not
// use in namespace ns (or cluster-wide) and that every user has anyway (base), grouped back
// into rules. A triple with a wildcard is kept: it always grants more than was used.
func unusedResources(granted, base []rbacv1.PolicyRule, used usage, ns string) []rbacv1.PolicyRule {
	baseSet := map[[4]string]bool{}
	for _, r := range base {
		each(r, func(g, res, v string) { baseSet[[4]string{g, res, v, strings.Join(r.ResourceNames, ",")}] = true })
	}
	type key struct{ group, names, verbs string }
	left := map[[3]string]map[string]bool{} // group, names, resource -> verbs
	for _, r := range granted {
		names := strings.Join(r.ResourceNames, ",")
		each(r, func(g, res, v string) {
			t := [3]string{g, res, v}
			if baseSet[[4]string{g, res, v, names}] || (!wild(g, res, v) && (used.resources[ns][t] || used.resources[""][t])) {
				return
			}
			k := [3]string{g, names, res}
			if left[k] == nil {
				left[k] = map[string]bool{}
			}
			left[k][v] = true
		})
	}
	byKey := map[key]*rbacv1.PolicyRule{}
	for k, verbs := range left {
		vs := slices.SortedFunc(maps.Keys(verbs), compareVerbs)
		kk := key{k[0], k[1], strings.Join(vs, ",")}
		r := byKey[kk]
		if r == nil {
			r = &rbacv1.PolicyRule{APIGroups: []string{k[0]}, Verbs: vs}
			if k[1] != "" {
				r.ResourceNames = strings.Split(k[1], ",")
			}
			byKey[kk] = r
		}
		r.Resources = append(r.Resources, k[2])
	}
	out := make([]rbacv1.PolicyRule, 0, len(byKey))
	for _, r := range byKey {
		slices.Sort(r.Resources)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b rbacv1.PolicyRule) int {
		return cmp.Or(cmp.Compare(a.APIGroups[0], b.APIGroups[0]), cmp.Compare(a.Resources[0], b.Resources[0]),
			slices.CompareFunc(a.Verbs, b.Verbs, compareVerbs), slices.Compare(a.ResourceNames, b.ResourceNames))
	})
	return out
}

func each(r rbacv1.PolicyRule, f func(group, resource, verb string)) {
	for _, g := range r.APIGroups {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				f(g, res, v)
			}
		}
	}
}

func wild(ss ...string) bool {
	for _, s := range ss {
		if strings.Contains(s, "*") {
			return true
		}
	}
	return false
}

// unusedNonResource is unusedResources for non-resource rules; a URL pattern with a wildcard
// is kept, as it grants more than the URLs used.
func unusedNonResource(granted, base []authorizationv1.NonResourceRule, used usage) []rbacv1.PolicyRule {
	baseSet := map[[2]string]bool{}
	for _, r := range base {
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				baseSet[[2]string{u, v}] = true
			}
		}
	}
	left := map[string]map[string]bool{} // url -> verbs
	for _, r := range granted {
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				if baseSet[[2]string{u, v}] || (!wild(u, v) && used.nonResource[[2]string{u, v}]) {
					continue
				}
				if left[u] == nil {
					left[u] = map[string]bool{}
				}
				left[u][v] = true
			}
		}
	}
	byVerbs := map[string]*rbacv1.PolicyRule{}
	for u, verbs := range left {
		vs := slices.SortedFunc(maps.Keys(verbs), compareVerbs)
		k := strings.Join(vs, ",")
		if byVerbs[k] == nil {
			byVerbs[k] = &rbacv1.PolicyRule{Verbs: vs}
		}
		byVerbs[k].NonResourceURLs = append(byVerbs[k].NonResourceURLs, u)
	}
	out := make([]rbacv1.PolicyRule, 0, len(byVerbs))
	for _, r := range byVerbs {
		slices.Sort(r.NonResourceURLs)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b rbacv1.PolicyRule) int { return cmp.Compare(a.NonResourceURLs[0], b.NonResourceURLs[0]) })
	return out
}
