//go:build realcluster

package realcluster

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
)

// listResult is what `e2e-app list` reports (test/realcluster/app).
type listResult struct {
	Namespace     string `json:"namespace"`
	ClientGoPods  int    `json:"clientGoPods"`
	ClientGoError string `json:"clientGoError"`
	HTTPStatus    int    `json:"httpStatus"`
	HTTPPods      int    `json:"httpPods"`
	HTTPError     string `json:"httpError"`
	TokenMounted  bool   `json:"tokenMounted"`
}

// checkListed asserts that the app listed the pods of its namespace both ways.
func checkListed(t *testing.T, ns, pod string) listResult {
	t.Helper()
	var r listResult
	result(t, ns, pod, "app", &r)
	if r.ClientGoError != "" || r.ClientGoPods < 1 || r.Namespace != ns {
		t.Errorf("client-go through KUBECONFIG: %d pods in namespace %q, error %q; want at least 1 pod in %q", r.ClientGoPods, r.Namespace, r.ClientGoError, ns)
	}
	if r.HTTPStatus != http.StatusOK || r.HTTPPods < 1 {
		t.Errorf("plain HTTP through KUBE_API_URL: status %d, %d pods, error %q; want 200 and at least 1 pod", r.HTTPStatus, r.HTTPPods, r.HTTPError)
	}
	return r
}

// checkInjected asserts that the stored pod carries the native sidecar.
func checkInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	s := sidecar(p)
	if s == nil {
		t.Fatalf("pod %s/%s has no %s sidecar; init containers: %v", p.Namespace, p.Name, injector.SidecarName, p.Spec.InitContainers)
	}
	if s.RestartPolicy == nil || *s.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sidecar restartPolicy = %v, want Always (a native sidecar)", s.RestartPolicy)
	}
}

