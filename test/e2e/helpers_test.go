package e2e

import (
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// newNamespace creates a namespace with the given labels and its default ServiceAccount
// (envtest runs no controller-manager to create it).
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns, err := clientset.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ensureServiceAccount(t, ns.Name, "default")
	return ns.Name
}

func ensureServiceAccount(t *testing.T, ns, name string) {
	t.Helper()
	_, err := clientset.CoreV1().ServiceAccounts(ns).Create(t.Context(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func setNamespaceLabel(t *testing.T, ns, key, value string) {
	t.Helper()
	n, err := clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels[key] = value
	if value == "" {
		delete(n.Labels, key)
	}
	if _, err := clientset.CoreV1().Namespaces().Update(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPod creates a pod through the API server and returns what it stored, with the
// warnings it sent back.
func createPod(t *testing.T, ns string, pod *corev1.Pod, opts metav1.CreateOptions) (*corev1.Pod, []string, error) {
	t.Helper()
	cs, rec, err := testenv.ClientWithWarnings(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	created, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, opts)
	return created, rec.All(), err
}

// mustCreatePod creates a pod that must be admitted.
func mustCreatePod(t *testing.T, ns string, pod *corev1.Pod) (*corev1.Pod, []string) {
	t.Helper()
	created, warnings, err := createPod(t, ns, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", pod.Name, err)
	}
	return created, warnings
}

func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](1000),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// appPod is an ordinary pod with one app container, valid under Pod Security restricted.
func appPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.com/app:1", Command: []string{"/app"},
			SecurityContext: restrictedContainer(),
		}}},
	}
}

func optIn() map[string]string { return map[string]string{injector.InjectAnnotation: "true"} }

// assertInjected checks the stored pod against the contract (interface.md, "What gets
// injected"), and that injecting it again changes nothing.
func assertInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if len(pod.Spec.InitContainers) == 0 || pod.Spec.InitContainers[0].Name != injector.SidecarName {
		t.Fatalf("first init container is not %s: %v", injector.SidecarName, names(pod.Spec.InitContainers))
	}
	sidecar := pod.Spec.InitContainers[0]
	if sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways || sidecar.StartupProbe == nil {
		t.Errorf("sidecar is not a native sidecar with a startup probe: restartPolicy %v, startupProbe %v", sidecar.RestartPolicy, sidecar.StartupProbe)
	}
	if sidecar.Image != sidecarImage {
		t.Errorf("sidecar image = %q, want %q", sidecar.Image, sidecarImage)
	}
	for _, v := range []string{injector.TokenVolumeName, injector.KubeconfigVolumeName} {
		if !slices.ContainsFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v }) {
			t.Errorf("volume %s missing", v)
		}
	}
	if _, ok := injector.ParseStatus(pod.Annotations); !ok {
		t.Errorf("status annotation missing or invalid: %q", pod.Annotations[injector.StatusAnnotation])
	}
	if v, ok := pod.Annotations[injector.KubeconfigAnnotation]; ok {
		t.Errorf("the stored pod carries the %s annotation, which nothing may feed the app from: %q", injector.KubeconfigAnnotation, v)
	}
	if i := slices.IndexFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == injector.KubeconfigVolumeName }); i >= 0 {
		if ed := pod.Spec.Volumes[i].EmptyDir; ed == nil || ed.Medium != corev1.StorageMediumMemory {
			t.Errorf("volume %s is not a memory-backed emptyDir: %+v", injector.KubeconfigVolumeName, pod.Spec.Volumes[i].VolumeSource)
		}
	}
	for _, c := range pod.Spec.Containers {
		if envValue(c, injector.KubeconfigEnvVar) == "" || envValue(c, injector.KubeAPIURLEnvVar) == "" {
			t.Errorf("container %s lacks %s or %s: %v", c.Name, injector.KubeconfigEnvVar, injector.KubeAPIURLEnvVar, c.Env)
		}
	}
	again := pod.DeepCopy()
	if _, err := inj.Inject(pod.Namespace, again); err != nil {
		t.Fatalf("re-injecting the stored pod: %v", err)
	}
	if diff := cmp.Diff(pod, again); diff != "" {
		t.Errorf("re-injecting the stored pod changes it (-stored +again):\n%s", diff)
	}
}

func assertNotInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		if c.Name == injector.SidecarName || envValue(c, injector.KubeAPIURLEnvVar) != "" {
			t.Errorf("pod %s was injected (container %s)", pod.Name, c.Name)
		}
	}
	if _, ok := pod.Annotations[injector.StatusAnnotation]; ok {
		t.Errorf("pod %s has a status annotation", pod.Name)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

var builtinVolume = regexp.MustCompile(`^kube-api-access-[a-z0-9]+$`)

// normalize removes what differs between two pods created the same way: names, UIDs,
// timestamps and the random suffix of the built-in token volume.
func normalize(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	p.ObjectMeta = metav1.ObjectMeta{Annotations: p.Annotations, Namespace: p.Namespace}
	rename := func(n string) string {
		if builtinVolume.MatchString(n) {
			return "kube-api-access"
		}
		return n
	}
	for i := range p.Spec.Volumes {
		p.Spec.Volumes[i].Name = rename(p.Spec.Volumes[i].Name)
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			for j := range cs[i].VolumeMounts {
				cs[i].VolumeMounts[j].Name = rename(cs[i].VolumeMounts[j].Name)
			}
		}
	}
	p.Status = corev1.PodStatus{}
	return p
}
