package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
)

// TestUninjectedPods: with the webhook stopped, a pod that asked for injection with a
// security setting is refused, any other pod that asked is admitted with a warning naming the
// cause, and pods that did not ask, or live where the injector never injects, are admitted
// silently. With the webhook running, the same pods are injected and the policies say nothing.
func TestUninjectedPods(t *testing.T) {
	optIn := newNamespace(t, injector.ModeOptIn)
	enabled := newNamespace(t, injector.ModeEnabled)
	disabled := newNamespace(t, injector.ModeDisabled)
	ensureNamespace(t, injectorNamespace)
	const (
		expected        = "api-access-injector-injection-expected"
		refusedReadOnly = `api-access-injector: the pod asked for injection (annotation apiaccess.io/inject: "true") with apiaccess.io/read-only: "true", ` +
			`but it was not injected (it lacks the api-proxy sidecar or the apiaccess.io/status annotation): the api-access-injector webhook was unavailable ` +
			`or is not installed. These are security settings, so the pod is refused rather than run without them; create it again once the webhook is available`
		warnSuffix = ` but was admitted without it (it lacks the api-proxy sidecar or the apiaccess.io/status annotation): the api-access-injector webhook ` +
			`was unavailable (failurePolicy Ignore) or is not installed; delete the pod once the webhook is available, so that its replacement gets the sidecar`
	)
	rows := []struct {
		name        string
		namespace   string
		annotations map[string]string
		// refused and warnings are what the policies say while the webhook is stopped.
		refused  string
		warnings []string
		// injected: the running webhook injects the pod.
		injected bool
	}{
		{"opt-in read-only", optIn, map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true"}, refusedReadOnly, nil, true},
		{"opt-in read-only, forged status", optIn, map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true", injector.StatusAnnotation: "{}"},
			refusedReadOnly, nil, true},
		{"opt-in both settings", optIn, map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "true"},
			`api-access-injector: the pod asked for injection (annotation apiaccess.io/inject: "true") with apiaccess.io/read-only: "true" and apiaccess.io/isolate-token: "true", ` +
				`but it was not injected (it lacks the api-proxy sidecar or the apiaccess.io/status annotation): the api-access-injector webhook was unavailable ` +
				`or is not installed. These are security settings, so the pod is refused rather than run without them; create it again once the webhook is available`, nil, true},
		{"enabled isolate-token", enabled, map[string]string{injector.IsolateTokenAnnotation: "true"},
			"api-access-injector: the pod asked for injection (namespace " + enabled + " is labelled apiaccess.io/injection=enabled) with apiaccess.io/isolate-token: \"true\"" +
				", but it was not injected (it lacks the api-proxy sidecar or the apiaccess.io/status annotation): the api-access-injector webhook was unavailable " +
				"or is not installed. These are security settings, so the pod is refused rather than run without them; create it again once the webhook is available", nil, true},
		{"opt-in", optIn, map[string]string{injector.InjectAnnotation: "true"}, "",
			[]string{policyWarning(expected, `api-access-injector: the pod asked for injection (annotation apiaccess.io/inject: "true")`+warnSuffix)}, true},
		{"opt-in read-only false", optIn, map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "false"}, "",
			[]string{policyWarning(expected, `api-access-injector: the pod asked for injection (annotation apiaccess.io/inject: "true")`+warnSuffix)}, true},
		{"enabled", enabled, nil, "",
			[]string{policyWarning(expected, "api-access-injector: the pod asked for injection (namespace "+enabled+" is labelled apiaccess.io/injection=enabled)"+warnSuffix)}, true},
		{"enabled opted out", enabled, map[string]string{injector.InjectAnnotation: "false", injector.ReadOnlyAnnotation: "true"}, "", nil, false},
		{"opt-in not asked", optIn, map[string]string{injector.ReadOnlyAnnotation: "true"}, "", nil, false},
		{"disabled", disabled, map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true"}, "", nil, false},
		{"injector's namespace", injectorNamespace, map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true"}, "", nil, false},
	}
	create := func(t *testing.T, ns string, annotations map[string]string) (*corev1.Pod, []string, error) {
		cs, rec := recording(t)
		pod, err := cs.CoreV1().Pods(ns).Create(t.Context(), podFor("p", annotations), dryRun)
		return pod, rec.Take(), err
	}

	t.Run("webhook running", func(t *testing.T) {
		for _, tt := range rows {
			t.Run(tt.name, func(t *testing.T) {
				pod, warnings, err := create(t, tt.namespace, tt.annotations)
				if err != nil {
					t.Fatal(err)
				}
				if len(warnings) != 0 {
					t.Errorf("warnings: %q", warnings)
				}
				if _, injected := pod.Annotations[injector.StatusAnnotation]; injected != tt.injected {
					t.Errorf("injected = %v, want %v", injected, tt.injected)
				}
			})
		}
	})
	withoutWebhook(t, func(t *testing.T) {
		for _, tt := range rows {
			t.Run("webhook stopped/"+tt.name, func(t *testing.T) {
				pod, warnings, err := create(t, tt.namespace, tt.annotations)
				if diff := cmp.Diff(tt.refused, denial(err)); diff != "" {
					t.Errorf("refusal (-want +got):\n%s", diff)
				}
				if err != nil {
					if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'api-access-injector-injection-required'") {
						t.Errorf("error = %v, want a 403 from the injection-required policy", err)
					}
					return
				}
				if diff := cmp.Diff(tt.warnings, warnings); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
				if _, injected := pod.Annotations[injector.StatusAnnotation]; injected {
					t.Error("injected with the webhook stopped")
				}
			})
		}
		// A Windows pod that is in an enabled namespace and did not ask by annotation is one the
		// webhook leaves alone (the sidecar runs on Linux only), with its own warning: the
		// policies do not count it as asking.
		win := podFor("win", map[string]string{injector.ReadOnlyAnnotation: "true"})
		win.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
		win.Spec.Containers[0].SecurityContext = nil
		cs, rec := recording(t)
		if _, err := cs.CoreV1().Pods(enabled).Create(t.Context(), win, dryRun); err != nil {
			t.Errorf("Windows pod in an enabled namespace: %v", err)
		}
		if got := rec.Take(); len(got) != 0 {
			t.Errorf("Windows pod in an enabled namespace: warnings %q", got)
		}
		win.Annotations[injector.InjectAnnotation] = "true"
		if _, err := cs.CoreV1().Pods(enabled).Create(t.Context(), win, dryRun); err == nil ||
			!strings.Contains(err.Error(), "injection-required") {
			t.Errorf("Windows pod that asked by annotation: %v, want the injection-required policy's refusal", err)
		}

		// An enforced namespace refuses its pods itself while the webhook is down
		// (failurePolicy Fail): the policy never sees them.
		enforced := newNamespace(t, injector.ModeEnforced)
		if _, _, err := create(t, enforced, nil); err == nil || !strings.Contains(err.Error(), "enforced.inject.apiaccess.io") {
			t.Errorf("enforced namespace: %v, want the webhook's failure", err)
		}
	})
}

