package rbac_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
	"github.com/api-access-injector/api-access-injector/internal/rbac"
)

// call is one request the app makes.
type call struct {
	name string
	do   func(ctx context.Context, cs *kubernetes.Clientset, ns string) error
}

// appCalls is the fixed set of calls the app makes: reads, a write, a watch, a non-resource
// URL and a cluster-scoped read.
var appCalls = []call{
	{"list pods", func(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
		_, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err
	}},
	{"get configmap", func(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "app-config", metav1.GetOptions{})
		return err
	}},
	{"create event", func(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
		_, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "app-"},
			InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: "app-config"},
			Reason:         "Read", Message: "the app read its configuration", Type: corev1.EventTypeNormal,
		}, metav1.CreateOptions{})
		return err
	}},
	{"watch pods", func(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
		// The API server ends the watch after a second; the test's deadline bounds it too.
		timeout := int64(1)
		w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{TimeoutSeconds: &timeout})
		if err != nil {
			return err
		}
		defer w.Stop()
		for range w.ResultChan() {
		}
		return nil
	}},
	{"get /version", func(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
		_, err := cs.Discovery().ServerVersion()
		return err
	}},
	{"list namespaces", func(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
		_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		return err
	}},
}

// runCalls makes every call and returns the errors by call name.
func runCalls(t *testing.T, cs *kubernetes.Clientset, ns string) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	errs := map[string]error{}
	for _, c := range appCalls {
		if err := c.do(ctx, cs, ns); err != nil {
			errs[c.name] = err
		}
	}
	return errs
}

// TestLeastPrivilegeProof is issue 11's proof: from a broad role to the suggested one, the
// app's calls keep working and a call outside them is denied.
func TestLeastPrivilegeProof(t *testing.T) {
	cs, cfg := admin(t)
	ctx := t.Context()
	// A fixed name, so that the README can show this test's output as it is.
	ns := namespace(t, cs, "=shop")
	adminKubeconfig := kubeconfig(t, cfg, ns)
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"k": "v"}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The broad role: everything, everywhere, as apps are too often given.
	broad := "rbac-proof-broad-" + ns
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: broad}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: broad},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: ns}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: broad}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.WithoutCancel(ctx), broad, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.WithoutCancel(ctx), broad, metav1.DeleteOptions{})
	})
	waitCan(t, cs, ns, "list", "secrets", true)

	// The app's pod, as the API server holds it (no kubelet runs it here), so that the
	// sidecar's token is bound to it as a projected token is, and names it.
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0"}, Spec: corev1.PodSpec{
		ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	side := startSidecar(t, cfg, ns, token(t, cs, ns, "app", pod))
	app := side.client(t)
	if errs := runCalls(t, app, ns); len(errs) > 0 {
		t.Fatalf("with the broad role, the app's calls failed: %v", errs)
	}
	record := readRecord(t, side, ns)

	// --compare, before the switch: the broad role's rights that the app never used.
	var before rbac.Report
	if err := json.Unmarshal([]byte(rbacCommand(t, record, "-f", "-", "--compare", "-o", "json", "--kubeconfig="+adminKubeconfig)), &before); err != nil {
		t.Fatal(err)
	}
	compared := rbacCommand(t, record, "-f", "-", "--compare", "--kubeconfig="+adminKubeconfig)
	t.Logf("rbac -f - --compare printed:\n%s", compared)
	// The comment-only document that --compare adds still applies.
	if out := kubectl(t, adminKubeconfig, []byte(compared), "apply", "--dry-run=server", "-f", "-"); strings.Count(out, "(server dry run)") != 4 {
		t.Errorf("kubectl apply --dry-run=server of the --compare output printed:\n%s\nwant 4 objects", out)
	}
	unused := before.ServiceAccounts[0].Unused
	if unused == nil || !unused.Asked || len(unused.Namespaces) == 0 || unused.Namespaces[0].Namespace != ns {
		t.Fatalf("--compare: %+v, want an answer for namespace %s", unused, ns)
	}
	wild := rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}
	if !containsRule(unused.Namespaces[0].Rules, wild) {
		t.Errorf("--compare before the switch: unused rules in %s are %v, want the broad role's %v among them", ns, unused.Namespaces[0].Rules, wild)
	}

	// The suggestion: exactly what the calls needed.
	yamlOut := rbacCommand(t, record, "-f", "-")
	var report rbac.Report
	if err := json.Unmarshal([]byte(rbacCommand(t, record, "-f", "-", "-o", "json")), &report); err != nil {
		t.Fatal(err)
	}
	g := report.ServiceAccounts[0].Grants
	got := map[string][]rbacv1.PolicyRule{}
	for _, gr := range g {
		for _, r := range gr.Rules {
			got[gr.Namespace] = append(got[gr.Namespace], r.PolicyRule)
		}
	}
	want := map[string][]rbacv1.PolicyRule{
		ns: {
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		},
		"": {
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}},
			{NonResourceURLs: []string{"/version"}, Verbs: []string{"get"}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("suggested rules (-want +got):\n%s", diff)
	}
	t.Logf("rbac -f - printed:\n%s", yamlOut)

	// Apply it as a user would, and take the broad role away.
	applied := kubectl(t, adminKubeconfig, []byte(yamlOut), "apply", "-f", "-")
	for _, w := range []string{"role.rbac.authorization.k8s.io/app-apiaccess created", "rolebinding.rbac.authorization.k8s.io/app-apiaccess created",
		"clusterrole.rbac.authorization.k8s.io/" + ns + ".app-apiaccess created", "clusterrolebinding.rbac.authorization.k8s.io/" + ns + ".app-apiaccess created"} {
		if !strings.Contains(applied, w) {
			t.Errorf("kubectl apply printed:\n%s\nwant %q", applied, w)
		}
	}
	t.Cleanup(func() {
		bg := context.WithoutCancel(ctx)
		_ = cs.RbacV1().ClusterRoleBindings().Delete(bg, ns+".app-apiaccess", metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(bg, ns+".app-apiaccess", metav1.DeleteOptions{})
	})
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, broad, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer follows RBAC objects through an informer: wait, bounded, until it has
	// seen both changes.
	waitCan(t, cs, ns, "list", "secrets", false)
	waitCan(t, cs, ns, "list", "pods", true)

	// The same calls: zero 403s.
	for name, err := range runCalls(t, app, ns) {
		t.Errorf("with the suggested RBAC, %s failed: %v", name, err)
	}
	// Calls outside the set: denied.
	if _, err := app.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets with the suggested RBAC: %v, want 403 Forbidden", err)
	}
	if err := app.CoreV1().ConfigMaps(ns).Delete(ctx, "app-config", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("delete configmap with the suggested RBAC: %v, want 403 Forbidden", err)
	}

	// --compare after the switch: nothing left unused but what every user has.
	var after rbac.Report
	if err := json.Unmarshal([]byte(rbacCommand(t, record, "-f", "-", "--compare", "-o", "json", "--kubeconfig="+adminKubeconfig)), &after); err != nil {
		t.Fatal(err)
	}
	for _, u := range after.ServiceAccounts[0].Unused.Namespaces {
		if len(u.Rules) > 0 {
			t.Errorf("--compare after the switch: unused in %q: %v, want nothing", u.Namespace, u.Rules)
		}
	}
	checkRecordAfter(t, side, ns)
}

