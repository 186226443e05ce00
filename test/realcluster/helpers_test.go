//go:build realcluster

package realcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// Images that `make e2e-images` builds and up.sh imports (hack/imgbuild names them).
const (
	imageRepo = "localhost/api-access-injector/"
	imageTag  = "e2e"
	appImage  = imageRepo + "e2e-app:" + imageTag
	// kubectlImg is the chart's default image.kubectl, built locally from the kubectl of
	// make envtest.
	kubectlImg  = "registry.k8s.io/kubectl:v1.37.2"
	proxyImage  = imageRepo + "api-proxy:" + imageTag
	releaseName = "api-access-injector"
	releaseNS   = "api-access-system"
	chartDir    = "../../charts/api-access-injector"
	// namespaceLabel is the namespace label of the contract (enabled, enforced, disabled).
	namespaceLabel = "apiaccess.io/injection"
)

// imageValues are the only chart values the suite changes at install: the locally built
// images, never pulled. image.kubectl keeps its default: the node has an image of that name.
var imageValues = []string{
	"image.injector.repository=" + imageRepo + "api-access-injector", "image.injector.tag=" + imageTag, "image.injector.pullPolicy=Never",
	"image.proxy.repository=" + imageRepo + "api-proxy", "image.proxy.tag=" + imageTag, "image.proxy.pullPolicy=Never",
}

var (
	restCfg   *rest.Config
	clientset *kubernetes.Clientset
)

// helm runs the Helm CLI of $HELM against the cluster and returns its combined output.
func helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, os.Getenv("HELM"), append(args, "--kubeconfig", os.Getenv("KUBECONFIG"))...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// upgrade runs helm upgrade of the release with the values given on top of the current ones,
// and waits until the webhook serves with them.
func upgrade(t *testing.T, set ...string) {
	t.Helper()
	args := []string{"upgrade", releaseName, chartDir, "-n", releaseNS, "--reuse-values"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	if _, err := helm(t.Context(), args...); err != nil {
		t.Fatal(err)
	}
	if err := waitWebhookReady(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// poll waits, at most timeout, for cond to be true; it fails the test naming what.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := pollErr(t.Context(), timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

func pollErr(ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("waiting %s for %s: %w (last error: %w)", timeout, what, err, last)
	}
	return nil
}

// webhookSelector selects the webhook's pods.
const webhookSelector = "app.kubernetes.io/instance=" + releaseName

// waitWebhookReady waits until the Deployment has rolled out completely (every replica
// updated and available, no old pod left, not even terminating: an old pod that still
// receives admissions from the API server would answer with the old configuration, or not
// at all) and every webhook entry has a caBundle.
func waitWebhookReady(ctx context.Context) error {
	return pollErr(ctx, 3*time.Minute, "the webhook Deployment rolled out, no old pod left and the caBundle set", func(ctx context.Context) (bool, error) {
		d, err := clientset.AppsV1().Deployments(releaseNS).Get(ctx, releaseName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if !rolledOut(d) {
			return false, nil
		}
		pods, err := clientset.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: webhookSelector})
		if err != nil || len(pods.Items) != int(ptr.Deref(d.Spec.Replicas, 1)) {
			return false, err
		}
		mwc, err := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, releaseName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return len(mwc.Webhooks) > 0, nil
	})
}

func rolledOut(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want &&
		s.AvailableReplicas == want && s.UnavailableReplicas == 0
}

// newNamespace creates a namespace with the labels given and, in it, a Role and RoleBinding
// that let its default ServiceAccount read pods, create ConfigMaps and open exec and
// port-forward tunnels: what the apps of the suite do, so that a refusal is the proxy's.
func newNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		// t.Context() is cancelled before cleanups run.
		_ = clientset.CoreV1().Namespaces().Delete(context.WithoutCancel(t.Context()), name, metav1.DeleteOptions{})
	})
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-app"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/portforward"}, Verbs: []string{"get", "create"}},
		},
	}
	if _, err := clientset.RbacV1().Roles(name).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Role in %s: %v", name, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-app"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "e2e-app"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: name}},
	}
	if _, err := clientset.RbacV1().RoleBindings(name).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the RoleBinding in %s: %v", name, err)
	}
	// The ServiceAccount admission plugin refuses pods until the default ServiceAccount exists.
	poll(t, time.Minute, "the default ServiceAccount of "+name, func(ctx context.Context) (bool, error) {
		_, err := clientset.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	return name
}

// appContainer runs the e2e app with args, hardened for Pod Security restricted, with
// requests and limits so that quotas accept it.
func appContainer(name, image string, args ...string) corev1.Container {
	return corev1.Container{
		Name: name, Image: image, ImagePullPolicy: corev1.PullNever, Args: args,
		Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"},
		}}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// podSpec is a restricted-compliant spec around the containers given.
func podSpec(restart corev1.RestartPolicy, containers ...corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{
		RestartPolicy:                 restart,
		TerminationGracePeriodSeconds: ptr.To[int64](2),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: containers,
	}
}

// appPod is a run-once pod of the e2e app with the annotations given.
func appPod(name string, annotations map[string]string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       podSpec(corev1.RestartPolicyNever, appContainer("app", appImage, args...)),
	}
}

