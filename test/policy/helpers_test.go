package policy

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// dryRun is server-side dry-run: every admission step runs, nothing is stored.
var dryRun = metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

// waitEnforced waits, bounded, until the API server enforces every installed policy: a policy
// takes effect when the API server's informers have seen it and its binding. Each probe is a
// request that only that policy refuses or warns about; the webhook must not be running.
func waitEnforced() error {
	ctx := context.Background() //nolint:forbidigo // run from TestMain, which has no t.Context()
	cs, rec, err := testenv.ClientWithWarnings(restCfg)
	if err != nil {
		return err
	}
	if _, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	marked := podFor("marked", map[string]string{injector.StatusAnnotation: "{}"})
	if _, err := admin.CoreV1().Pods("default").Create(ctx, marked, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the probe pod: %w", err)
	}
	probes := map[string]func() (bool, error){
		"namespace-label": func() (bool, error) {
			_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "probe",
				Labels: map[string]string{injector.InjectionLabel: "enforce"}}}, dryRun)
			return err != nil && strings.Contains(err.Error(), "namespace-label"), nil
		},
		"workload-annotations": func() (bool, error) {
			_, err := admin.AppsV1().Deployments("default").Create(ctx, deployment("probe", map[string]string{injector.InjectAnnotation: "yes"}), dryRun)
			return err != nil && strings.Contains(err.Error(), "workload-annotations"), nil
		},
		"workload-annotation-placement": func() (bool, error) {
			d := deployment("probe", nil)
			d.Annotations = map[string]string{injector.InjectAnnotation: "true"}
			_, err := cs.AppsV1().Deployments("default").Create(ctx, d, dryRun)
			return err == nil && rec.Contains("is on the Deployment itself"), err
		},
		"injection-required": func() (bool, error) {
			_, err := admin.CoreV1().Pods("default").Create(ctx, podFor("probe", map[string]string{
				injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true"}), dryRun)
			return err != nil && strings.Contains(err.Error(), "injection-required"), nil
		},
		"injection-expected": func() (bool, error) {
			_, err := cs.CoreV1().Pods("default").Create(ctx, podFor("probe", map[string]string{injector.InjectAnnotation: "true"}), dryRun)
			return err == nil && rec.Contains("but was admitted without it"), err
		},
		"injected-annotations": func() (bool, error) {
			p := marked.DeepCopy()
			p.Namespace = "default"
			live, err := admin.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			live.Annotations[injector.StatusAnnotation] = "{ }"
			_, err = admin.CoreV1().Pods("default").Update(ctx, live, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err != nil && strings.Contains(err.Error(), "injected-annotations"), nil
		},
	}
	for name, probe := range probes {
		deadline := time.Now().Add(60 * time.Second)
		for {
			ok, err := probe()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("policy %s not enforced after 60s (last error: %w)", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return admin.CoreV1().Pods("default").Delete(ctx, marked.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
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

// podSpec is an ordinary pod with one app container, which the injector accepts.
func podSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Image: "registry.example.com/app:1", Command: []string{"/app"},
		SecurityContext: restrictedContainer(),
	}}}
}

func podFor(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: podSpec()}
}

func template(annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "w"}, Annotations: annotations},
		Spec:       podSpec(),
	}
}

func deployment(name string, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "w"}},
			Template: template(annotations),
		},
	}
}

// workload is one kind whose pod template the workload policy checks.
type workload struct {
	kind string
	// object returns a workload of this kind with the given template annotations.
	object func(annotations map[string]string) runtime.Object
	// create creates it with options and returns the error.
	create func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, opts metav1.CreateOptions) error
}

var workloads = []workload{
	{"Deployment", func(a map[string]string) runtime.Object { return deployment("w", a) },
		func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, o metav1.CreateOptions) error {
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, obj.(*appsv1.Deployment), o)
			return err
		}},
	{"StatefulSet", func(a map[string]string) runtime.Object {
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "w"}}, Template: template(a)}}
	}, func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, o metav1.CreateOptions) error {
		_, err := cs.AppsV1().StatefulSets(ns).Create(ctx, obj.(*appsv1.StatefulSet), o)
		return err
	}},
	{"DaemonSet", func(a map[string]string) runtime.Object {
		return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "w"}}, Template: template(a)}}
	}, func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, o metav1.CreateOptions) error {
		_, err := cs.AppsV1().DaemonSets(ns).Create(ctx, obj.(*appsv1.DaemonSet), o)
		return err
	}},
	{"ReplicaSet", func(a map[string]string) runtime.Object {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "w"}}, Template: template(a)}}
	}, func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, o metav1.CreateOptions) error {
		_, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, obj.(*appsv1.ReplicaSet), o)
		return err
	}},
	{"Job", func(a map[string]string) runtime.Object {
		t := template(a)
		t.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: batchv1.JobSpec{Template: t}}
	}, func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, o metav1.CreateOptions) error {
		_, err := cs.BatchV1().Jobs(ns).Create(ctx, obj.(*batchv1.Job), o)
		return err
	}},
	{"CronJob", func(a map[string]string) runtime.Object {
		t := template(a)
		t.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: batchv1.CronJobSpec{
			Schedule: "@hourly", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: t}}}}
	}, func(ctx context.Context, cs *kubernetes.Clientset, ns string, obj runtime.Object, o metav1.CreateOptions) error {
		_, err := cs.BatchV1().CronJobs(ns).Create(ctx, obj.(*batchv1.CronJob), o)
		return err
	}},
}

// denial returns the message an admission step denied a request with: what follows the API
// server's "denied the request: " (a webhook) or "denied request: " (a policy), or "" when err
// is nil.
func denial(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, sep := range []string{"denied the request: ", "denied request: "} {
		if _, after, ok := strings.Cut(msg, sep); ok {
			return after
		}
	}
	return "not an admission denial: " + msg
}

// policyWarning is the warning the API server sends when a validation of a policy bound with
// validationActions Warn fails (the binding is named as its policy).
func policyWarning(policy, msg string) string {
	return "Validation failed for ValidatingAdmissionPolicy '" + policy + "' with binding '" + policy + "': " + msg
}
