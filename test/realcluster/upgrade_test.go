//go:build realcluster

package realcluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/api-access-injector/api-access-injector/injector"
)

// TestLifecycle changes the installed release step by step, in order: the webhook scaled to
// zero, sidecar.mode=kubectl, a changed value, three replacements of the webhook pods under
// continuous pod creation (rollout restart, helm upgrade, a deleted pod), and finally helm
// uninstall.
func TestLifecycle(t *testing.T) {
	optInNS := newNamespace(t, "e2e-lifecycle", nil)
	enforcedNS := newNamespace(t, "e2e-lifecycle-enforced", map[string]string{namespaceLabel: "enforced"})
	enabledNS := newNamespace(t, "e2e-lifecycle-enabled", map[string]string{namespaceLabel: "enabled"})

	t.Run("webhook scaled to zero: enforced namespace refuses, opt-in pods are created without the sidecar", func(t *testing.T) {
		scale(t, 0)
		poll(t, 2*time.Minute, "no webhook pod left", func(ctx context.Context) (bool, error) {
			pods, err := clientset.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: webhookSelector})
			return err == nil && len(pods.Items) == 0, err
		})
		_, err := clientset.CoreV1().Pods(enforcedNS).Create(t.Context(), appPod("refused", optIn(), "list"), metav1.CreateOptions{})
		if err == nil {
			t.Errorf("a pod in an enforced namespace was admitted while the webhook had no replica")
		} else {
			t.Logf("enforced namespace, webhook down: %v", err)
		}
		cs, w := clientWithWarnings(t)
		p, err := cs.CoreV1().Pods(optInNS).Create(t.Context(), appPod("admitted-without-sidecar", optIn(), "hello"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("an opt-in pod was refused while the webhook had no replica: %v", err)
		}
		if sidecar(p) != nil {
			t.Errorf("an opt-in pod got the sidecar while the webhook had no replica")
		}
		// The chart's admission policies, which the API server evaluates itself: a warning
		// that the pod is admitted without the sidecar, and a refusal for one whose security
		// settings (read-only) would silently be lost.
		if len(w.All()) == 0 {
			t.Errorf("an opt-in pod admitted without the sidecar got no warning")
		}
		t.Logf("opt-in pod, webhook down: admitted without the sidecar, warnings %q", w.All())
		_, err = clientset.CoreV1().Pods(optInNS).Create(t.Context(), appPod("read-only-refused", optIn(injector.ReadOnlyAnnotation, "true"), "hello"), metav1.CreateOptions{})
		if err == nil {
			t.Errorf("a read-only opt-in pod was admitted without the sidecar while the webhook had no replica")
		} else {
			t.Logf("read-only opt-in pod, webhook down: %v", err)
		}
		scale(t, 2)
		if err := waitWebhookReady(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("sidecar.mode=kubectl through helm upgrade", func(t *testing.T) {
		upgrade(t, "sidecar.mode=kubectl")
		defer upgrade(t, "sidecar.mode=api-proxy")
		p := runPod(t, optInNS, appPod("kubectl-mode", optIn(), "list"))
		s := sidecar(p)
		if s == nil || s.Image != kubectlImg {
			t.Fatalf("sidecar %+v; want the kubectl image %s\n%s", s, kubectlImg, webhookLogs(t))
		}
		checkListed(t, optInNS, p.Name)
		// allow-exec reaches kubectl proxy as --reject-paths=^$: exec runs through it.
		target := appPod("kubectl-target", nil, "serve")
		target.Spec.RestartPolicy = corev1.RestartPolicyAlways
		createPod(t, optInNS, target)
		waitPodReady(t, optInNS, target.Name)
		e := runPod(t, optInNS, appPod("kubectl-exec", optIn(injector.AllowExecAnnotation, "true"), "exec", target.Name, "app"))
		if s := sidecar(e); s == nil || !slices.Contains(s.Args, "--reject-paths=^$") {
			t.Errorf("kubectl-mode sidecar %+v; want kubectl proxy with --reject-paths=^$", s)
		}
		var r tunnelResult
		result(t, optInNS, e.Name, "app", &r)
		if !r.OK || !strings.Contains(r.Output, "hello") {
			t.Errorf("exec through kubectl proxy with allow-exec: ok=%v output %q error %q; want ok and hello\n%s", r.OK, r.Output, r.Error, describe(t, optInNS, e.Name))
		}
	})

	t.Run("helm upgrade with changed values reaches new pods", func(t *testing.T) {
		upgrade(t, "sidecar.proxyPort=8011", "sidecar.resources.limits.cpu=100m")
		p := runPod(t, optInNS, appPod("new-values", optIn(), "list"))
		checkInjected(t, p)
		var url string
		for _, e := range p.Spec.Containers[0].Env {
			if e.Name == "KUBE_API_URL" {
				url = e.Value
			}
		}
		if url != "http://127.0.0.1:8011" {
			t.Errorf("KUBE_API_URL = %q after the upgrade, want http://127.0.0.1:8011", url)
		}
		if got := sidecar(p).Resources.Limits.Cpu().String(); got != "100m" {
			t.Errorf("sidecar cpu limit %s after the upgrade, want 100m", got)
		}
		if s := sidecar(p); s.Image != proxyImage {
			t.Errorf("sidecar image %s, want %s (back from kubectl mode)", s.Image, proxyImage)
		}
		checkListed(t, optInNS, p.Name)
	})

	// Availability: continuous pod creation in an opt-in, an enabled and an enforced
	// namespace while the webhook's pods are replaced, three ways.
	measured := []string{optInNS, enabledNS, enforcedNS}
	t.Run("availability during kubectl rollout restart", func(t *testing.T) {
		availability(t, "kubectl rollout restart", measured, func(t *testing.T) {
			patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
			if _, err := clientset.AppsV1().Deployments(releaseNS).Patch(t.Context(), releaseName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := waitWebhookReady(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("availability during helm upgrade with a changed value", func(t *testing.T) {
		availability(t, "helm upgrade", measured, func(t *testing.T) {
			// A changed injector configuration rolls the webhook pods (checksum/config).
			upgrade(t, "sidecar.resources.limits.cpu=150m")
		})
	})
	t.Run("availability while one webhook pod is deleted", func(t *testing.T) {
		availability(t, "kubectl delete pod", measured, func(t *testing.T) {
			pods, err := clientset.CoreV1().Pods(releaseNS).List(t.Context(), metav1.ListOptions{LabelSelector: webhookSelector})
			if err != nil || len(pods.Items) == 0 {
				t.Fatalf("no webhook pod to delete: %v", err)
			}
			victim := pods.Items[0]
			if err := clientset.CoreV1().Pods(releaseNS).Delete(t.Context(), victim.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			// The pod terminates gracefully (shutdown delay, then drain): wait for it to be
			// gone before waiting for the Deployment, which may not have noticed yet.
			poll(t, 2*time.Minute, "the deleted webhook pod gone", func(ctx context.Context) (bool, error) {
				p, err := clientset.CoreV1().Pods(releaseNS).Get(ctx, victim.Name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return true, nil
				}
				return err == nil && p.UID != victim.UID, err
			})
			if err := waitWebhookReady(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("helm uninstall leaves pod creation working and nothing behind but the kept Secret", func(t *testing.T) {
		if _, err := helm(t.Context(), "uninstall", releaseName, "-n", releaseNS, "--wait"); err != nil {
			t.Fatal(err)
		}
		for _, ns := range []string{optInNS, enforcedNS, enabledNS} {
			p := createPod(t, ns, appPod("after-uninstall", optIn(), "hello"))
			if sidecar(p) != nil {
				t.Errorf("namespace %s: a pod got the sidecar after uninstall", ns)
			}
			waitPodDone(t, ns, p.Name)
		}
		leftovers(t)
	})
}

// scale sets the webhook Deployment's replicas (as kubectl scale does).
func scale(t *testing.T, replicas int32) {
	t.Helper()
	s, err := clientset.AppsV1().Deployments(releaseNS).GetScale(t.Context(), releaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := clientset.AppsV1().Deployments(releaseNS).UpdateScale(t.Context(), releaseName, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// availability creates pods without pause in each namespace (server-side dry run: every
// admission runs, nothing is stored) while disrupt replaces webhook pods and waits until it is
// over, and counts per namespace the attempts, the refused creations and the pods admitted
// without the sidecar. The goal, which the test holds, is 0 and 0; the figures are reported.
func availability(t *testing.T, disruption string, namespaces []string, disrupt func(t *testing.T)) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type counts struct{ attempts, refused, uninjected atomic.Int64 }
	byNS := make([]*counts, len(namespaces))
	var total atomic.Int64
	var mu sync.Mutex
	var failures []string
	record := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, msg)
		}
	}
	var wg sync.WaitGroup
	for i, ns := range namespaces {
		c := &counts{}
		byNS[i] = c
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				pod := appPod(fmt.Sprintf("probe-%d", n), optIn(), "hello")
				got, err := clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if ctx.Err() != nil {
					return
				}
				c.attempts.Add(1)
				total.Add(1)
				switch {
				case err != nil:
					c.refused.Add(1)
					record(fmt.Sprintf("%s: refused: %v", ns, err))
				case sidecar(got) == nil:
					c.uninjected.Add(1)
					record(fmt.Sprintf("%s: admitted without the sidecar", ns))
				}
			}
		})
	}
	failed := func() (n int64) {
		for _, c := range byNS {
			n += c.refused.Load() + c.uninjected.Load()
		}
		return n
	}
	// Some admissions before the disruption: the baseline must be clean.
	poll(t, time.Minute, "20 admissions before the disruption", func(context.Context) (bool, error) { return total.Load() >= 20, nil })
	if n := failed(); n != 0 {
		t.Fatalf("%d admissions failed before the disruption: %v", n, failures)
	}
	start := time.Now()
	disrupt(t)
	took := time.Since(start).Round(100 * time.Millisecond)
	after := total.Load()
	poll(t, time.Minute, "20 admissions after the disruption", func(context.Context) (bool, error) { return total.Load() >= after+20, nil })
	cancel()
	wg.Wait()
	for i, ns := range namespaces {
		c := byNS[i]
		fmt.Printf("FIGURE availability, %s (%s): namespace %s: %d attempts, %d refused, %d admitted without the sidecar (goal 0 and 0)\n",
			disruption, took, ns, c.attempts.Load(), c.refused.Load(), c.uninjected.Load())
	}
	if n := failed(); n != 0 {
		t.Errorf("%s: %d of %d admissions failed (goal 0); first ones:\n%s", disruption, n, total.Load(), strings.Join(failures, "\n"))
	}
}

// leftovers checks that helm uninstall left only what the chart README lists: the
// self-managed serving-certificate Secret, annotated to be kept, plus what every namespace
// has (the default ServiceAccount, the kube-root-ca.crt ConfigMap).
func leftovers(t *testing.T) {
	ctx := t.Context()
	// helm uninstall --wait returns once the Deployment is gone; its pods then stop within
	// their termination grace period (the webhook's shutdown delay and more).
	poll(t, 2*time.Minute, "the webhook pods gone after uninstall", func(ctx context.Context) (bool, error) {
		pods, err := clientset.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, err
	})
	var left []string
	add := func(kind string, names ...string) {
		for _, n := range names {
			left = append(left, kind+"/"+n)
		}
	}
	secrets, err := clientset.CoreV1().Secrets(releaseNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Name != releaseName+"-tls" {
			add("Secret", s.Name)
		}
	}
	cms, _ := clientset.CoreV1().ConfigMaps(releaseNS).List(ctx, metav1.ListOptions{})
	for _, c := range cms.Items {
		if c.Name != "kube-root-ca.crt" {
			add("ConfigMap", c.Name)
		}
	}
	sas, _ := clientset.CoreV1().ServiceAccounts(releaseNS).List(ctx, metav1.ListOptions{})
	for _, s := range sas.Items {
		if s.Name != "default" {
			add("ServiceAccount", s.Name)
		}
	}
	svcs, _ := clientset.CoreV1().Services(releaseNS).List(ctx, metav1.ListOptions{})
	for _, s := range svcs.Items {
		add("Service", s.Name)
	}
	deps, _ := clientset.AppsV1().Deployments(releaseNS).List(ctx, metav1.ListOptions{})
	for _, d := range deps.Items {
		add("Deployment", d.Name)
	}
	pods, _ := clientset.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		add("Pod", p.Name)
	}
	roles, _ := clientset.RbacV1().Roles(releaseNS).List(ctx, metav1.ListOptions{})
	for _, r := range roles.Items {
		add("Role", r.Name)
	}
	rbs, _ := clientset.RbacV1().RoleBindings(releaseNS).List(ctx, metav1.ListOptions{})
	for _, r := range rbs.Items {
		add("RoleBinding", r.Name)
	}
	leases, _ := clientset.CoordinationV1().Leases(releaseNS).List(ctx, metav1.ListOptions{})
	for _, l := range leases.Items {
		add("Lease", l.Name)
	}
	// Cluster-scoped objects named after the release.
	mine := func(name string) bool { return strings.Contains(name, releaseName) }
	if l, err := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if mine(o.Name) {
				add("MutatingWebhookConfiguration", o.Name)
			}
		}
	}
	if l, err := clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if mine(o.Name) {
				add("ValidatingWebhookConfiguration", o.Name)
			}
		}
	}
	if l, err := clientset.AdmissionregistrationV1().ValidatingAdmissionPolicies().List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if mine(o.Name) {
				add("ValidatingAdmissionPolicy", o.Name)
			}
		}
	}
	if l, err := clientset.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if mine(o.Name) {
				add("ValidatingAdmissionPolicyBinding", o.Name)
			}
		}
	}
	if l, err := clientset.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if mine(o.Name) {
				add("ClusterRole", o.Name)
			}
		}
	}
	if l, err := clientset.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if mine(o.Name) {
				add("ClusterRoleBinding", o.Name)
			}
		}
	}
	if len(left) > 0 {
		t.Errorf("helm uninstall left %v (the chart README names only the Secret %s-tls)", left, releaseName)
	}
	if _, err := clientset.CoreV1().Secrets(releaseNS).Get(ctx, releaseName+"-tls", metav1.GetOptions{}); err != nil {
		t.Errorf("the serving-certificate Secret the chart README says is kept: %v", err)
	}
}
