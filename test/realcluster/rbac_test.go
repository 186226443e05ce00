//go:build realcluster

package realcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/internal/rbac"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// TestLeastPrivilegeOnTheNode is issue 11's proof on the real node, where `rbac` reads the
// sidecar's record by exec, as `kubectl exec` does: an app whose ServiceAccount holds a broad
// role lists pods; the suggested RBAC replaces the broad role; a new pod of the same app lists
// pods with no 403 in its sidecar's record, and a write, outside what was used, is denied.
func TestLeastPrivilegeOnTheNode(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t, "e2e-rbac", nil)
	if _, err := clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	broad := "e2e-rbac-broad"
	if _, err := clientset.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: broad},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: broad},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: ns}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: broad}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.WithoutCancel(t.Context()) // t.Context() is cancelled before cleanups run
		for _, name := range []string{broad, ns + ".app-apiaccess"} {
			_ = clientset.RbacV1().ClusterRoleBindings().Delete(bg, name, metav1.DeleteOptions{})
			_ = clientset.RbacV1().ClusterRoles().Delete(bg, name, metav1.DeleteOptions{})
		}
	})

	// The app keeps running (-serve) so that its sidecar, and what it recorded, stay.
	spec := podSpec(corev1.RestartPolicyAlways, appContainer("app", appImage, "list", "-serve"))
	spec.ServiceAccountName = "app"
	waitListed := func(name string) {
		poll(t, 2*time.Minute, "pod "+name+"'s RESULT line", func(ctx context.Context) (bool, error) {
			out, err := logsErr(ctx, ns, name, "app")
			return err == nil && strings.Contains(out, "RESULT "), nil
		})
		checkListed(t, ns, name)
	}
	labels := map[string]string{"app": "web"}
	if _, err := clientset.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: optIn()}, Spec: spec}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var webPod string
	poll(t, 2*time.Minute, "the web Deployment's pod", func(ctx context.Context) (bool, error) {
		pods, err := clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		webPod = pods.Items[0].Name
		return true, nil
	})
	waitListed(webPod)

	rbacOut := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := rbac.Command(ctx, "kubectl apiaccess rbac", append([]string{"-n", ns}, args...), nil, &out, &errOut); err != nil {
			t.Fatalf("rbac %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	var before rbac.Report
	if err := json.Unmarshal([]byte(rbacOut("deploy/web", "-o", "json", "--compare")), &before); err != nil {
		t.Fatal(err)
	}
	s := before.ServiceAccounts[0]
	if s.ServiceAccount != (rbac.ServiceAccount{Namespace: ns, Name: "app"}) || len(s.Pods) != 1 || s.Pods[0] != webPod {
		t.Fatalf("rbac read %v from pods %v, want ServiceAccount %s/app from pod %s", s.ServiceAccount, s.Pods, ns, webPod)
	}
	if len(s.Grants) == 0 || s.Grants[0].Namespace != ns || !grantsListPods(s.Grants[0].Rules) {
		t.Errorf("grants %+v, want list on pods in namespace %s", s.Grants, ns)
	}
	wild := rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}
	if s.Unused == nil || !s.Unused.Asked || len(s.Unused.Namespaces) == 0 || !hasPolicyRule(s.Unused.Namespaces[0].Rules, wild) {
		t.Errorf("--compare: %+v, want the broad role's %v unused", s.Unused, wild)
	}

	// Apply it as a user would, and take the broad role away.
	suggested := rbacOut("deploy/web")
	t.Logf("kubectl apiaccess rbac deploy/web printed:\n%s", suggested)
	dir, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	apply := exec.CommandContext(ctx, filepath.Join(dir, "kubectl"), "apply", "-f", "-")
	apply.Env = os.Environ()
	apply.Stdin = strings.NewReader(suggested)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if err := clientset.RbacV1().ClusterRoleBindings().Delete(ctx, broad, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "the broad role to be gone for "+ns+"/app", func(ctx context.Context) (bool, error) {
		r, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + ns + ":app", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "configmaps"},
		}}, metav1.CreateOptions{})
		return err == nil && !r.Status.Allowed, err
	})

	// A new pod of the same app: it lists pods, and its sidecar recorded no 403.
	least := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-least", Annotations: optIn()}, Spec: spec}
	createPod(t, ns, least)
	waitListed("web-least")
	var after rbac.Report
	if err := json.Unmarshal([]byte(rbacOut("web-least", "-o", "json")), &after); err != nil {
		t.Fatal(err)
	}
	if d := after.ServiceAccounts[0].Denied; len(d) > 0 {
		t.Errorf("with the suggested RBAC, the sidecar recorded 403s: %+v", d)
	}
	// A write, which the app never did: denied by the API server.
	createPod(t, ns, func() *corev1.Pod {
		p := appPod("writer", optIn(), "write")
		p.Spec.ServiceAccountName = "app"
		return p
	}())
	waitPodDone(t, ns, "writer")
	var w struct {
		Status int `json:"status"`
	}
	result(t, ns, "writer", "app", &w)
	if w.Status != http.StatusForbidden {
		t.Errorf("a write with the suggested RBAC: status %d, want 403", w.Status)
	}
}

// grantsListPods reports whether a rule grants list on core pods (among whatever else the app
// used with the same verbs).
func grantsListPods(rules []rbac.Rule) bool {
	for _, r := range rules {
		if slices.Equal(r.APIGroups, []string{""}) && slices.Contains(r.Resources, "pods") && slices.Contains(r.Verbs, "list") {
			return true
		}
	}
	return false
}

func hasPolicyRule(rules []rbacv1.PolicyRule, want rbacv1.PolicyRule) bool {
	for _, r := range rules {
		if equalRule(r, want) {
			return true
		}
	}
	return false
}

func equalRule(a, b rbacv1.PolicyRule) bool {
	j := func(r rbacv1.PolicyRule) string { s, _ := json.Marshal(r); return string(s) }
	return j(a) == j(b)
}
