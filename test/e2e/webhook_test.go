package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
)

func TestOptInPodIsInjected(t *testing.T) {
	ns := newNamespace(t, nil)
	pod, warnings := mustCreatePod(t, ns, appPod("opted-in", optIn()))
	assertInjected(t, pod)
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName = %q, want default", pod.Spec.ServiceAccountName)
	}
	// Only the sidecar mounts the injected token.
	for _, c := range append(slices.Clone(pod.Spec.InitContainers[1:]), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.Name == injector.TokenVolumeName {
				t.Errorf("container %s mounts %s", c.Name, injector.TokenVolumeName)
			}
		}
	}
}

func TestPodWithoutAnnotationIsNotSent(t *testing.T) {
	ns := newNamespace(t, nil)
	before := admissions(t, "opt-in")
	for _, p := range []*corev1.Pod{appPod("plain", nil), appPod("opted-out", map[string]string{injector.InjectAnnotation: "false"})} {
		pod, _ := mustCreatePod(t, ns, p)
		assertNotInjected(t, pod)
	}
	if after := admissions(t, "opt-in"); after != before {
		t.Errorf("the webhook was called %v times for pods that did not opt in; matchConditions should skip them", after-before)
	}
}

func TestNamespaceModes(t *testing.T) {
	tests := []struct {
		label      string // "" is no label
		annotation string // "" is no annotation
		inject     bool
		warning    string
	}{
		{"", "true", true, ""},
		{"enabled", "", true, ""},
		{"enabled", "true", true, ""},
		{"enabled", "false", false, ""},
		{"enforced", "", true, ""},
		{"enforced", "false", true, `apiaccess.io/inject: "false" overridden`},
		{"disabled", "true", false, ""},
		{"disabled", "", false, ""},
		// An unknown value acts as no label: only pods that opt in.
		{"enable", "", false, ""},
		{"enable", "true", true, ""},
	}
	for _, tt := range tests {
		t.Run("label="+tt.label+"/inject="+tt.annotation, func(t *testing.T) {
			var labels map[string]string
			if tt.label != "" {
				labels = map[string]string{injector.InjectionLabel: tt.label}
			}
			var annotations map[string]string
			if tt.annotation != "" {
				annotations = map[string]string{injector.InjectAnnotation: tt.annotation}
			}
			ns := newNamespace(t, labels)
			pod, warnings := mustCreatePod(t, ns, appPod("pod", annotations))
			if tt.inject {
				assertInjected(t, pod)
			} else {
				assertNotInjected(t, pod)
			}
			got := strings.Join(warnings, "\n")
			if (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings = %q, want one containing %q", warnings, tt.warning)
			}
		})
	}
}

// TestLabelChangeTakesEffectAtOnce changes the namespace label right before creating pods,
// in both directions. The injector keeps no namespace cache: the API server evaluates the
// webhook entries' namespaceSelectors itself, from its own watch of namespaces, which trails
// an update by milliseconds. So the test probes with server-side dry-run creations until the
// new label rules (failing if that takes more than labelPropagationLimit), logs how long it
// took, and then checks that a real creation is decided by the new label.
func TestLabelChangeTakesEffectAtOnce(t *testing.T) {
	const labelPropagationLimit = 2 * time.Second
	ns := newNamespace(t, nil)
	steps := []struct {
		label  string // "" removes the label
		inject bool
	}{{"enforced", true}, {"disabled", false}, {"enabled", true}, {"", false}, {"enforced", true}, {"disabled", false}}
	injected := func(p *corev1.Pod) bool {
		return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == injector.SidecarName })
	}
	var worst time.Duration
	for i, s := range steps {
		setNamespaceLabel(t, ns, injector.InjectionLabel, s.label)
		start := time.Now()
		for probes := 0; ; probes++ {
			pod, _, err := createPod(t, ns, appPod("probe", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatal(err)
			}
			if injected(pod) == s.inject {
				lag := time.Since(start)
				worst = max(worst, lag)
				t.Logf("step %d, label %q: decided by the new label after %v (%d stale probes)", i, s.label, lag.Round(time.Microsecond), probes)
				break
			}
			if time.Since(start) > labelPropagationLimit {
				t.Fatalf("step %d, label %q: still decided by the old label after %v", i, s.label, labelPropagationLimit)
			}
		}
		pod, _ := mustCreatePod(t, ns, appPod(fmt.Sprintf("step-%d", i), nil))
		if injected(pod) != s.inject {
			t.Errorf("step %d, label %q: injected = %v, want %v", i, s.label, injected(pod), s.inject)
		}
	}
	t.Logf("longest label propagation: %v", worst.Round(time.Microsecond))
}

func TestPodSecurityRestricted(t *testing.T) {
	ns := newNamespace(t, map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", injector.InjectionLabel: "enabled",
	})
	pod, warnings := mustCreatePod(t, ns, appPod("restricted", nil))
	assertInjected(t, pod)
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	// The check is real: the same namespace refuses a pod that is not restricted.
	bad := appPod("privileged", nil)
	bad.Spec.Containers[0].SecurityContext = nil
	if _, _, err := createPod(t, ns, bad, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("a non-restricted pod was admitted in a restricted namespace: %v", err)
	}
}

