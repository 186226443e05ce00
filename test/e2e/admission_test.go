package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/api-access-injector/api-access-injector/injector"
)

// admissionPropagationLimit bounds how long the API server's admission plugins may take to see
// a LimitRange or ResourceQuota just created (they read them through informers).
const admissionPropagationLimit = 10 * time.Second

// TestLimitRangeAndQuotaAdmitInjectedPods: in a namespace whose LimitRange gives containers a
// default CPU limit and whose ResourceQuota counts limits.cpu, every container must end up with
// a CPU limit. The sidecar gets LimitRanger's default only when the API server re-runs its
// built-in plugins before reinvoking the webhook (it does so whenever a webhook changed the
// pod); the reinvoked injector must keep that limit, or the quota refuses the pod with
// "must specify limits.cpu for: api-proxy".
func TestLimitRangeAndQuotaAdmitInjectedPods(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels map[string]string
	}{
		{"built-in plugins re-run", nil},
		{"another webhook after ours", map[string]string{"e2e.apiaccess.io/late-container": "true"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNamespace(t, tt.labels)
			limitCPUWithQuota(t, ns)

			pod, _ := mustCreatePod(t, ns, appPod("injected", optIn()))
			assertInjected(t, pod)
			for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
				if got := c.Resources.Limits.Cpu(); !got.Equal(defaultCPULimit) {
					t.Errorf("container %s: limits.cpu = %v, want LimitRanger's default %v", c.Name, got, defaultCPULimit)
				}
			}
			limits := inj.Config().Sidecar.Resources.Limits
			if got, want := pod.Spec.InitContainers[0].Resources.Limits.Memory(), limits.Memory(); !got.Equal(*want) {
				t.Errorf("sidecar limits.memory = %v, want the configured %v", got, want)
			}

			// The stored pod applied again (a re-applied manifest) is admitted unchanged.
			again, _ := mustCreatePod(t, ns, reapplied(pod, "reapplied"))
			if diff := cmp.Diff(normalize(pod).Spec, normalize(again).Spec); diff != "" {
				t.Errorf("re-applied injected pod differs (-first +again):\n%s", diff)
			}
		})
	}

	// A manifest injected offline (its sidecar without a CPU limit) is admitted too.
	ns := newNamespace(t, nil)
	limitCPUWithQuota(t, ns)
	offline := appPod("offline", optIn())
	if _, err := inj.Inject(ns, offline); err != nil {
		t.Fatal(err)
	}
	pod, _ := mustCreatePod(t, ns, offline)
	assertInjected(t, pod)
	if got := pod.Spec.InitContainers[0].Resources.Limits.Cpu(); !got.Equal(defaultCPULimit) {
		t.Errorf("sidecar limits.cpu = %v, want LimitRanger's default %v", got, defaultCPULimit)
	}
}

var defaultCPULimit = resource.MustParse("500m")

// limitCPUWithQuota gives a namespace a ResourceQuota on limits.cpu and a LimitRange with a
// default CPU limit, and waits until the API server's admission enforces both.
func limitCPUWithQuota(t *testing.T, ns string) {
	t.Helper()
	ctx := t.Context()
	hard := corev1.ResourceList{corev1.ResourceLimitsCPU: resource.MustParse("100")}
	quota, err := clientset.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "cpu"}, Spec: corev1.ResourceQuotaSpec{Hard: hard},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// envtest runs no controller-manager: the quota controller would fill in the status, and
	// until it has, quota admission ignores the quota. Set it as the controller would.
	quota.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: corev1.ResourceList{corev1.ResourceLimitsCPU: resource.MustParse("0")}}
	if _, err := clientset.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, quota, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The quota bites: a pod with no CPU limit is refused, as the sidecar would be.
	waitAdmission(t, ns, func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "must specify limits.cpu for: app")
	}, "a pod without a CPU limit refused by the quota")

	if _, err := clientset.CoreV1().LimitRanges(ns).Create(ctx, &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "cpu"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, Default: corev1.ResourceList{corev1.ResourceCPU: defaultCPULimit},
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAdmission(t, ns, func(err error) bool { return err == nil }, "the same pod admitted with LimitRanger's default")
}

