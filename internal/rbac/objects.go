package rbac

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// NamespaceLabel is, on every generated object, the namespace of the ServiceAccount the
	// object was generated for.
	NamespaceLabel = "apiaccess.io/rbac-for-namespace"
	// ServiceAccountLabel is, on every generated object, the ServiceAccount's name (left out
	// when the name is too long for a label value; SourceAnnotation always has it). Select
	// with `kubectl get roles,rolebindings,clusterroles,clusterrolebindings -A -l
	// apiaccess.io/rbac-for-serviceaccount=NAME`.
	ServiceAccountLabel = "apiaccess.io/rbac-for-serviceaccount"
	// SourceAnnotation says, on every generated object, what it was generated from.
	SourceAnnotation = "apiaccess.io/rbac-source"
	// nameSuffix ends every generated name.
	nameSuffix = "-apiaccess"
)

// Name is the name of the Role or ClusterRole (and of its binding) generated for sa in
// namespace ns ("" for the ClusterRole): "<sa>-apiaccess" in the ServiceAccount's own
// namespace, "<sa namespace>.<sa>-apiaccess" elsewhere, since those names are shared with
// other namespaces' ServiceAccounts (a namespace name holds no dot, so the two parts cannot
// be confused). A name longer than 253 characters is cut and ends with a hash of the whole.
func Name(sa ServiceAccount, ns string) string {
	name := sa.Name + nameSuffix
	if ns != sa.Namespace {
		name = sa.Namespace + "." + name
	}
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	tail := "-" + hex.EncodeToString(sum[:])[:10] + nameSuffix
	return strings.TrimRight(name[:validation.DNS1123SubdomainMaxLength-len(tail)], "-.") + tail
}

func (s *Suggestion) meta(ns string) metav1.ObjectMeta {
	labels := map[string]string{NamespaceLabel: s.ServiceAccount.Namespace}
	if len(validation.IsValidLabelValue(s.ServiceAccount.Name)) == 0 {
		labels[ServiceAccountLabel] = s.ServiceAccount.Name
	}
	pods := make([]string, len(s.Pods))
	for i, p := range s.Pods {
		pods[i] = "pod/" + p
	}
	source := fmt.Sprintf("api-access-injector rbac, from what the api-proxy %s of %s recorded", plural(int64(len(pods)), "sidecar"), strings.Join(pods, ", "))
	if !s.Since.IsZero() {
		source += " since " + s.Since.UTC().Format("2006-01-02T15:04:05Z")
	}
	return metav1.ObjectMeta{
		Name: Name(s.ServiceAccount, ns), Namespace: ns,
		Labels: labels, Annotations: map[string]string{SourceAnnotation: source},
	}
}

// Objects returns the RBAC objects to apply: for each Grant a Role (or, for the cluster, a
// ClusterRole) and its binding to the ServiceAccount, in the order of Grants.
func (s *Suggestion) Objects() []any {
	var out []any
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: s.ServiceAccount.Name, Namespace: s.ServiceAccount.Namespace}}
	for _, g := range s.Grants {
		rules := make([]rbacv1.PolicyRule, len(g.Rules))
		for i, r := range g.Rules {
			rules[i] = r.PolicyRule
		}
		meta := s.meta(g.Namespace)
		if g.Namespace == "" {
			out = append(out,
				&rbacv1.ClusterRole{TypeMeta: typeMeta("ClusterRole"), ObjectMeta: meta, Rules: rules},
				&rbacv1.ClusterRoleBinding{TypeMeta: typeMeta("ClusterRoleBinding"), ObjectMeta: meta, Subjects: subjects,
					RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: meta.Name}})
			continue
		}
		out = append(out,
			&rbacv1.Role{TypeMeta: typeMeta("Role"), ObjectMeta: meta, Rules: rules},
			&rbacv1.RoleBinding{TypeMeta: typeMeta("RoleBinding"), ObjectMeta: meta, Subjects: subjects,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meta.Name}})
	}
	return out
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: kind}
}
