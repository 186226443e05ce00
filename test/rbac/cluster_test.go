package rbac_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/internal/rbac"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const oneRecord = `{"apiVersion":"apiaccess.io/v1alpha1","kind":"AccessRecord","namespace":"%s","serviceAccount":"app","pod":"app-0",
"since":"2026-11-30T17:00:00Z","requests":[{"verb":"list","apiGroup":"","resource":"pods","subresource":"","namespace":"%[1]s",
"nonResourceURL":"","outcome":"allowed","count":1,"lastSeen":"2026-11-30T18:00:00Z"}],"otherCount":0,"truncated":false}`

// saConfig is a rest.Config that authenticates as ServiceAccount ns/sa with a real token.
func saConfig(t *testing.T, cfg *rest.Config, tok string) *rest.Config {
	t.Helper()
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = tok
	return c
}

// TestCompareSaysWhatItCannotAsk: a caller that may not impersonate the ServiceAccount still
// gets the suggestion, with --compare saying it could not ask and why; one that may
// impersonate the ServiceAccount but not users and groups gets the answer, with a note that
// what every ServiceAccount has is listed too.
func TestCompareSaysWhatItCannotAsk(t *testing.T) {
	cs, cfg := admin(t)
	ns := namespace(t, cs, "rbac-compare")
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "caller"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Grant(t.Context(), cs, ns, "app", "reader", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "secrets"}, Verbs: []string{"list"}}); err != nil {
		t.Fatal(err)
	}
	callerKubeconfig := kubeconfig(t, saConfig(t, cfg, token(t, cs, ns, "caller")), ns)
	record := []byte(fmt.Sprintf(oneRecord, ns))

	run := func() (rbac.Report, string) {
		var report rbac.Report
		if err := json.Unmarshal([]byte(rbacCommand(t, record, "-f", "-", "--compare", "-o", "json", "--kubeconfig="+callerKubeconfig)), &report); err != nil {
			t.Fatal(err)
		}
		return report, rbacCommand(t, record, "-f", "-", "--compare", "--kubeconfig="+callerKubeconfig)
	}
	report, yamlOut := run()
	u := report.ServiceAccounts[0].Unused
	if u == nil || u.Asked || len(u.Notes) != 1 || !strings.Contains(u.Notes[0], "you may not impersonate it (that needs the verb impersonate on serviceaccounts in namespace "+ns) {
		t.Errorf("--compare without the right to impersonate: %+v, want not asked and a note saying why", u)
	}
	if !strings.Contains(yamlOut, "# --compare: not answered.\n# Note: could not ask what ServiceAccount "+ns+"/app may do") || !strings.Contains(yamlOut, "kind: Role\n") {
		t.Errorf("YAML output:\n%s\nwant the Role and a comment saying --compare was not answered", yamlOut)
	}

	if err := testenv.Grant(t.Context(), cs, ns, "caller", "impersonate-app", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts"},
		ResourceNames: []string{"app"}, Verbs: []string{"impersonate"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() (bool, string) {
		report, _ = run()
		u = report.ServiceAccounts[0].Unused
		return u.Asked, fmt.Sprintf("%+v", u)
	})
	want := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}
	if len(u.Namespaces) == 0 || !containsRule(u.Namespaces[0].Rules, want) {
		t.Errorf("--compare: %+v, want %v unused in %s", u, want, ns)
	}
	if len(u.Notes) != 1 || !strings.Contains(u.Notes[0], "rights that every ServiceAccount has are listed too: telling them apart needs the verb impersonate on users and groups") {
		t.Errorf("--compare notes: %q, want one saying the rights of every ServiceAccount are listed too", u.Notes)
	}
}

// TestPodsThatCannotBeRead: what the API server holds about a pod decides whether its sidecar
// can be read, and the error says what is wrong; a workload's pods are found by its selector.
func TestPodsThatCannotBeRead(t *testing.T) {
	cs, cfg := admin(t)
	ctx := t.Context()
	ns := namespace(t, cs, "rbac-pods")
	kc := kubeconfig(t, cfg, ns)
	pod := func(name string, sidecar bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{
			ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if sidecar {
			always := corev1.ContainerRestartPolicyAlways
			p.Spec.InitContainers = []corev1.Container{{Name: "api-proxy", Image: "api-proxy", RestartPolicy: &always}}
		}
		p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	setStatus := func(p *corev1.Pod, state corev1.ContainerState) {
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "api-proxy", Image: "api-proxy", State: state}}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("plain", false)
	pod("pending", true)
	setStatus(pod("crashing", true), corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}})
	setStatus(pod("stopped", true), corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}})
	setStatus(pod("running", true), corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "empty"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "none"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "none"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		ref  string
		want []string
	}{
		{"plain", []string{"pod " + ns + "/plain has no api-proxy sidecar: it was not injected (`kubectl apiaccess explain -n " + ns + " pod/plain` says why)"}},
		{"pod/pending", []string{"pod " + ns + "/pending: its api-proxy sidecar is not running: it has no status yet"}},
		{"po/crashing", []string{"pod " + ns + "/crashing: its api-proxy sidecar is not running: waiting (CrashLoopBackOff)"}},
		{"pods/stopped", []string{"pod " + ns + "/stopped: its api-proxy sidecar is not running: terminated (Error, exit code 2)"}},
		// Running as far as the API server knows, on no node: the exec is tried and its error
		// shown, which is as far as a cluster without a kubelet goes.
		{"running", []string{`pod ` + ns + `/running: running "/api-proxy access -o json" in its api-proxy sidecar:`}},
		// Every pod of the workload is tried and each failure shown.
		{"deploy/web", []string{"pod " + ns + "/plain has no api-proxy sidecar", "pod " + ns + "/stopped: its api-proxy sidecar is not running"}},
		{"deployment/empty", []string{"Deployment " + ns + "/empty has no pods (selector app=none)"}},
		{"pod/absent", []string{`pods "absent" not found`}},
		{"service/web", []string{`resource type "service": must be one of pod, deployment, statefulset, daemonset, replicaset, job`}},
		{"pod/", []string{`"pod/": a name is missing: give NAME or TYPE/NAME`}},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := rbac.Command(ctx, "rbac", []string{tc.ref, "--kubeconfig=" + kc, "--timeout=20s"}, nil, &out, &errOut)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			t.Logf("rbac %s: %v", tc.ref, err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant %q", err, w)
				}
			}
			if out.Len() > 0 {
				t.Errorf("printed %q on an error", out.String())
			}
		})
	}
}