// TestScenarios runs the independent scenarios side by side, each in its own namespace, each
// asserting what really ran: phases, exit codes, logs, API answers.
func TestScenarios(t *testing.T) {
	t.Run("config/samples run unchanged: the story of make demo, for real", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-sample", nil)
		data, err := os.ReadFile("../../config/samples/deployment-opt-in.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(data, &d); err != nil {
			t.Fatalf("config/samples/deployment-opt-in.yaml: %v", err)
		}
		// The sample's namespace is default; the suite keeps each scenario in its own.
		d.Namespace = ""
		if _, err := clientset.AppsV1().Deployments(ns).Create(t.Context(), &d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		selector := metav1.FormatLabelSelector(d.Spec.Selector)
		var pod corev1.Pod
		poll(t, 2*time.Minute, "the sample's pod listing pods", func(ctx context.Context) (bool, error) {
			pods, err := clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil || len(pods.Items) != 1 {
				return false, err
			}
			pod = pods.Items[0]
			out, err := logsErr(ctx, ns, pod.Name, "app")
			return err == nil && strings.Contains(out, pod.Name), err
		})
		checkInjected(t, &pod)
		t.Logf("the sample's app (kubectl get pods --watch through the sidecar) prints:\n%s", logs(t, ns, pod.Name, "app"))
	})

	t.Run("deployment app lists pods through the proxy, kubectl with no flags, no token in the app", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-app", nil)
		kubectl := appContainer("kubectl", kubectlImg, "get", "pods")
		// kubectl keeps a discovery cache under $HOME.
		kubectl.Env = append(kubectl.Env, corev1.EnvVar{Name: "HOME", Value: "/tmp"})
		kubectl.SecurityContext.ReadOnlyRootFilesystem = nil
		spec := podSpec(corev1.RestartPolicyAlways, appContainer("app", appImage, "list", "-serve"))
		spec.InitContainers = []corev1.Container{kubectl}
		labels := map[string]string{"app": "e2e-app"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: optIn(injector.IsolateTokenAnnotation, "true")},
					Spec:       spec,
				},
			},
		}
		if _, err := clientset.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var pod *corev1.Pod
		poll(t, 2*time.Minute, "the app Deployment's pod running with its app container started", func(ctx context.Context) (bool, error) {
			pods, err := clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=e2e-app"})
			if err != nil || len(pods.Items) != 1 {
				return false, err
			}
			pod = &pods.Items[0]
			for _, s := range pod.Status.ContainerStatuses {
				if s.Name == "app" && s.State.Running != nil {
					return true, nil
				}
			}
			return false, nil
		})
		checkInjected(t, pod)
		if code := exitCode(pod, "kubectl"); code != 0 {
			t.Errorf("kubectl get pods exited %d, want 0:\n%s", code, describe(t, ns, pod.Name))
		}
		if out := logs(t, ns, pod.Name, "kubectl"); !strings.Contains(out, pod.Name) {
			t.Errorf("kubectl get pods did not list the pod %s; its output:\n%s", pod.Name, out)
		}
		poll(t, time.Minute, "the app's RESULT line", func(ctx context.Context) (bool, error) {
			return strings.Contains(logs(t, ns, pod.Name, "app"), "RESULT "), nil
		})
		if r := checkListed(t, ns, pod.Name); r.TokenMounted {
			t.Errorf("the app container holds a service-account token with %s: \"true\"", injector.IsolateTokenAnnotation)
		}
		for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			for _, m := range c.VolumeMounts {
				if c.Name != injector.SidecarName && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" {
					t.Errorf("container %s mounts %s at %s with isolate-token", c.Name, m.Name, m.MountPath)
				}
			}
		}
	})

	t.Run("job with the sidecar completes", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-job", nil)
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "list"},
			Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Annotations: optIn()},
					Spec:       podSpec(corev1.RestartPolicyNever, appContainer("app", appImage, "list")),
				},
			},
		}
		if _, err := clientset.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var done *batchv1.Job
		poll(t, 2*time.Minute, "the Job to complete or fail", func(ctx context.Context) (bool, error) {
			j, err := clientset.BatchV1().Jobs(ns).Get(ctx, "list", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			done = j
			for _, c := range j.Status.Conditions {
				if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		pods, err := clientset.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "job-name=list"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("the Job's pods: %d, %v; want 1", len(pods.Items), err)
		}
		p := waitPodDone(t, ns, pods.Items[0].Name)
		if done.Status.Succeeded != 1 {
			t.Errorf("Job succeeded = %d, want 1; conditions %+v", done.Status.Succeeded, done.Status.Conditions)
		}
		checkInjected(t, p)
		if code := exitCode(p, "app"); code != 0 {
			t.Errorf("app exit code = %d, want 0", code)
		}
		if exitCode(p, injector.SidecarName) == -1 {
			t.Errorf("the sidecar is not terminated in a completed Job's pod:\n%s", describe(t, ns, p.Name))
		}
		checkListed(t, ns, p.Name)
	})

	t.Run("read-only: a write gets the proxy's 403 Status, without it the write succeeds", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-readonly", nil)
		type writeResult struct {
			Status int `json:"status"`
			Body   struct {
				Kind    string `json:"kind"`
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"body"`
			Error string `json:"error"`
		}
		for _, c := range []struct {
			name     string
			readOnly string
			status   int
			kind     string
		}{
			{name: "writer", readOnly: "false", status: http.StatusCreated, kind: "ConfigMap"},
			{name: "writer-read-only", readOnly: "true", status: http.StatusForbidden, kind: "Status"},
		} {
			createPod(t, ns, appPod(c.name, optIn(injector.ReadOnlyAnnotation, c.readOnly), "write"))
			p := waitPodDone(t, ns, c.name)
			checkInjected(t, p)
			var r writeResult
			result(t, ns, c.name, "app", &r)
			if r.Status != c.status || r.Body.Kind != c.kind {
				t.Errorf("%s (read-only %s): POST configmaps answered %d %s %q, want %d %s", c.name, c.readOnly, r.Status, r.Body.Kind, r.Body.Message, c.status, c.kind)
			}
			if c.kind == "Status" && (r.Body.Code != http.StatusForbidden || r.Body.Message == "") {
				t.Errorf("%s: the 403 Status has code %d and message %q; want 403 and a message naming the rule", c.name, r.Body.Code, r.Body.Message)
			}
			t.Logf("%s: %d %s %s", c.name, r.Status, r.Body.Kind, r.Body.Message)
		}
	})

	t.Run("exec (with allow-exec) and port-forward from an app container through the proxy", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-tunnel", nil)
		target := appPod("target", nil, "serve")
		target.Spec.RestartPolicy = corev1.RestartPolicyAlways
		createPod(t, ns, target)
		waitPodReady(t, ns, "target")
		cases := []struct {
			name        string
			annotations []string // key, value pairs besides the opt-in
			args        []string
			ok          bool
			contains    string
		}{
			// port-forward passes the default filters (those of kubectl proxy) and reaches
			// the real kubelet.
			{name: "portforward", args: []string{"portforward", "target", "8080"}, ok: true, contains: "hello from target"},
			// read-only refuses the tunnel even though it is opened by an upgrade.
			{name: "portforward-read-only", annotations: []string{injector.ReadOnlyAnnotation, "true"},
				args: []string{"portforward", "target", "8080"}, ok: false, contains: "--read-only"},
			// exec is refused by the default --reject-paths, as kubectl proxy refuses it.
			// The refusals are the proxy's 403 Status, whose message client-go shows.
			{name: "exec", args: []string{"exec", "target", "app"}, ok: false, contains: "--reject-paths"},
			{name: "exec-read-only", annotations: []string{injector.ReadOnlyAnnotation, "true"},
				args: []string{"exec", "target", "app"}, ok: false, contains: "--reject-paths"},
			// allow-exec lifts that refusal: the command runs in the target through the real
			// kubelet and its output comes back.
			{name: "exec-allowed", annotations: []string{injector.AllowExecAnnotation, "true"},
				args: []string{"exec", "target", "app"}, ok: true, contains: "hello"},
			// read-only wins over allow-exec.
			{name: "exec-allowed-read-only", annotations: []string{injector.AllowExecAnnotation, "true", injector.ReadOnlyAnnotation, "true"},
				args: []string{"exec", "target", "app"}, ok: false, contains: "--reject-paths"},
		}
		for _, c := range cases {
			createPod(t, ns, appPod(c.name, optIn(c.annotations...), c.args...))
		}
		for _, c := range cases {
			p := waitPodDone(t, ns, c.name)
			checkInjected(t, p)
			var r tunnelResult
			result(t, ns, c.name, "app", &r)
			if r.OK != c.ok || !strings.Contains(r.Output+r.Error, c.contains) {
				t.Errorf("%s: ok=%v output %q error %q; want ok=%v and %q", c.name, r.OK, r.Output, r.Error, c.ok, c.contains)
			}
			t.Logf("%s: ok=%v output %q error %q", c.name, r.OK, r.Output, r.Error)
		}
	})

	t.Run("enforced namespace injects an opt-out, with a warning", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-enforced", map[string]string{namespaceLabel: "enforced"})
		cs, w := clientWithWarnings(t)
		pod := appPod("opted-out", map[string]string{injector.InjectAnnotation: "false"}, "list")
		if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := waitPodDone(t, ns, pod.Name)
		checkInjected(t, p)
		checkListed(t, ns, p.Name)
		found := false
		for _, text := range w.All() {
			found = found || strings.Contains(text, injector.InjectAnnotation)
		}
		if !found {
			t.Errorf("admission warnings %q: none names %s", w.All(), injector.InjectAnnotation)
		}
	})

	t.Run("pod security restricted namespace", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-restricted", map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
		})
		p := runPod(t, ns, appPod("app", optIn(), "list"))
		checkInjected(t, p)
		checkListed(t, ns, p.Name)
	})

	t.Run("namespace with a LimitRange and a ResourceQuota on cpu and memory", func(t *testing.T) {
		t.Parallel()
		ns := quotaNamespace(t, "e2e-quota")
		p := runPod(t, ns, appPod("app", optIn(), "list"))
		checkInjected(t, p)
		checkListed(t, ns, p.Name)
	})
}

// tunnelResult is what the app's portforward and exec modes report.
type tunnelResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output"`
	Error  string `json:"error"`
}

// waitPodReady waits, bounded, for the pod to be Ready (a target for exec and port-forward).
func waitPodReady(t *testing.T, ns, name string) {
	t.Helper()
	poll(t, 2*time.Minute, "pod "+ns+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		p, err := clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// quotaNamespace creates a namespace with a LimitRange (container defaults and maximums) and
// a ResourceQuota on requests and limits of cpu and memory: every container must then declare
// them all. The sidecar declares no cpu limit by default; the API server re-runs LimitRanger
// after a mutating webhook changed the pod, so the LimitRange's default fills it in
// (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#reinvocation-policy).
func quotaNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := newNamespace(t, name, nil)
	q := resource.MustParse
	lr := &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			Default:        corev1.ResourceList{corev1.ResourceCPU: q("200m"), corev1.ResourceMemory: q("128Mi")},
			DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("16Mi")},
			Max:            corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("512Mi")},
		}}},
	}
	if _, err := clientset.CoreV1().LimitRanges(ns).Create(t.Context(), lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rq := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "quota"}, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
		corev1.ResourceRequestsCPU: q("1"), corev1.ResourceRequestsMemory: q("1Gi"),
		corev1.ResourceLimitsCPU: q("2"), corev1.ResourceLimitsMemory: q("2Gi"),
	}}}
	if _, err := clientset.CoreV1().ResourceQuotas(ns).Create(t.Context(), rq, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The quota controller must have computed the quota's status, and LimitRanger (which
	// reads LimitRanges through a cache) must apply the defaults, before a pod is created:
	// a pod created at once may be refused for want of a cpu limit the defaults would give.
	// A server-side dry run of a pod without resources shows both.
	poll(t, time.Minute, "the ResourceQuota's status and the LimitRange's defaults in "+ns, func(ctx context.Context) (bool, error) {
		got, err := clientset.CoreV1().ResourceQuotas(ns).Get(ctx, "quota", metav1.GetOptions{})
		if err != nil || len(got.Status.Hard) == 0 {
			return false, err
		}
		probe := appPod("limitrange-probe", nil, "hello")
		probe.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
		p, err := clientset.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && p.Spec.Containers[0].Resources.Limits.Cpu().String() == "200m", err
	})
	return ns
}