func containsRule(rules []rbacv1.PolicyRule, r rbacv1.PolicyRule) bool {
	for _, x := range rules {
		if cmp.Equal(x, r) {
			return true
		}
	}
	return false
}

// waitCan waits, bounded, until the API server's authorizer answers allowed for ServiceAccount
// ns/app doing verb on resource in ns.
func waitCan(t *testing.T, cs *kubernetes.Clientset, ns, verb, resource string, allowed bool) {
	t.Helper()
	var last *authorizationv1.SubjectAccessReviewStatus
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + ns + ":app",
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: resource},
		}}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		last = &r.Status
		return r.Status.Allowed == allowed, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s %s to be allowed=%v for %s/app: %v (last answer %+v)", verb, resource, allowed, ns, err, last)
	}
}

// readRecord reads what the sidecar recorded, running `api-proxy access -o json` beside it
// as exec runs it inside the pod.
func readRecord(t *testing.T, s *sidecar, ns string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), proxyBin, "access", "-o", "json", fmt.Sprintf("--port=%d", s.port))
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("api-proxy access: %v\n%s", err, errOut.String())
	}
	recs, err := accessrecord.Decode(bytes.NewReader(out), "api-proxy access -o json")
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; len(recs) != 1 || r.Namespace != ns || r.ServiceAccount != "app" || r.Pod != "web-0" {
		t.Fatalf("api-proxy access printed %d records, the first for %s/%s in pod %q; want one, for %s/app in pod web-0", len(recs), r.Namespace, r.ServiceAccount, r.Pod, ns)
	}
	return out
}

// checkRecordAfter checks the sidecar's record after the switch: the app's calls were never
// denied, the two calls outside the set were, and rbac lists them as denied.
func checkRecordAfter(t *testing.T, s *sidecar, ns string) {
	t.Helper()
	raw := readRecord(t, s, ns)
	recs, err := accessrecord.Decode(bytes.NewReader(raw), "api-proxy access")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]int64{}
	for _, q := range recs[0].Requests {
		if q.Outcome == accessrecord.Forbidden {
			forbidden[q.Verb+" "+q.Resource] += q.Count
		}
	}
	if diff := cmp.Diff(map[string]int64{"list secrets": 1, "delete configmaps": 1}, forbidden); diff != "" {
		t.Errorf("403s in the record (-want +got):\n%s", diff)
	}
	var report rbac.Report
	if err := json.Unmarshal([]byte(rbacCommand(t, raw, "-f", "-", "-o", "json")), &report); err != nil {
		t.Fatal(err)
	}
	want := []rbac.Grant{{Namespace: ns, Rules: []rbac.Rule{
		{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"delete"}}, Count: 1},
		{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}, Count: 1},
	}}}
	if diff := cmp.Diff(want, report.ServiceAccounts[0].Denied); diff != "" {
		t.Errorf("denied rules (-want +got):\n%s", diff)
	}
}