// optIn returns the opt-in annotation plus the pairs given ("key", "value", ...).
func optIn(kv ...string) map[string]string {
	a := map[string]string{injector.InjectAnnotation: "true"}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	return a
}

// createPod creates the pod and returns it as the API server stored it.
func createPod(t *testing.T, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := clientset.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, pod.Name, err)
	}
	return got
}

// runPod creates the pod, waits (bounded) until it has finished and returns it; the test
// fails with the pod's state, events and logs unless the phase is Succeeded.
func runPod(t *testing.T, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	createPod(t, ns, pod)
	return waitPodDone(t, ns, pod.Name)
}

func waitPodDone(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	poll(t, 2*time.Minute, "pod "+ns+"/"+name+" to finish", func(ctx context.Context) (bool, error) {
		p, err := clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod %s/%s ended %s:\n%s", ns, name, got.Status.Phase, describe(t, ns, name))
	}
	return got
}

// describe reports the state of a pod for a failure message: container statuses, events,
// the logs of every container.
func describe(t *testing.T, ns, name string) string {
	ctx := context.WithoutCancel(t.Context()) // also from cleanups, after t.Context() is cancelled
	var b strings.Builder
	p, err := clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		state, _ := json.Marshal(s.State)
		fmt.Fprintf(&b, "container %s ready=%v restarts=%d state=%s\n", s.Name, s.Ready, s.RestartCount, state)
	}
	events, _ := clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if events != nil {
		for _, e := range events.Items {
			fmt.Fprintf(&b, "event %s %s: %s\n", e.Type, e.Reason, e.Message)
		}
	}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		fmt.Fprintf(&b, "--- logs of %s:\n%s\n", c.Name, logs(t, ns, name, c.Name))
	}
	return b.String()
}

// logs returns the log of a container (or the error reading it).
func logs(t *testing.T, ns, pod, container string) string {
	out, err := logsErr(context.WithoutCancel(t.Context()), ns, pod, container)
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	return out
}

func logsErr(ctx context.Context, ns, pod, container string) (string, error) {
	data, err := clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Do(ctx).Raw()
	return string(data), err
}

// webhookLogs returns the logs of the webhook's pods, for a failure message.
func webhookLogs(t *testing.T) string {
	var b strings.Builder
	pods, err := clientset.CoreV1().Pods(releaseNS).List(context.WithoutCancel(t.Context()), metav1.ListOptions{LabelSelector: webhookSelector})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "--- webhook pod %s (%s):\n%s\n", p.Name, p.Status.Phase, logs(t, releaseNS, p.Name, "webhook"))
	}
	return b.String()
}

// result decodes the "RESULT <json>" line the app printed into v. A pod can be ready before
// its app has printed it (an app that serves after its calls), so it waits for the line,
// bounded, as for any other condition.
func result(t *testing.T, ns, pod, container string, v any) {
	t.Helper()
	var line, text string
	err := pollErr(t.Context(), time.Minute, "the RESULT line of "+ns+"/"+pod+" "+container, func(ctx context.Context) (bool, error) {
		var err error
		if text, err = logsErr(ctx, ns, pod, container); err != nil {
			return false, err
		}
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			var ok bool
			if line, ok = strings.CutPrefix(sc.Text(), "RESULT "); ok {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s container %s printed no RESULT line (%v); its log:\n%s", ns, pod, container, err, text)
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("pod %s/%s container %s: bad RESULT line %q: %v", ns, pod, container, line, err)
	}
}

// exitCode is the exit code of a terminated container (init or regular), or -1.
func exitCode(p *corev1.Pod, container string) int32 {
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if s.Name == container && s.State.Terminated != nil {
			return s.State.Terminated.ExitCode
		}
	}
	return -1
}

// sidecar returns the injected sidecar of a pod, or nil.
func sidecar(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == injector.SidecarName {
			return &p.Spec.InitContainers[i]
		}
	}
	return nil
}

// clientWithWarnings returns a client whose admission warnings are collected.
func clientWithWarnings(t *testing.T) (*kubernetes.Clientset, *testenv.Warnings) {
	t.Helper()
	cs, w, err := testenv.ClientWithWarnings(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}