// TestInjectedAnnotationsCannotChange: once a pod exists, updates that add, change or remove
// apiaccess.io/status or apiaccess.io/kubeconfig are refused, through the pod and through its
// status subresource, with the webhook running or stopped; the updates that the kubelet and
// controllers make (status, labels, other annotations, finalizers, graceful deletion) go
// through.
func TestInjectedAnnotationsCannotChange(t *testing.T) {
	ns := newNamespace(t, injector.ModeOptIn)
	pod := podFor("injected", map[string]string{injector.InjectAnnotation: "true"})
	pod.Finalizers = []string{"example.com/hold"}
	pod.Spec.NodeName = "node-1" // a bound pod is deleted gracefully
	pod, err := admin.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pod.Annotations[injector.StatusAnnotation]; !ok {
		t.Fatalf("pod not injected: %v", pod.Annotations)
	}
	pods := admin.CoreV1().Pods(ns)
	patch := func(t *testing.T, subresource string, annotations map[string]any) error {
		t.Helper()
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
		if err != nil {
			t.Fatal(err)
		}
		var sub []string
		if subresource != "" {
			sub = []string{subresource}
		}
		_, err = pods.Patch(t.Context(), pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, sub...)
		return err
	}
	refusals := []struct {
		name        string
		annotations map[string]any
		want        string
	}{
		{"change status", map[string]any{injector.StatusAnnotation: `{"version":"forged"}`}, "annotation apiaccess.io/status: cannot be changed after the pod was created"},
		{"remove status", map[string]any{injector.StatusAnnotation: nil}, "annotation apiaccess.io/status: cannot be removed after the pod was created"},
		{"set kubeconfig", map[string]any{injector.KubeconfigAnnotation: "users: [{name: x, user: {exec: {command: /bin/sh}}}]"}, "annotation apiaccess.io/kubeconfig: cannot be "},
		{"both", map[string]any{injector.StatusAnnotation: nil, injector.KubeconfigAnnotation: "x"},
			"annotation apiaccess.io/kubeconfig: cannot be "},
	}
	check := func(t *testing.T) {
		for _, tt := range refusals {
			for _, sub := range []string{"", "status"} {
				t.Run(tt.name+" "+sub, func(t *testing.T) {
					err := patch(t, sub, tt.annotations)
					if !apierrors.IsForbidden(err) || !strings.Contains(denial(err), tt.want) ||
						!strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'api-access-injector-injected-annotations'") {
						t.Errorf("error = %v, want a 403 from the injected-annotations policy saying %q", err, tt.want)
					}
				})
			}
		}
	}
	t.Run("webhook running", check)
	withoutWebhook(t, func(t *testing.T) { t.Run("webhook stopped", check) })

	// What the kubelet and controllers do goes through.
	if err := patch(t, "", map[string]any{"example.com/owner": "team-a"}); err != nil {
		t.Errorf("another annotation: %v", err)
	}
	if _, err := pods.Patch(t.Context(), pod.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"web"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("a label: %v", err)
	}
	live, err := pods.Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.Status.Phase = corev1.PodRunning
	live.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if _, err := pods.UpdateStatus(t.Context(), live, metav1.UpdateOptions{}); err != nil {
		t.Errorf("the kubelet's status update: %v", err)
	}
	if err := pods.Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](30)}); err != nil {
		t.Fatalf("graceful deletion: %v", err)
	}
	live, err = pods.Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil || live.DeletionTimestamp == nil {
		t.Fatalf("after graceful deletion: %v, deletionTimestamp %v", err, live.DeletionTimestamp)
	}
	live.Status.Phase = corev1.PodSucceeded
	if _, err := pods.UpdateStatus(t.Context(), live, metav1.UpdateOptions{}); err != nil {
		t.Errorf("the kubelet's status update while terminating: %v", err)
	}
	if err := pods.Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Errorf("the kubelet's final deletion: %v", err)
	}
	if _, err := pods.Patch(t.Context(), pod.Name, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{}); err != nil {
		t.Errorf("removing the finalizer: %v", err)
	}
	if _, err := pods.Get(t.Context(), pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod still there after its finalizer was removed: %v", err)
	}
}