// waitAdmission dry-runs the creation of a plain pod (not sent to the injector) until ok
// accepts the outcome, failing after admissionPropagationLimit.
func waitAdmission(t *testing.T, ns string, ok func(error) bool, what string) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, admissionPropagationLimit, true, func(context.Context) (bool, error) {
		_, _, last = createPod(t, ns, appPod("probe", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return ok(last), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last creation: %v", what, err, last)
	}
}

// reapplied is a stored pod as a user would apply it again: its spec and annotations under
// a new name.
func reapplied(pod *corev1.Pod, name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: pod.Annotations}, Spec: *pod.Spec.DeepCopy()}
	p.Spec.NodeName = ""
	return p
}

// windowsPod is a Windows pod: no Linux-only security settings.
func windowsPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			OS:         &corev1.PodOS{Name: corev1.Windows},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:windows", Command: []string{"app.exe"}}},
		},
	}
}

func TestWindowsPods(t *testing.T) {
	tests := []struct {
		name        string
		label       string
		annotations map[string]string
		warning     string // substring of a warning, for an admitted pod
		refusal     string // substring of the 403, for a refused pod
	}{
		{"enabled namespace: left alone", "enabled", nil,
			"spec.os.name: windows: the api-proxy sidecar runs on Linux only, so a Windows pod cannot get it; the pod was admitted without it", ""},
		{"enabled namespace, opted out", "enabled", map[string]string{injector.InjectAnnotation: "false"}, "", ""},
		{"enabled namespace, asked for", "enabled", optIn(), "",
			"spec.os.name: windows: the api-proxy sidecar runs on Linux only, so a Windows pod cannot get it; remove the apiaccess.io/inject annotation"},
		{"opted in", "", optIn(), "", "spec.os.name: windows: the api-proxy sidecar runs on Linux only"},
		{"enforced namespace", "enforced", nil, "", "create the pod in a namespace that is not labelled apiaccess.io/injection=enforced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var labels map[string]string
			if tt.label != "" {
				labels = map[string]string{injector.InjectionLabel: tt.label}
			}
			ns := newNamespace(t, labels)
			pod, warnings, err := createPod(t, ns, windowsPod("windows", tt.annotations), metav1.CreateOptions{})
			if tt.refusal != "" {
				assertForbidden(t, err, tt.refusal)
				return
			}
			if err != nil {
				t.Fatalf("creating a Windows pod: %v", err)
			}
			assertNotInjected(t, pod)
			got := strings.Join(warnings, "\n")
			if (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings = %q, want one containing %q", warnings, tt.warning)
			}
		})
	}
}

// assertForbidden checks that err is the webhook's 403 and contains want.
func assertForbidden(t *testing.T, err error, want string) {
	t.Helper()
	var status apierrors.APIStatus
	if !apiStatus(err, &status) || status.Status().Code != http.StatusForbidden {
		t.Fatalf("create error = %v, want a 403 from the webhook", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\ndoes not contain %q", err, want)
	}
}

// TestIsolateTokenRefusesOwnAPIServerTokens: with isolate-token, a projected token for the API
// server that the pod mounts in an app container is refused; one for another audience stays.
func TestIsolateTokenRefusesOwnAPIServerTokens(t *testing.T) {
	ns := newNamespace(t, nil)
	withToken := func(name, audience string) *corev1.Pod {
		p := appPod(name, map[string]string{injector.InjectAnnotation: "true", injector.IsolateTokenAnnotation: "true"})
		p.Spec.Volumes = []corev1.Volume{{Name: "own-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", Audience: audience}}},
		}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "own-token", MountPath: "/var/run/own-token", ReadOnly: true}}
		return p
	}

	_, _, err := createPod(t, ns, withToken("api-server-audience", ""), metav1.CreateOptions{})
	assertForbidden(t, err, `volume "own-token": a service-account token for the API server (no audience, so the API server's own) is mounted in container "app", `+
		`but annotation apiaccess.io/isolate-token: "true" means that no container but the api-proxy sidecar holds a credential for the API server`)

	pod, _ := mustCreatePod(t, ns, withToken("vault-audience", "vault"))
	assertInjected(t, pod)
	if !slices.ContainsFunc(pod.Spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "own-token" }) {
		t.Errorf("the token for another audience was removed: mounts %v", pod.Spec.Containers[0].VolumeMounts)
	}
	if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return builtinVolume.MatchString(v.Name) }) {
		t.Error("the built-in kube-api-access volume is still there")
	}
}

