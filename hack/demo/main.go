// Command demo runs the whole api-access-injector path on this machine, with no cluster:
// a real kube-apiserver and etcd (envtest), the webhook binary behind the real webhook
// configuration, a namespace labelled for injection, a Deployment's pod created through the
// API, and a summary of what was injected. Run it with `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/materialize"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const namespace = "demo"

func main() {
	// The demo's own executable is the app that runs inside the materialised pod.
	if materialize.IsApp() {
		os.Exit(materialize.AppMain())
	}
	binDir := flag.String("bin-dir", "bin", "Directory holding the api-access-injector and api-proxy binaries (make build).")
	flag.Parse()
	if err := run(*binDir); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(binDir string) error {
	ctrl.SetLogger(logr.Discard())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "api-access-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	step("Starting a local Kubernetes API server (envtest: kube-apiserver and etcd %s, no nodes, no kubelet)", testenv.KubernetesVersion())
	env, err := testenv.New()
	if err != nil {
		return err
	}
	hooks, err := testenv.LoadWebhooks("config/webhook/manifests.yaml")
	if err != nil {
		return err
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{MutatingWebhooks: hooks}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting envtest: %w", err)
	}
	defer func() { _ = env.Stop() }()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	say("API server at %s; webhook configuration api-access-injector installed from config/webhook", cfg.Host)

	step("Starting the webhook: %s webhook", filepath.Join(binDir, "api-access-injector"))
	stop, err := startWebhook(ctx, env, binDir, work)
	if err != nil {
		return err
	}
	defer stop()

	step("Labelling namespace %s with %s=enabled, and giving it a ServiceAccount allowed to list pods", namespace, injector.InjectionLabel)
	if err := setUpNamespace(ctx, cs, cfg.CAData); err != nil {
		return err
	}

	step("Creating Deployment %s/pod-lister and its pod", namespace)
	pod, err := createDeploymentPod(ctx, cs)
	if err != nil {
		return err
	}
	say("There is no controller-manager here, so the demo creates the pod from the Deployment's")
	say("template, as the ReplicaSet controller would. The API server called the webhook and stored:")
	fmt.Println()
	fmt.Print(describe(pod))

	step("What a mistake looks like: a pod annotated %s: \"80\"", injector.ProxyPortAnnotation)
	bad := podFromTemplate(deployment().Spec.Template, "bad-port")
	bad.Annotations[injector.ProxyPortAnnotation] = "80"
	_, err = cs.CoreV1().Pods(namespace).Create(ctx, bad, metav1.CreateOptions{})
	if err == nil {
		return errors.New("the API server admitted a pod with proxy-port 80")
	}
	say("kubectl would print: Error from server (Forbidden): %v", err)

	return materialise(ctx, cfg, cs, pod, binDir, work)
}

func startWebhook(ctx context.Context, env *envtest.Environment, binDir, work string) (stop func(), err error) {
	user, err := env.AddUser(envtest.User{Name: "api-access-injector", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(work, "webhook.kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	probe, err := freeAddr()
	if err != nil {
		return nil, err
	}
	o := env.WebhookInstallOptions
	logPath := filepath.Join(work, "webhook.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "api-access-injector"), "webhook",
		"--config", "config/injector/config.yaml",
		"--cert-dir", o.LocalServingCertDir,
		"--webhook-port", strconv.Itoa(o.LocalServingPort),
		"--health-probe-bind-address", probe,
		"--metrics-bind-address", "0",
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the webhook (run `make build` first): %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = logFile.Close()
	}
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + probe + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				say("Ready on port %d (%s); logs in %s", o.LocalServingPort, "https, certificate from envtest", logPath)
				return stop, nil
			}
		}
	}
	stop()
	log, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("webhook not ready after 30s; its log:\n%s", log)
}

func setUpNamespace(ctx context.Context, cs *kubernetes.Clientset, caData []byte) error {
	objects := []func() error{
		func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: namespace, Labels: map[string]string{injector.InjectionLabel: string(injector.ModeEnabled)}}}, metav1.CreateOptions{})
			return err
		},
		// What the controller-manager would create in a real cluster.
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
				Data: map[string]string{"ca.crt": string(caData)}}, metav1.CreateOptions{})
			return err
		},
		func() error { return grantPodList(ctx, cs) },
	}
	for _, create := range objects {
		if err := create(); err != nil {
			return err
		}
	}
	return nil
}