// TestNamespaceLabel: a namespace label apiaccess.io/injection other than enabled, enforced or
// disabled is refused on creation and on update, with the message naming the label, the value
// and what is allowed (the injector's own, injector.ParseNamespaceMode).
func TestNamespaceLabel(t *testing.T) {
	ensureNamespace(t, injectorNamespace)
	for _, value := range []string{"enforce", "Enabled", "true", ""} {
		t.Run(value, func(t *testing.T) {
			want := `api-access-injector: namespace label apiaccess.io/injection: invalid value "` + value + `": must be enabled, enforced or disabled`
			if _, err := injector.ParseNamespaceMode(value); value != "" && (err == nil || "api-access-injector: "+err.Error() != want) {
				t.Errorf("the injector says %v; the policy says %q", err, want)
			}
			_, err := admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				GenerateName: "policy-", Labels: map[string]string{injector.InjectionLabel: value}}}, dryRun)
			if diff := cmp.Diff(want, denial(err)); diff != "" || !apierrors.IsForbidden(err) {
				t.Errorf("create: %v (-want +got):\n%s", err, diff)
			}
			ns := newNamespace(t, injector.ModeEnabled)
			body := []byte(`{"metadata":{"labels":{"` + injector.InjectionLabel + `":"` + value + `"}}}`)
			_, err = admin.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, body, metav1.PatchOptions{})
			if diff := cmp.Diff(want, denial(err)); diff != "" {
				t.Errorf("update (-want +got):\n%s", diff)
			}
		})
	}
	for _, mode := range []injector.NamespaceMode{injector.ModeEnabled, injector.ModeEnforced, injector.ModeDisabled} {
		ns := newNamespace(t, injector.ModeOptIn)
		body := []byte(`{"metadata":{"labels":{"` + injector.InjectionLabel + `":"` + string(mode) + `"}}}`)
		if _, err := admin.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
			t.Errorf("label %s: %v", mode, err)
		}
	}
	if _, err := admin.CoreV1().Namespaces().Patch(t.Context(), injectorNamespace, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+injector.InjectionLabel+`":"anything"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("the injector's own namespace is left alone: %v", err)
	}
}