// TestRefusalAdviceFitsThePod: the hostNetwork refusal tells each pod what it can do, which
// depends on why it gets the sidecar.
func TestRefusalAdviceFitsThePod(t *testing.T) {
	tests := []struct {
		label       string
		annotations map[string]string
		want        string
		notWant     string
	}{
		{"", optIn(), "remove hostNetwork, or remove the apiaccess.io/inject annotation", ""},
		{"enabled", nil, `remove hostNetwork, or opt the pod out with the annotation apiaccess.io/inject: "false"`, "remove the apiaccess.io/inject annotation"},
		{"enforced", nil, "remove hostNetwork, or create the pod in a namespace that is not labelled apiaccess.io/injection=enforced", "apiaccess.io/inject:"},
	}
	for _, tt := range tests {
		t.Run("label="+tt.label, func(t *testing.T) {
			var labels map[string]string
			if tt.label != "" {
				labels = map[string]string{injector.InjectionLabel: tt.label}
			}
			ns := newNamespace(t, labels)
			p := appPod("host", tt.annotations)
			p.Spec.HostNetwork = true
			_, _, err := createPod(t, ns, p, metav1.CreateOptions{})
			assertForbidden(t, err, tt.want)
			if tt.notWant != "" && err != nil && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q\ngives advice that does not fit: %q", err, tt.notWant)
			}
		})
	}
}

// TestAnnotationsParsedStrictly: near-miss integers and unknown keys are refused through the
// API server with the injector's message.
func TestAnnotationsParsedStrictly(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{injector.ProxyPortAnnotation, "+8001", `annotation apiaccess.io/proxy-port: invalid value "+8001": must be an integer from 1024 to 65535`},
		{injector.ProxyPortAnnotation, "08001", `annotation apiaccess.io/proxy-port: invalid value "08001": must be an integer from 1024 to 65535`},
		{injector.TokenExpirationSecondsAnnotation, "0600", `annotation apiaccess.io/token-expiration-seconds: invalid value "0600": must be an integer from 600 to 86400`},
		{"apiaccess.io/readonly", "true", "annotation apiaccess.io/readonly: unknown key; the keys users set are apiaccess.io/inject, " +
			"apiaccess.io/proxy-port, apiaccess.io/token-audience, apiaccess.io/token-expiration-seconds, apiaccess.io/read-only, " +
			"apiaccess.io/isolate-token, apiaccess.io/containers, apiaccess.io/transparent, apiaccess.io/allow-exec, " +
			"apiaccess.io/access-log, apiaccess.io/proxy-cpu-request, apiaccess.io/proxy-cpu-limit, apiaccess.io/proxy-memory-request, apiaccess.io/proxy-memory-limit"},
		{injector.ProxyMemoryRequestAnnotation, "128Mi", `annotation apiaccess.io/proxy-memory-request: invalid value "128Mi": ` +
			`exceeds the sidecar's memory limit 64Mi (the injector's configuration); lower the request or raise the limit`},
	}
	ns := newNamespace(t, nil)
	for i, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			p := appPod(fmt.Sprintf("strict-%d", i), optIn())
			p.Annotations[tt.key] = tt.value
			_, _, err := createPod(t, ns, p, metav1.CreateOptions{})
			assertForbidden(t, err, tt.want)
		})
	}
	// The keys the injector writes are not unknown: a re-applied injected pod carries them.
	pod, _ := mustCreatePod(t, ns, appPod("written", optIn()))
	mustCreatePod(t, ns, reapplied(pod, "written-again"))
}

// TestResourceOverrides: the sidecar of a pod with the proxy-* resource annotations gets
// them, over the configuration's, as the API server stores the pod.
func TestResourceOverrides(t *testing.T) {
	ns := newNamespace(t, nil)
	p := appPod("resources", optIn())
	p.Annotations[injector.ProxyCPURequestAnnotation] = "50m"
	p.Annotations[injector.ProxyCPULimitAnnotation] = "500m"
	p.Annotations[injector.ProxyMemoryLimitAnnotation] = "128Mi"
	pod, _ := mustCreatePod(t, ns, p)
	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	if len(pod.Spec.InitContainers) == 0 || pod.Spec.InitContainers[0].Name != injector.SidecarName {
		t.Fatalf("not injected: %+v", pod.Spec.InitContainers)
	}
	if diff := cmp.Diff(want, pod.Spec.InitContainers[0].Resources); diff != "" {
		t.Errorf("sidecar resources (-want +got):\n%s", diff)
	}
}