func deployment() *appsv1.Deployment {
	labels := map[string]string{"app": "pod-lister"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-lister", Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "true",
				}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "pod-lister",
					Containers: []corev1.Container{{
						Name: "app", Image: "registry.k8s.io/kubectl:v" + testenv.KubernetesVersion(),
						Args: []string{"get", "pods", "--watch"},
					}},
				},
			},
		},
	}
}

func podFromTemplate(t corev1.PodTemplateSpec, generateName string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: *t.ObjectMeta.DeepCopy(), Spec: *t.Spec.DeepCopy()}
	pod.GenerateName = generateName + "-"
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	return pod
}

func createDeploymentPod(ctx context.Context, cs *kubernetes.Clientset) (*corev1.Pod, error) {
	d, err := cs.AppsV1().Deployments(namespace).Create(ctx, deployment(), metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	pod := podFromTemplate(d.Spec.Template, "pod-lister-7c9d8b6f5d")
	return cs.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
}

// describe summarises what the injector added to a stored pod.
func describe(pod *corev1.Pod) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, "    "+format+"\n", args...) }
	line("pod %s/%s", pod.Namespace, pod.Name)
	for _, c := range pod.Spec.InitContainers {
		if c.Name != injector.SidecarName {
			continue
		}
		sc := c.SecurityContext
		line("+ init container %s, first, restartPolicy %s (a native sidecar)", c.Name, *c.RestartPolicy)
		line("    image %s, args %s", c.Image, strings.Join(c.Args, " "))
		line("    startupProbe GET :%s%s holds the app back until the proxy reaches the API server",
			c.StartupProbe.HTTPGet.Port.String(), c.StartupProbe.HTTPGet.Path)
		line("    runAsNonRoot=%v readOnlyRootFilesystem=%v allowPrivilegeEscalation=%v capabilities drop %v seccomp %s",
			*sc.RunAsNonRoot, *sc.ReadOnlyRootFilesystem, *sc.AllowPrivilegeEscalation, sc.Capabilities.Drop, sc.SeccompProfile.Type)
		line("    requests cpu %s memory %s, limit memory %s", c.Resources.Requests.Cpu(), c.Resources.Requests.Memory(), c.Resources.Limits.Memory())
		for _, m := range c.VolumeMounts {
			mode := "read-only"
			if !m.ReadOnly {
				mode = "read-write: it writes the app's kubeconfig there before its startupProbe can pass"
			}
			line("    mounts %s at %s (%s)", m.Name, m.MountPath, mode)
		}
	}
	for _, v := range pod.Spec.Volumes {
		switch v.Name {
		case injector.TokenVolumeName:
			t := v.Projected.Sources[0].ServiceAccountToken
			aud := t.Audience
			if aud == "" {
				aud = "the API server's"
			}
			line("+ volume %s: projected token (%ds, audience %s), ca.crt, namespace; mounted by the sidecar only", v.Name, *t.ExpirationSeconds, aud)
		case injector.KubeconfigVolumeName:
			line("+ volume %s: emptyDir (medium %s, sizeLimit %s) for the file %s the sidecar writes; no pod field feeds it",
				v.Name, v.EmptyDir.Medium, v.EmptyDir.SizeLimit, injector.KubeconfigFileName)
		}
	}
	for _, c := range pod.Spec.Containers {
		var env []string
		for _, e := range c.Env {
			if e.Name == injector.KubeconfigEnvVar || e.Name == injector.KubeAPIURLEnvVar {
				env = append(env, e.Name+"="+e.Value)
			}
		}
		line("+ container %s: %s; kubeconfig volume mounted read-only at %s", c.Name, strings.Join(env, " "), injector.KubeconfigMountPath)
	}
	if status, ok := injector.ParseStatus(pod.Annotations); ok && status.IsolateToken {
		line("- the kube-api-access volume the ServiceAccount admission plugin added, and its mounts (%s: \"true\")", injector.IsolateTokenAnnotation)
	}
	line("+ annotation %s: %s", injector.StatusAnnotation, pod.Annotations[injector.StatusAnnotation])
	return b.String()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
func say(format string, args ...any)  { fmt.Printf("    "+format+"\n", args...) }
