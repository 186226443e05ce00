package chart

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// TestHelmTestHooks plays `helm test` against a real API server, with the webhook running
// in-process behind the chart's webhook configuration (config/webhook): the hooks are created
// in their weight order; the probe Pod passes Pod Security restricted in the release
// namespace; its ServiceAccount may create pods in tests.namespace and nothing else; and the
// probe's own command (envtest's kubectl with the Pod's args and the ConfigMap's files,
// authorized as that ServiceAccount) passes while the webhook injects and fails, saying why,
// once the webhook is stopped.
func TestHelmTestHooks(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	r := render(t)
	var hooks []*unstructured.Unstructured
	for _, o := range r.objects {
		if o.GetAnnotations()["helm.sh/hook"] == "test" {
			hooks = append(hooks, o)
		}
	}
	var order []string
	for _, o := range hooks {
		order = append(order, o.GetAnnotations()["helm.sh/hook-weight"]+" "+o.GetKind())
	}
	if diff := cmp.Diff([]string{"-1 ServiceAccount", "-1 ConfigMap", "-1 Role", "-1 RoleBinding", " Pod"}, order); diff != "" {
		t.Errorf("hooks by weight (-want +got):\n%s", diff)
	}
	for _, o := range hooks {
		if p := o.GetAnnotations()["helm.sh/hook-delete-policy"]; p != "before-hook-creation,hook-succeeded" {
			t.Errorf("%s: hook-delete-policy %q: want before-hook-creation,hook-succeeded (kept for a look when it fails)", o.GetKind(), p)
		}
	}
	var role rbacv1.Role
	r.decode(t, "Role", fullname+"-test", &role)
	wantRules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}}
	if diff := cmp.Diff(wantRules, role.Rules); diff != "" || role.Namespace != "default" {
		t.Errorf("Role in %q, rules (-want +got):\n%s", role.Namespace, diff)
	}
	var probe corev1.Pod
	r.decode(t, "Pod", fullname+"-test", &probe)
	var files corev1.ConfigMap
	r.decode(t, "ConfigMap", fullname+"-test", &files)

	env, cfg, err := testenv.Start("../../config/webhook/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	inj, err := injector.New(injector.Config{Version: "helm-test", Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"},
		ExcludedNamespaces: []string{releaseNamespace}})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := testenv.StartWebhook(env, cfg, inj, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The release namespace enforces Pod Security restricted; the test namespace has its
	// default ServiceAccount (envtest runs no controller-manager to create it).
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range hooks {
		if o.GetKind() == "Pod" {
			// No kubelet here to run it: a dry run checks that the API server admits it.
			if err := c.Create(ctx, o.DeepCopy(), client.DryRunAll); err != nil {
				t.Errorf("the probe Pod is refused: %v", err)
			}
			continue
		}
		if err := c.Create(ctx, o.DeepCopy()); err != nil {
			t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	// The probe's command, as the probe's ServiceAccount, with the ConfigMap's files where
	// the Pod mounts them.
	dir := t.TempDir()
	for name, data := range files.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := env.ControlPlane.AddUser(envtest.User{Name: "helm-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigData, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigData, 0o600); err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	sa := "system:serviceaccount:" + releaseNamespace + ":" + fullname + "-test"
	mount := probe.Spec.Containers[0].VolumeMounts[0].MountPath
	kubectl := func(args ...string) (string, error) {
		args = append(args, "--kubeconfig="+kubeconfig, "--as="+sa)
		cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	var args []string
	for _, a := range probe.Spec.Containers[0].Args {
		args = append(args, strings.ReplaceAll(a, mount, dir))
	}

	for _, can := range []struct {
		verb, resource, namespace string
		allowed                   bool
	}{
		{"create", "pods", "default", true},
		{"get", "pods", "default", false},
		{"delete", "pods", "default", false},
		{"create", "pods", "kube-system", false},
		{"create", "configmaps", "default", false},
		{"list", "secrets", releaseNamespace, false},
	} {
		out, err := kubectl("auth", "can-i", can.verb, can.resource, "-n", can.namespace)
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if got := err == nil; got != can.allowed {
			t.Errorf("the probe's ServiceAccount: can-i %s %s -n %s = %v (%s), want %v", can.verb, can.resource, can.namespace, got, strings.TrimSpace(out), can.allowed)
		}
	}

	out, err := kubectl(args...)
	if err != nil || !strings.HasPrefix(out, "injected: sidecar api-proxy (image registry.example.com/api-proxy:test), status {") {
		t.Errorf("with the webhook: kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	stop()
	stopped = true
	// The opt-in entry fails open (failurePolicy Ignore): the pod comes back uninjected.
	out, err = kubectl(args...)
	if err == nil || !strings.Contains(out, `FAIL: the pod came back with no init container: api-access-injector did not inject it`) {
		t.Errorf("without the webhook: kubectl %s: error %v, want a failure naming the cause; output:\n%s", strings.Join(args, " "), err, out)
	}
}

// TestHelmTestOffInExcludedNamespace: a tests.namespace the webhook never injects (here the
// release namespace) renders no test hooks, rather than a test that could never pass.
func TestHelmTestOffInExcludedNamespace(t *testing.T) {
	for _, set := range []string{"tests.namespace=" + releaseNamespace, "tests.namespace=kube-system", "tests.enabled=false"} {
		r := render(t, "--set", set)
		for _, o := range r.objects {
			if o.GetAnnotations()["helm.sh/hook"] == "test" {
				t.Errorf("%s: %s/%s rendered", set, o.GetKind(), o.GetName())
			}
		}
	}
	if r := render(t, "--set", "tests.namespace=team-a"); r.find("Role", fullname+"-test").GetNamespace() != "team-a" {
		t.Error("tests.namespace=team-a: the test's Role is not in team-a")
	}
}