func TestServerSideDryRunIsInjected(t *testing.T) {
	ns := newNamespace(t, nil)
	pod, _, err := createPod(t, ns, appPod("dry", optIn()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	assertInjected(t, pod)
	if _, err := clientset.CoreV1().Pods(ns).Get(t.Context(), "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run pod was stored: %v", err)
	}
}

// TestReinvocation: a webhook that runs after ours adds a container; ours is called again
// and wires it, and the result is the same as a single injection of a pod that had that
// container from the start.
func TestReinvocation(t *testing.T) {
	ns := newNamespace(t, map[string]string{"e2e.apiaccess.io/late-container": "true"})
	pod, _ := mustCreatePod(t, ns, appPod("late", optIn()))
	assertInjected(t, pod)
	late := pod.Spec.Containers[len(pod.Spec.Containers)-1]
	if late.Name != lateContainer.Name || envValue(late, injector.KubeAPIURLEnvVar) == "" {
		t.Fatalf("late container missing or not wired: %v", late)
	}

	reference := appPod("reference", optIn())
	reference.Spec.Containers = append(reference.Spec.Containers, lateContainer)
	refNS := newNamespace(t, nil)
	once, _ := mustCreatePod(t, refNS, reference)
	got, want := normalize(pod), normalize(once)
	got.Namespace, want.Namespace = "", ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reinvoked injection differs from a single one (-single +reinvoked):\n%s", diff)
	}
}

func TestAutomountDisabled(t *testing.T) {
	ns := newNamespace(t, nil)
	p := appPod("no-automount", optIn())
	p.Spec.AutomountServiceAccountToken = ptr.To(false)
	pod, _ := mustCreatePod(t, ns, p)
	assertInjected(t, pod)
	if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return builtinVolume.MatchString(v.Name) }) {
		t.Error("automount is off but the pod has a kube-api-access volume")
	}
}

func TestIsolateToken(t *testing.T) {
	ns := newNamespace(t, nil)
	p := appPod("isolated", map[string]string{injector.InjectAnnotation: "true", injector.IsolateTokenAnnotation: "true"})
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "registry.example.com/init:1", SecurityContext: restrictedContainer()}}
	pod, _ := mustCreatePod(t, ns, p)
	assertInjected(t, pod)
	tokenVolumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil }) {
			tokenVolumes[v.Name] = true
		}
		if builtinVolume.MatchString(v.Name) {
			t.Errorf("volume %s is still there", v.Name)
		}
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if tokenVolumes[m.Name] && c.Name != injector.SidecarName {
				t.Errorf("container %s mounts token volume %s", c.Name, m.Name)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"bad annotation", func(p *corev1.Pod) { p.Annotations[injector.ProxyPortAnnotation] = "80" },
			[]string{`annotation apiaccess.io/proxy-port: invalid value "80": must be an integer from 1024 to 65535`}},
		{"inject typo", func(p *corev1.Pod) { p.Annotations[injector.InjectAnnotation] = "True" },
			[]string{`annotation apiaccess.io/inject: invalid value "True"`}},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			[]string{"spec.hostNetwork: true: pods on the host network cannot get the api-proxy sidecar"}},
		{"name collision", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "api-proxy", Image: "x", SecurityContext: restrictedContainer()})
		}, []string{`container "api-proxy": the name is reserved`}},
		{"port collision", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8001}}
		}, []string{`container "app": port 8001 is used by the api-proxy sidecar`}},
	}
	ns := newNamespace(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := appPod("refused", optIn())
			tt.mutate(p)
			_, _, err := createPod(t, ns, p, metav1.CreateOptions{})
			var status apierrors.APIStatus
			if !apiStatus(err, &status) || status.Status().Code != http.StatusForbidden {
				t.Fatalf("create error = %v, want a 403 from the webhook", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func apiStatus(err error, out *apierrors.APIStatus) bool {
	s, ok := err.(apierrors.APIStatus)
	*out = s
	return ok
}

func TestExcludedNamespacesAreUntouched(t *testing.T) {
	for _, ns := range []string{"kube-system", injectorNamespace} {
		t.Run(ns, func(t *testing.T) {
			if _, err := clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				if _, err := clientset.CoreV1().Namespaces().Create(t.Context(),
					&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			setNamespaceLabel(t, ns, injector.InjectionLabel, "enforced")
			ensureServiceAccount(t, ns, "default")
			pod, _ := mustCreatePod(t, ns, appPod("excluded-"+strings.ToLower(t.Name()[len(t.Name())-3:]), optIn()))
			assertNotInjected(t, pod)
		})
	}
}

// TestWebhookDown: with the server stopped, opt-in pods are still created, uninjected
// (failurePolicy Ignore), and pods of enforced namespaces are refused (failurePolicy Fail).
func TestWebhookDown(t *testing.T) {
	optInNS := newNamespace(t, nil)
	enforcedNS := newNamespace(t, map[string]string{injector.InjectionLabel: "enforced"})
	stopHook()
	t.Cleanup(func() {
		if err := startWebhook(); err != nil {
			t.Fatalf("restarting the webhook: %v", err)
		}
	})
	if err := waitWebhookDown(); err != nil {
		t.Fatal(err)
	}
	pod, _ := mustCreatePod(t, optInNS, appPod("while-down", optIn()))
	assertNotInjected(t, pod)
	_, _, err := createPod(t, enforcedNS, appPod("while-down", nil), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("enforced namespace admitted a pod with the webhook down: %v", err)
	}
}
